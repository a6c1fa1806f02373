"""openai, openai-compatible, azure and hyperbolic over real HTTP to the stub server: answers and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.base import ChatMessage
from studyllm_core.testing import stub_embedding

HTTP_PROVIDERS = ("openai", "openai-compatible", "azure", "hyperbolic")
DIM = 16  # the stub fixture's default dimension
TEXTS = ["the cat sat", "a dog barked", "the cat sat", "rain all day"]


def _endpoint(name: str, kind: str) -> str:
    return f"azure.{kind}" if name == "azure" else kind


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_chat_returns_standard_response(name, stub, make_provider, run):
    async def go():
        p = make_provider(name)
        try:
            return await p.chat(
                [ChatMessage("system", "be brief"), ChatMessage("user", "Hello   there, stub")],
                model="gpt-test", temperature=0.0, max_tokens=50, seed=7,
            )
        finally:
            await p.aclose()

    r = run(go())
    assert r.text == "stub reply: Hello there, stub"
    assert (r.provider, r.model, r.finish_reason) == (name, "gpt-test", "stop")
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens == 5 and r.usage.total_tokens == 10
    assert r.latency_ms > 0 and r.raw["object"] == "chat.completion"
    assert stub.stats.snapshot()["requests_by_endpoint"] == {_endpoint(name, "chat"): 1}
    # OpenAI's own API takes the reply limit as max_completion_tokens (newer models reject max_tokens).
    body = json.loads(stub.last_request["body"])
    limit_field = "max_completion_tokens" if name == "openai" else "max_tokens"
    assert body[limit_field] == 50 and len({"max_tokens", "max_completion_tokens"} & set(body)) == 1


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_embed_returns_ordered_validated_vectors(name, stub, make_provider, run):
    stub.faults.set(shuffle=True)  # the server lists rows in reverse: the client must order by index

    async def go():
        p = make_provider(name)
        try:
            return await p.embed(TEXTS, model="emb-test"), await p.embed(TEXTS[:2], model="emb-test", dimensions=8)
        finally:
            await p.aclose()

    full, small = run(go())
    assert full.vectors.dtype == np.float32 and full.vectors.shape == (4, DIM)
    expected = np.array([stub_embedding("emb-test", t, DIM) for t in TEXTS], dtype=np.float32)
    np.testing.assert_array_equal(full.vectors, expected)
    np.testing.assert_array_equal(full.vectors[0], full.vectors[2])  # same text, same vector
    assert small.vectors.shape == (2, 8)
    assert (full.provider, full.model) == (name, "emb-test")
    assert full.usage.prompt_tokens == 12 and full.raw["data_count"] == 4 and "data" not in full.raw


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_embed_of_nothing_makes_no_request(name, stub, make_provider, run):
    async def go():
        p = make_provider(name)
        try:
            return await p.embed([], model="emb-test", dimensions=8)
        finally:
            await p.aclose()

    assert run(go()).vectors.shape == (0, 8)
    assert stub.stats.requests_total == 0


def test_openai_base64_encoding_decodes_to_same_vectors(stub, make_provider, run):
    async def go():
        p = make_provider("openai", embedding_encoding="base64")
        try:
            return await p.embed(TEXTS, model="emb-test")
        finally:
            await p.aclose()

    expected = np.array([stub_embedding("emb-test", t, DIM) for t in TEXTS], dtype=np.float32)
    np.testing.assert_array_equal(run(go()).vectors, expected)


def test_azure_uses_deployment_paths_and_mapping(stub, make_provider, run):
    async def go():
        plain = make_provider("azure")
        mapped = make_provider("azure", deployment="text-embedding-3-small=emb-deploy")
        try:
            a = await plain.embed(["x"], model="emb-direct")
            b = await mapped.embed(["x"], model="text-embedding-3-small")
            c = await mapped.chat([ChatMessage("user", "hi")], model="chat-deploy")
            return a, b, c
        finally:
            await plain.aclose()
            await mapped.aclose()

    a, b, c = run(go())
    # The stub hashes (deployment, text): the vector proves which deployment path was called.
    np.testing.assert_array_equal(a.vectors[0], np.float32(stub_embedding("emb-direct", "x", DIM)))
    np.testing.assert_array_equal(b.vectors[0], np.float32(stub_embedding("emb-deploy", "x", DIM)))
    assert b.model == "text-embedding-3-small" and c.raw["model"] == "chat-deploy"
    assert stub.stats.snapshot()["requests_by_endpoint"] == {"azure.embeddings": 2, "azure.chat": 1}


FAULTS = [
    ("rate_limit", errors.RateLimitError),
    ("server_error", errors.ServerError),
    ("unavailable", errors.ServerError),
    ("unauthorized", errors.AuthenticationError),
    ("unknown_model", errors.ModelNotFoundError),
    ("content_filter", errors.ContentFilterError),
    ("malformed_json", errors.MalformedResponseError),
    ("nan", errors.MalformedResponseError),
    ("wrong_dim", errors.MalformedResponseError),
    ("fewer_vectors", errors.MalformedResponseError),
    ("zero_vectors", errors.MalformedResponseError),
    ("html", errors.MalformedResponseError),
    ("insufficient_quota", errors.QuotaExceededError),
    ("context_length", errors.BadRequestError),
    ("bad_request", errors.BadRequestError),
]


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_each_fault_maps_to_its_error_class(name, stub, make_provider, run, api_key):
    stub.faults.set(retry_after_s=7)

    async def go():
        p = make_provider(name)
        caught = {}
        try:
            for kind, _ in FAULTS:
                stub.faults.fail_next(1, kind)
                with pytest.raises(errors.ProviderError) as info:
                    await p.embed(["one text", "another text"], model="emb-test")
                caught[kind] = info.value
            # Embedding-only faults make a chat answer malformed too.
            stub.faults.fail_next(1, "nan")
            with pytest.raises(errors.MalformedResponseError):
                await p.chat([ChatMessage("user", "hi")], model="gpt-test")
        finally:
            await p.aclose()
        return caught

    caught = run(go())
    for kind, cls in FAULTS:
        exc = caught[kind]
        assert type(exc) is cls, (kind, exc)
        assert exc.provider == name, (kind, exc.provider)
        info = exc.error_info()
        assert json.dumps(info) and info["retryable"] is cls.retryable
        assert api_key not in str(exc) and api_key not in json.dumps(info)
        assert exc.__context__ is None and exc.__cause__ is None  # no chained SDK exception quoting the body
    assert caught["rate_limit"].retry_after == 7.0 and caught["rate_limit"].status_code == 429
    assert {k: caught[k].reason for k in ("malformed_json", "nan", "zero_vectors", "html", "fewer_vectors")} == {
        "malformed_json": "truncated_json", "nan": "nan", "zero_vectors": "zero", "html": "not_json", "fewer_vectors": "count"}
    assert "<!DOCTYPE html>" in caught["html"].message
    assert caught["context_length"].cause == "input" and caught["bad_request"].cause is None
    assert not caught["insufficient_quota"].retryable and "add credit" in caught["insufficient_quota"].message
    assert caught["nan"].usage is not None and caught["nan"].usage.prompt_tokens == 4  # billed tokens kept
    assert caught["unavailable"].status_code == 503
    assert stub.stats.snapshot()["faults_injected"]["malformed_json"] == 1


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_401_echoing_the_key_is_redacted(name, stub, make_provider, run, wrong_key):
    async def go():
        p = make_provider(name, api_key=wrong_key)
        try:
            with pytest.raises(errors.AuthenticationError) as info:
                await p.chat([ChatMessage("user", "hi")], model="gpt-test")
        finally:
            await p.aclose()
        return info.value

    exc = run(go())
    assert exc.status_code == 401 and "Incorrect API key provided" in str(exc)
    for text in (str(exc), repr(exc), exc.message, json.dumps(exc.error_info())):
        assert wrong_key not in text and "SECRET" not in text
    assert not exc.retryable


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_hang_past_client_timeout_is_a_timeout(name, stub, make_provider, run):
    stub.faults.set(hang_s=5)
    stub.faults.fail_next(1, "hang")

    async def go():
        p = make_provider(name, timeout=0.3)
        try:
            with pytest.raises(errors.ProviderTimeoutError) as info:
                await p.embed(["x"], model="emb-test")
            # The next request on the same provider works (no retry inside the provider).
            ok = await p.embed(["x"], model="emb-test")
        finally:
            await p.aclose()
        return info.value, ok

    exc, ok = run(go())
    assert exc.retryable and ok.vectors.shape == (1, DIM)
    assert stub.stats.snapshot()["requests_by_endpoint"][_endpoint(name, "embeddings")] == 2  # no hidden retries


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize("kind", ["embeddings", "chat"])
def test_timeout_bounds_the_whole_request(name, kind, stub, make_provider, run):
    """A server trickling a valid answer one byte at a time: each read is quick, the request is not.
    httpx's own timeouts bound each read; `timeout` must bound the whole request."""
    stub.faults.set(drip_s=0.05)
    stub.faults.fail_next(1, "slow_drip")

    async def go():
        p = make_provider(name, timeout=1.0)
        try:
            with pytest.raises(errors.ProviderTimeoutError) as info:
                if kind == "chat":
                    await p.chat([ChatMessage("user", "hi")], model="gpt-test")
                else:
                    await p.embed(["x"] * 4, model="emb-test")  # about 1 KB: 50 s at this pace
        finally:
            await p.aclose()
        return info.value

    exc = run(go())
    assert "timed out after 1 s" in str(exc)
    assert stub.stats.snapshot()["faults_injected"] == {"slow_drip": 1}


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize("url, words", [("localhost:8000/v1", "no http:// or https:// scheme"),
                                        ("ftp://host/v1", "scheme is ftp://"), ("http:///v1", "names no host")])
