"""Response validation shared by every OpenAI-style provider (the cache relies on these checks)."""

from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.http_status import error_for_status
from studyllm_core.providers.openai_format import parse_chat, parse_embeddings, parse_json_body


def _emb(rows: list[tuple[int, object]]) -> dict:
    return {"data": [{"index": i, "embedding": e} for i, e in rows], "usage": {"prompt_tokens": 3, "total_tokens": 3}}


def _parse(data: dict, n: int = 2, dimensions: int | None = None):
    return parse_embeddings(data, n_inputs=n, dimensions=dimensions, provider="p", model="m", latency_ms=1.0)


def test_embeddings_are_ordered_by_index_and_base64_is_decoded():
    b64 = base64.b64encode(struct.pack("<2f", 3.0, 4.0)).decode()
    r = _parse(_emb([(1, b64), (0, [1.0, 2.0])]))
    np.testing.assert_array_equal(r.vectors, np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert r.usage.total_tokens == 3 and r.raw == {"usage": {"prompt_tokens": 3, "total_tokens": 3}, "data_count": 2}


@pytest.mark.parametrize(
    ("data", "dimensions", "match"),
    [
        (_emb([(0, [1.0, 2.0])]), None, "1 embeddings for 2 inputs"),
        (_emb([(0, [1.0, 2.0]), (0, [1.0, 2.0])]), None, "duplicate"),
        (_emb([(0, [1.0, 2.0]), (5, [1.0, 2.0])]), None, "out-of-range"),
        (_emb([(0, [1.0, 2.0]), (1, [1.0])]), None, "inconsistent"),
        (_emb([(0, [1.0, 2.0]), (1, [1.0, 2.0])]), 3, "3 were requested"),
        (_emb([(0, [1.0, float("nan")]), (1, [1.0, 2.0])]), None, "non-finite"),
        (_emb([(0, [1.0, 1e39]), (1, [1.0, 2.0])]), None, "non-finite"),  # overflows float32
        (_emb([(0, [1.0, "x"]), (1, [1.0, 2.0])]), None, "non-numeric"),
        (_emb([(0, "not base64!"), (1, [1.0, 2.0])]), None, "base64"),
        ({"object": "list"}, None, "no data"),
    ],
)
def test_bad_embeddings_are_malformed(data, dimensions, match):
    with pytest.raises(errors.MalformedResponseError, match=match) as info:
        _parse(data, dimensions=dimensions)
    assert info.value.retryable


def test_chat_validation():
    ok = {"choices": [{"message": {"role": "assistant", "content": None}, "finish_reason": "tool_calls"}]}
    assert parse_chat(ok, provider="p", model="m", latency_ms=1).text == ""
    with pytest.raises(errors.ContentFilterError):
        parse_chat({"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}, provider="p", model="m", latency_ms=1)
    with pytest.raises(errors.MalformedResponseError):
        parse_chat({"choices": []}, provider="p", model="m", latency_ms=1)
    with pytest.raises(errors.MalformedResponseError):
        parse_json_body(b"[1, 2]", provider="p")
    with pytest.raises(errors.MalformedResponseError) as info:
        parse_json_body(b'{"truncated": ', provider="p")
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"error": {"code": "content_filter", "message": "filtered"}}, errors.ContentFilterError),
        (400, {"error": {"code": None, "innererror": {"code": "ResponsibleAIPolicyViolation"}}}, errors.ContentFilterError),
        (400, {"error": {"message": "too long"}}, errors.BadRequestError),
        (422, "unprocessable", errors.BadRequestError),
        (403, {"error": "forbidden"}, errors.AuthenticationError),
        (404, b"<html>not found</html>", errors.ModelNotFoundError),
        (408, None, errors.ProviderTimeoutError),
        (409, None, errors.RetryableError),
        (502, b"bad gateway", errors.ServerError),
    ],
)
def test_status_mapping(status, body, cls):
    exc = error_for_status(status, body, provider="p", secrets=["k" * 10])
    assert type(exc) is cls and exc.status_code == status and "\n" not in exc.message
