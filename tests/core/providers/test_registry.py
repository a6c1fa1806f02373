"""The provider registry: built-ins by name, third parties through a real `studyllm.providers` entry point."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.base import ChatMessage, Provider
from studyllm_core.providers.registry import (
    BUILTIN_PROVIDERS,
    available_providers,
    create_provider,
    register_provider,
    unregister_provider,
)
from studyllm_core.providers.settings import provider_from_env

PLUGIN_SOURCE = textwrap.dedent(
    '''
    """A third-party provider, installed only as a dist-info on sys.path."""
    from studyllm_core.providers.base import ChatResponse, Provider, TokenUsage
    from studyllm_core.providers.errors import UnsupportedOperation


    class ShoutProvider(Provider):
        name = "shout"

        def __init__(self, *, api_key=None, base_url=None, volume=1):
            self.api_key, self.base_url, self.volume = api_key, base_url, volume

        async def chat(self, messages, *, model, temperature=None, max_tokens=None, **params):
            text = messages[-1].content.upper() + "!" * self.volume
            return ChatResponse(text, self.name, model, TokenUsage(), 0.0)

        async def embed(self, texts, *, model, dimensions=None):
            raise UnsupportedOperation("no")


    NOT_A_PROVIDER = object()
    '''
)


@pytest.fixture
def plugin_dist(tmp_path, monkeypatch):
    """A real installed distribution: module + dist-info with entry_points.txt, on sys.path."""
    (tmp_path / "studyllm_shout_plugin.py").write_text(PLUGIN_SOURCE)
    info = tmp_path / "studyllm_shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: studyllm-shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[studyllm.providers]\n"
        "shout = studyllm_shout_plugin:ShoutProvider\n"
        "broken = studyllm_shout_plugin:NOT_A_PROVIDER\n"
        "missing = studyllm_no_such_module:Thing\n"
        "openai = studyllm_shout_plugin:ShoutProvider\n"  # may not shadow a built-in
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("studyllm_shout_plugin", None)


def test_builtins_are_available():
    names = available_providers()
    assert set(BUILTIN_PROVIDERS) <= set(names) and names == sorted(names)


def test_unknown_name_lists_known_names():
    with pytest.raises(errors.ConfigurationError) as info:
        create_provider("no-such-provider")
    msg = str(info.value)
    assert "no-such-provider" in msg and "openai-compatible" in msg and "extractive" in msg


def test_unknown_setting_is_a_configuration_error():
    with pytest.raises(errors.ConfigurationError, match="n_sentences"):
        create_provider("extractive", colour="blue")


def test_names_are_normalised():
    assert create_provider("EXTRACTIVE").name == "extractive"
    assert type(create_provider("openai_compatible", base_url="http://127.0.0.1:1/v1")).name == "openai-compatible"


def test_entry_point_provider_is_found_and_built(plugin_dist, run, clean_env, monkeypatch):
    assert "shout" in available_providers()
    p = create_provider("shout", volume=2)
    assert type(p).__module__ == "studyllm_shout_plugin" and isinstance(p, Provider)
    r = run(p.chat([ChatMessage("user", "hi")], model="m"))
    assert r.text == "HI!!"
    # Third-party providers read <NAME>_API_KEY / <NAME>_BASE_URL from the environment.
    monkeypatch.setenv("SHOUT_API_KEY", "shout-key-123456")
    monkeypatch.setenv("SHOUT_BASE_URL", "http://127.0.0.1:1")
    q = provider_from_env("shout")
    assert (q.api_key, q.base_url) == ("shout-key-123456", "http://127.0.0.1:1")
    # A built-in name cannot be taken over by a plugin.
    assert type(create_provider("openai", api_key="k-123456")).__module__ == "studyllm_core.providers.openai_sdk"


def test_bad_entry_points_are_configuration_errors(plugin_dist):
    with pytest.raises(errors.ConfigurationError, match="not a studyllm Provider"):
        create_provider("broken")
    with pytest.raises(errors.ConfigurationError, match="could not be loaded"):
        create_provider("missing")


def test_runtime_registration():
    class Local(Provider):
        name = "tmp-registered"

        async def chat(self, messages, *, model, temperature=None, max_tokens=None, **params):
            raise errors.UnsupportedOperation("no")

        async def embed(self, texts, *, model, dimensions=None):
            raise errors.UnsupportedOperation("no")

    register_provider("tmp-registered", Local)
    try:
        assert isinstance(create_provider("tmp-registered"), Local)
        with pytest.raises(errors.ConfigurationError):
            register_provider("openai", Local)
        with pytest.raises(errors.ConfigurationError):
            register_provider("x", object)  # type: ignore[arg-type]
    finally:
        unregister_provider("tmp-registered")
    assert "tmp-registered" not in available_providers()


def test_naming_a_provider_imports_no_vendor_sdk():
    import subprocess

    code = (
        "import sys\n"
        "from studyllm_core.providers import create_provider, available_providers\n"
        "available_providers(); create_provider('extractive')\n"
        "bad = [m for m in ('openai', 'torch', 'sentence_transformers', 'dagster') if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