def test_unusable_base_urls_fail_at_construction(name, url, words, api_key):
    from studyllm_core.providers.registry import create_provider

    key = "endpoint" if name == "azure" else "base_url"
    with pytest.raises(errors.ConfigurationError, match=words):
        create_provider(name, **{key: url}, api_key=api_key)


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "soon"])
def test_unusable_timeouts_fail_at_construction(name, timeout, stub, make_provider):
    with pytest.raises(errors.ConfigurationError, match="timeout must be a number of seconds above 0"):
        make_provider(name, timeout=timeout)


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_providers_never_retry_on_their_own(name, stub, make_provider, run):
    stub.faults.fail_next(3, "server_error")

    async def go():
        p = make_provider(name)
        try:
            with pytest.raises(errors.ServerError):
                await p.chat([ChatMessage("user", "hi")], model="gpt-test")
        finally:
            await p.aclose()

    run(go())
    assert stub.stats.requests_total == 1


def test_retry_after_http_date_is_parsed(stub, make_provider, run):
    stub.faults.set(retry_after_s=30, retry_after_http_date=True)
    stub.faults.fail_next(1, "rate_limit")

    async def go():
        p = make_provider("openai")
        try:
            with pytest.raises(errors.RateLimitError) as info:
                await p.chat([ChatMessage("user", "hi")], model="gpt-test")
        finally:
            await p.aclose()
        return info.value

    assert 27 <= run(go()).retry_after <= 30


