"""Build OpenAI-style request bodies and validate OpenAI-style responses into standard objects.

Every HTTP provider (OpenAI, Azure, compatible servers, Hyperbolic) speaks this JSON, so the
checks that protect the embedding cache (count, order, dimension, finite values) live here once.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from studyllm_core.providers.base import ChatMessage, ChatResponse, EmbeddingResponse, TokenUsage
from studyllm_core.providers.errors import BadRequestError, ContentFilterError, MalformedResponseError
from studyllm_core.redaction import redact

# Chat parameters that are ours to set; anything else in **params goes to the body as given.
_RESERVED_PARAMS = frozenset({"messages", "model", "stream"})


def messages_to_json(messages: Iterable[ChatMessage | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ChatMessage objects (or already-built dicts) as the JSON list the API expects."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, ChatMessage):
            out.append({"role": m.role, "content": m.content})
        elif isinstance(m, Mapping) and "role" in m:
            out.append(dict(m))
        else:
            raise BadRequestError(f"chat message must be a ChatMessage or a dict with 'role', got {type(m).__name__}")
    if not out:
        raise BadRequestError("chat needs at least one message")
    return out


def chat_body(
    messages: Iterable[ChatMessage | Mapping[str, Any]],
    *,
    model: str,
    temperature: float | None,
    max_tokens: int | None,
    params: Mapping[str, Any],
    max_tokens_field: str = "max_tokens",
) -> dict[str, Any]:
    """The JSON body of POST /chat/completions; extra `params` (seed, top_p, ...) are passed through.

    `max_tokens_field` names the reply-length limit on the wire: OpenAI's own API has deprecated
    `max_tokens` for `max_completion_tokens` (its reasoning and newer models reject the old name),
    while OpenAI-compatible servers and Azure's default API version know `max_tokens`.
    """
    bad = _RESERVED_PARAMS.intersection(params)
    if bad:
        raise BadRequestError(f"chat parameter(s) {sorted(bad)} cannot be passed in **params")
    body: dict[str, Any] = {"model": model, "messages": messages_to_json(messages)}
    if temperature is not None:
        body["temperature"] = temperature
    if max_tokens is not None:
        body[max_tokens_field] = max_tokens
    body.update(params)
    return body


def embeddings_body(
    texts: Sequence[str], *, model: str, dimensions: int | None, encoding_format: str | None = "float"
) -> dict[str, Any]:
    """The JSON body of POST /embeddings (`encoding_format=None` leaves it to the server: float)."""
    if not all(isinstance(t, str) for t in texts):
        raise BadRequestError("embed takes a list of str")
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if encoding_format is not None:
        body["encoding_format"] = encoding_format
    if dimensions is not None:
        body["dimensions"] = int(dimensions)
    return body


def parse_json_body(content: bytes | str, *, provider: str) -> dict[str, Any]:
    """Decode a 2xx body, raising MalformedResponseError if it is not a JSON object.

    A body that does not even start like JSON (an HTML page from a proxy or login portal) says so,
    with its first characters, because the fix is the URL, not a retry.
    """
    try:
        data = json.loads(content)
    except (ValueError, UnicodeDecodeError) as exc:
        text = content.decode("utf-8", "replace") if isinstance(content, bytes | bytearray) else content
        head = " ".join(text[:60].split())
        if text.lstrip()[:1] in ("{", "["):
            error = MalformedResponseError(
                f"{provider} returned a body that is not valid JSON ({type(exc).__name__} at "
                f"{getattr(exc, 'pos', '?')}, {len(content)} bytes)",
                provider=provider,
                reason="truncated_json",
            )
        else:
            error = MalformedResponseError(
                f"{provider} returned a body that is not JSON ({len(content)} bytes starting {redact(head)!r})",
                provider=provider,
                reason="not_json",
            )
    else:
        error = None
    if error is not None:
        raise error  # outside `except`: the decoder's exception quotes the body, keep it out
    if not isinstance(data, dict):
        raise MalformedResponseError(f"{provider} returned JSON {type(data).__name__}, expected an object", provider=provider)
    return data


def usage_from(data: Mapping[str, Any]) -> TokenUsage:
    """Token counts of an OpenAI-style `usage` block (zeros when absent)."""
    usage = data.get("usage") or {}
    if not isinstance(usage, Mapping):
        return TokenUsage()

    def _int(key: str) -> int:
        try:
            return int(usage.get(key) or 0)
        except (TypeError, ValueError):
            return 0

    prompt, completion = _int("prompt_tokens"), _int("completion_tokens")
    return TokenUsage(prompt, completion, _int("total_tokens") or prompt + completion)


def parse_chat(data: Mapping[str, Any], *, provider: str, model: str, latency_ms: float) -> ChatResponse:
    """A ChatResponse from a chat.completion body (first choice); refused completions raise ContentFilterError."""
    usage = usage_from(data)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise MalformedResponseError(f"{provider} chat response has no choices", provider=provider).with_usage(usage)
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, Mapping):
        raise MalformedResponseError(f"{provider} chat response choice has no message", provider=provider).with_usage(usage)
    content = message.get("content")
    if content is not None and not isinstance(content, str):
        raise MalformedResponseError(
            f"{provider} chat message content is {type(content).__name__}, expected str", provider=provider
        ).with_usage(usage)
    finish_reason = choice.get("finish_reason")
    text = content or ""
    if finish_reason == "content_filter" and not text:
        raise ContentFilterError(
            f"{provider} withheld the completion (finish_reason=content_filter)", provider=provider
        ).with_usage(usage)
    return ChatResponse(
        text=text,
        provider=provider,
        model=model,
        usage=usage,
        latency_ms=latency_ms,
        finish_reason=finish_reason,
        raw=dict(data),
    )


def _vector(item: Mapping[str, Any], *, provider: str) -> np.ndarray:
    emb = item.get("embedding")
    if isinstance(emb, str):  # encoding_format="base64": little-endian float32
        try:
            # strict_mode: what b64decode(validate=True) refuses, refused in C (b64decode checks with a regex first)
            return np.frombuffer(binascii.a2b_base64(emb, strict_mode=True), dtype="<f4").astype(np.float32)
        except (ValueError, TypeError, binascii.Error):
            raise MalformedResponseError(f"{provider} returned an embedding that is not valid base64 float32", provider=provider) from None
    if not isinstance(emb, list):
        raise MalformedResponseError(f"{provider} returned an embedding of type {type(emb).__name__}", provider=provider)
    try:
        return np.asarray(emb, dtype=np.float64)
    except (TypeError, ValueError):
        raise MalformedResponseError(f"{provider} returned an embedding with non-numeric values", provider=provider) from None


def parse_embeddings(
    data: Mapping[str, Any],
    *,
    n_inputs: int,
    dimensions: int | None,
    provider: str,
    model: str,
    latency_ms: float,
) -> EmbeddingResponse:
    """An EmbeddingResponse with rows ordered by `index`, after checking count, dimension and finiteness.

    `raw` keeps the response without its vectors (they are in `vectors`), so it stays small to record.
    """
    usage = usage_from(data)

    def malformed(message: str, reason: str) -> MalformedResponseError:
        error = MalformedResponseError(f"{provider} {message}", provider=provider, reason=reason)
        return error.with_usage(usage)  # type: ignore[return-value]

    items = data.get("data")
    if not isinstance(items, list):
        raise malformed("embeddings response has no data list", "schema")
    if len(items) != n_inputs:
        raise malformed(f"returned {len(items)} embeddings for {n_inputs} inputs", "count")
    rows: list[np.ndarray | None] = [None] * n_inputs
    for pos, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise malformed(f"embeddings data[{pos}] is not an object", "schema")
        index = item.get("index", pos)
        if not isinstance(index, int) or not 0 <= index < n_inputs or rows[index] is not None:
            raise malformed(f"returned a missing, duplicate or out-of-range index {index!r}", "schema")
        try:
            rows[index] = _vector(item, provider=provider)
        except MalformedResponseError as exc:
            raise malformed(exc.message.removeprefix(f"{provider} "), "schema") from None
    dims = {r.shape for r in rows if r is not None}
    if len(dims) != 1 or len(next(iter(dims))) != 1:
        found = sorted(d[0] if len(d) == 1 else -1 for d in dims)
        raise malformed(f"returned embeddings of inconsistent dimensions {found}", "dimension")
    (d,) = next(iter(dims))
    if dimensions is not None and d != dimensions:
        raise malformed(f"returned {d}-d embeddings, {dimensions} were requested", "dimensions_ignored")
    if d == 0:
        raise malformed("returned empty embeddings", "empty")
    with np.errstate(over="ignore", invalid="ignore"):
        matrix = np.vstack(rows).astype(np.float32)  # type: ignore[arg-type]
    if not np.isfinite(matrix).all():
        bad = int((~np.isfinite(matrix)).any(axis=1).sum())
        raise malformed(f"returned non-finite values (NaN/inf) in {bad} embedding(s)", "nan")
    zero = int((~matrix.any(axis=1)).sum())
    if zero:
        raise malformed(f"returned {zero} all-zero embedding(s), which have no direction", "zero")
    raw = {k: v for k, v in data.items() if k != "data"}
    raw["data_count"] = len(items)
    return EmbeddingResponse(
        vectors=matrix,
        provider=provider,
        model=model,
        usage=usage,
        latency_ms=latency_ms,
        raw=raw,
    )


def empty_embeddings(*, dimensions: int | None, provider: str, model: str) -> EmbeddingResponse:
    """The answer to embedding zero texts, without a network call."""
    return EmbeddingResponse(
        vectors=np.zeros((0, dimensions or 0), dtype=np.float32),
        provider=provider,
        model=model,
        usage=TokenUsage(),
        latency_ms=0.0,
    )
