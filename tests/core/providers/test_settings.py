"""Settings from the environment and .env, fail-fast on missing keys, and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.azure import parse_deployments
from studyllm_core.providers.base import ChatMessage
from studyllm_core.providers.http_status import parse_retry_after
from studyllm_core.redaction import redact, redact_many
from studyllm_core.providers.settings import PROVIDER_ENV, provider_from_env, settings_from_env

ENV_EXAMPLE = Path(__file__).resolve().parents[3] / ".env.example"


@pytest.mark.parametrize(
    ("name", "variable", "error"),
    [
        ("openai", "OPENAI_API_KEY", errors.AuthenticationError),
        ("azure", "AZURE_OPENAI_API_KEY", errors.AuthenticationError),
        ("hyperbolic", "HYPERBOLIC_API_KEY", errors.AuthenticationError),
        ("openai-compatible", "OPENAI_COMPATIBLE_BASE_URL", errors.ConfigurationError),
    ],
)
def test_missing_setting_fails_before_any_request(name, variable, error, clean_env, stub):
    base_url = None if name == "openai-compatible" else stub.base_url
    with pytest.raises(error) as info:
        provider_from_env(name, base_url=base_url)
    message = str(info.value)
    assert variable in message and "\n" not in message
    assert stub.stats.requests_total == 0


def test_azure_missing_endpoint_names_the_variable(clean_env, monkeypatch):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "az-key-123456")
    with pytest.raises(errors.ConfigurationError, match="AZURE_OPENAI_ENDPOINT"):
        provider_from_env("azure")


def test_provider_from_env_works_over_http(clean_env, monkeypatch, stub, api_key, run):
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("STUDYLLM_REQUEST_TIMEOUT", "7.5")

    async def go():
        p = provider_from_env("openai", base_url=stub.base_url)
        try:
            return p, await p.chat([ChatMessage("user", "hi")], model="m")
        finally:
            await p.aclose()

    p, r = run(go())
    assert r.text == "stub reply: hi" and p.timeout == 7.5 and api_key not in repr(p)


def test_every_http_provider_builds_from_env(clean_env, monkeypatch, stub, api_key, run):
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", api_key)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", stub.azure_endpoint)
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "emb-deploy")
    monkeypatch.setenv("HYPERBOLIC_API_KEY", api_key)
    monkeypatch.setenv("HYPERBOLIC_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_COMPATIBLE_BASE_URL", stub.base_url)
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", api_key)

    async def go():
        out = {}
        for name in ("azure", "hyperbolic", "openai-compatible"):
            p = provider_from_env(name)
            try:
                out[name] = (await p.embed(["x"], model="m")).vectors.shape
            finally:
                await p.aclose()
        return out

    assert run(go()) == {"azure": (1, 16), "hyperbolic": (1, 16), "openai-compatible": (1, 16)}
    assert stub.stats.snapshot()["requests_by_endpoint"] == {"azure.embeddings": 1, "embeddings": 2}


def test_dotenv_is_read_but_real_environment_wins(clean_env, monkeypatch, tmp_path):
    (tmp_path / ".env").write_text(
        "OPENAI_API_KEY=sk-from-dotenv-123456\nOPENAI_BASE_URL=http://dotenv.invalid/v1\nOPENAI_ORG_ID=org-dotenv\n"
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://real-env.invalid/v1")
    s = settings_from_env("openai")
    assert s.values["api_key"] == "sk-from-dotenv-123456"
    assert s.values["base_url"] == "http://real-env.invalid/v1"
    assert s.sources["api_key"] == "OPENAI_API_KEY"
    assert "sk-from-dotenv-123456" not in repr(s) and "***" in repr(s)
    import os

    assert "OPENAI_API_KEY" not in os.environ  # .env is read, not injected into the process


def test_overrides_win_and_none_overrides_nothing(clean_env, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-123456")
    p = provider_from_env("openai", api_key=None, timeout=3)
    assert p._api_key == "sk-env-key-123456" and p.timeout == 3.0
    with pytest.raises(errors.ConfigurationError, match="STUDYLLM_REQUEST_TIMEOUT"):
        monkeypatch.setenv("STUDYLLM_REQUEST_TIMEOUT", "soon")
        provider_from_env("openai")


def test_offline_providers_need_no_settings(clean_env):
    assert provider_from_env("extractive").name == "extractive"


def test_env_example_lists_every_variable():
    text = ENV_EXAMPLE.read_text()
    names = {v.name for vs in PROVIDER_ENV.values() for v in vs}
    names |= {"STUDYLLM_REQUEST_TIMEOUT", "STUDYLLM_HOME", "STUDYLLM_DATABASE_URL", "STUDYLLM_LOG_LEVEL"}
    lines = text.splitlines()
    assert "# studyllm core" in lines
    for name in names:
        assert any(line.startswith(f"{name}=") for line in lines), name
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{name}="))
        assert lines[index - 1].startswith("#"), f"{name} has no comment"


def test_redact_masks_secrets_and_key_shaped_tokens():
    msg = ("bad key sk-abcdefghijklmnop; Authorization: Bearer abc.def-123456789; api_key=xyzxyzxyz123 "
           "mine=hunter22hunter22hunter")
    out = redact(msg, ["hunter22hunter22hunter", None, ""])
    for secret in ("sk-abcdefghijklmnop", "abc.def-123456789", "xyzxyzxyz123", "hunter22hunter22hunter"):
        assert secret not in out
    assert out.startswith("bad key ***") and redact("", ["x"]) == ""
    assert redact("a cat", ["a"]) == "a cat"  # too short to be a key: left alone


def test_redact_many_masks_only_the_texts_that_hold_a_secret(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-4242-secret-xyz")
    texts = ["plain text", "uses tok-4242-secret-xyz here", "", "BEARER abcdefgh12345", "plain text"]
    assert redact_many(texts) == ["plain text", "uses *** here", "", "BEARER ***", "plain text"]
    clean = ["nothing here", "nor here"]
    assert redact_many(clean) == clean and redact_many([]) == []


@pytest.mark.parametrize("value, secret", [
    ("ollama", False), ("lm-studio", False), ("EMPTY", False), ("sk-no-key-required", False),
    ("tok-4242-secret", False),  # 15 characters: too short
    ("sk-proj-4f9aC2e8b1d7", True), ("0123456789abcdef0123456789abcdef", True), ("AbCdEfGhIjKlMnOpQr", True),
])
def test_only_values_that_look_like_secrets_are_masked(monkeypatch, value, secret):
    from studyllm_core.redaction import redact_data

    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", value)
    text = f"the text says {value} and more"
    assert (redact_data(text) != text) is secret
    if not value.startswith("sk-"):  # messages also mask anything shaped like an sk- key, configured or not
        assert (redact(text) != text) is secret
    # Key-shaped words that are no configured secret: masked in messages, kept in data.
    shaped = "look: sk-abcdefghijklmnop1234"
    assert redact(shaped) == "look: ***" and redact_data(shaped) == shaped


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"Retry-After": "garbage"}) is None
    assert parse_retry_after({}) is None and parse_retry_after({"Retry-After": "-5"}) == 0.0


def test_parse_deployments():
    assert parse_deployments("one") == "one"
    assert parse_deployments("a=x, b=y") == {"a": "x", "b": "y"}
    assert parse_deployments(None) is None and parse_deployments(" ") is None
    with pytest.raises(errors.ConfigurationError, match="model=deployment"):
        parse_deployments("a=x,b")


def documented_defaults() -> dict[str, str]:
    """`| `NAME` | `default` | ...` rows of the README's and the user guide's configuration tables."""
    import re

    root = ENV_EXAMPLE.parent
    rows = {}
    for doc in (root / "README.md", root / "docs" / "user-guide.md"):
        for name, default in re.findall(r"^\| `([A-Z0-9_]+)` \| `([^`]*)` \|", doc.read_text(), re.M):
            rows.setdefault(name, default)
    return rows


def test_env_example_values_are_the_documented_defaults():
    """Copying .env.example to .env changes nothing: every value it sets is the default the docs give."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    documented = documented_defaults()
    assert documented["STUDYLLM_LOG_LEVEL"] == "WARNING"
    for i, line in enumerate(lines):
        if line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if not value:
            continue
        if name in documented:
            assert value == documented[name], (name, value, documented[name])
        comment = next(lines[j] for j in range(i - 1, -1, -1) if lines[j].startswith("#"))
        assert "default" in comment and all(part in comment for part in value.split("/")), (name, comment)