def test_connection_refused_is_a_connection_error(run, api_key):
    from studyllm_core.providers.registry import create_provider

    async def go(name):
        p = create_provider(name, base_url="http://127.0.0.1:9/v1", api_key=api_key, timeout=2)
        try:
            with pytest.raises(errors.ProviderConnectionError) as info:
                await p.chat([ChatMessage("user", "hi")], model="m")
        finally:
            await p.aclose()
        return info.value

    for name in ("openai", "hyperbolic"):
        exc = run(go(name))
        assert isinstance(exc, errors.ConnectFailedError), exc
        assert exc.retryable and api_key not in str(exc)
        assert "cannot connect to http://127.0.0.1:9/v1 (connection refused)" in str(exc)


def test_unknown_model_for_known_model_list(stub, make_provider, run):
    stub.faults.set(known_models=["gpt-test"])

    async def go():
        p = make_provider("openai")
        try:
            ok = await p.chat([ChatMessage("user", "hi")], model="gpt-test")
            with pytest.raises(errors.ModelNotFoundError):
                await p.chat([ChatMessage("user", "hi")], model="gpt-nope")
        finally:
            await p.aclose()
        return ok

    assert run(go()).text == "stub reply: hi"


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_repr_hides_the_key(name, stub, make_provider, run, api_key):
    async def go():
        p = make_provider(name)
        try:
            return repr(p), str(vars(p).get("_api_key") == api_key)
        finally:
            await p.aclose()

    text, has_key = run(go())
    assert api_key not in text and "***" in text and has_key == "True"


def test_compatible_needs_no_key_and_sends_no_openai_org(run, monkeypatch):
    from studyllm_core.providers.registry import create_provider
    from studyllm_core.testing import OpenAIStubServer

    monkeypatch.setenv("OPENAI_ORG_ID", "org-should-not-leak")
    with OpenAIStubServer(dim=4) as srv:  # accepts any key

        async def go():
            p = create_provider("openai-compatible", base_url=srv.base_url)
            try:
                return await p.embed(["x"], model="m")
            finally:
                await p.aclose()

        assert run(go()).vectors.shape == (1, 4)
        headers = {k.lower(): v for k, v in srv.last_request["headers"].items()}
        assert "openai-organization" not in headers and "authorization" not in headers


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_key_travels_in_a_header_never_in_the_body(name, stub, make_provider, run, api_key):
    async def go():
        p = make_provider(name)
        try:
            await p.chat([ChatMessage("user", "hi")], model="gpt-test")
        finally:
            await p.aclose()

    run(go())
    req = stub.last_request
    assert api_key not in req["body"] and api_key not in req["path"]
    assert api_key in " ".join(req["headers"].values())


def test_params_and_bad_input_are_rejected_before_sending(stub, make_provider, run):
    async def go():
        p = make_provider("openai")
        try:
            with pytest.raises(errors.BadRequestError):
                await p.chat([ChatMessage("user", "hi")], model="m", stream=True)
            with pytest.raises(errors.BadRequestError):
                await p.chat([], model="m")
            with pytest.raises(errors.BadRequestError):
                await p.embed([1, 2], model="m")  # type: ignore[list-item]
        finally:
            await p.aclose()

    run(go())
    assert stub.stats.requests_total == 0


@pytest.mark.parametrize("name", HTTP_PROVIDERS)
def test_one_provider_survives_several_event_loops(name, make_provider):
    """Services may call asyncio.run per batch with a long-lived provider: pooled clients must not break."""
    import asyncio

    p = make_provider(name)
    for _ in range(3):
        assert asyncio.run(p.embed(["x"], model="m")).vectors.shape == (1, DIM)
    asyncio.run(p.aclose())
