"""The embedding cache key: what makes two requests the same request.

key = sha256(KEY_VERSION, provider, model, dimensions, encoding format, normalised text), joined
with an ASCII unit separator so no field can run into the next. Bump KEY_VERSION when the
normalisation changes, so old entries stop matching instead of matching wrongly.

When the server is part of the embedding space (`Provider.embedding_server`: an
`openai-compatible` base URL, or a non-default base URL of a hosted provider) the provider field
is `provider@server`, so two servers serving different models under one name never share vectors.
KEY_VERSION stays "v1": the keys of every other provider are unchanged, so their caches stay
valid; only `openai-compatible` entries stored before servers were part of the key stop matching
(which server made them is unknown) and are embedded again, once per server.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence

KEY_VERSION = "v1"
DEFAULT_MAX_CHARS = 50_000  # far above any embedding model's context; longer inputs are mistakes
_SEP = "\x1f"
_SURROGATE = re.compile("[\ud800-\udfff]")


def normalize_text(text: str) -> str:
    """NUL characters removed (texts holding one are refused before this), runs of whitespace collapsed to
    one space, ends stripped.

    `str.split()` splits on exactly the characters `\\s` matches (checked over every code point)
    and is several times faster than the regular expression.
    """
    return " ".join(text.replace("\x00", "").split())


def prepare_text(raw: object, max_chars: int = DEFAULT_MAX_CHARS) -> tuple[str | None, str]:
    """(why the text cannot be embedded, or None; its normalised form) in one pass.

    Text no provider or database can take is refused, never altered: undecodable input bytes
    (they arrive as lone surrogates, read with surrogateescape), lone surrogates from JSON escapes
    such as "\\ud800", and NUL characters (a binary file, or a NUL Postgres cannot store).
    """
    if not isinstance(raw, str):
        return f"not a text ({type(raw).__name__})", ""
    invalid = invalid_text_reason(raw)
    if invalid is not None:
        return invalid, ""
    normalized = normalize_text(raw)
    if not normalized:
        return "empty or whitespace-only text", ""
    if len(normalized) > max_chars:
        return f"text of {len(normalized):,} characters exceeds the limit of {max_chars:,}", ""
    return None, normalized


# What str.split() splits on among ASCII characters (besides the newline that joins texts in `already_prepared`),
# and what else normalisation would change: doubled spaces, and spaces at a text's ends.
_NOT_PREPARED = ("\x00", "\t", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "  ", " \n", "\n ", "\n\n")


def already_prepared(texts: list, max_chars: int = DEFAULT_MAX_CHARS) -> bool:
    """Whether `prepare_text` would accept every text unchanged, checked over all texts at once (a few scans
    of one joined string instead of a call per text), so a clean ASCII file of a million texts skips
    per-text normalisation. False says only "take the per-text path" (non-ASCII texts always do)."""
    if not texts or set(map(type, texts)) != {str} or not texts[0] or not texts[-1]:
        return False
    joined = "\n".join(texts)
    if not joined.isascii() or joined.count("\n") != len(texts) - 1:  # no text holds a newline of its own
        return False
    if joined[0] == " " or joined[-1] == " " or any(bad in joined for bad in _NOT_PREPARED):
        return False
    return max(map(len, texts)) <= max_chars


def invalid_text_reason(text: str) -> str | None:
    """Why `text` holds characters no provider or database can take (a lone surrogate, NUL), or None."""
    if not text.isascii():
        bad = _SURROGATE.search(text)
        if bad is not None:
            if "\udc80" <= bad.group() <= "\udcff":
                return "invalid UTF-8 in the input"
            return (f"invalid text: a lone surrogate (\\u{ord(bad.group()):04x}) at character {bad.start()}, "
                    "which no encoding can hold")
    if "\x00" in text:
        return f"invalid text: a NUL character at character {text.index(chr(0))} (a binary file?)"
    return None


def unusable_reason(raw: object, max_chars: int = DEFAULT_MAX_CHARS) -> str | None:
    """Why a text cannot be embedded (not text, invalid UTF-8, empty, too long), or None if it can."""
    return prepare_text(raw, max_chars)[0]


def unusable_rows(texts: Sequence[object], max_chars: int = DEFAULT_MAX_CHARS) -> dict[int, str]:
    """Row -> why that text cannot be embedded, for the rows that cannot (empty: all usable). A clean file
    (`already_prepared`: a few scans of the joined texts) needs no check per text: 1.5 s at a million texts."""
    texts = texts if isinstance(texts, list) else list(texts)
    if already_prepared(texts, max_chars):
        return {}
    return {row: reason for row, raw in enumerate(texts) if (reason := unusable_reason(raw, max_chars))}


def space_provider(provider: str, server: str | None) -> str:
    """The provider field of keys: the provider's name, with `@server` when the server is part of the space."""
    return f"{provider}@{server}" if server else provider


def embedding_hasher(
    *, provider: str, model: str, dimensions: int | None, encoding_format: str = "float", server: str | None = None
) -> Callable[[str], str]:
    """`embedding_request_hash` with the fields other than the text joined once, for many texts."""
    fields = (
        KEY_VERSION, space_provider(provider, server), model, "" if dimensions is None else str(dimensions),
        encoding_format, "",
    )
    prefix = hashlib.sha256(_SEP.join(fields).encode("utf-8"))

    def request_hash(text: str) -> str:
        digest = prefix.copy()
        digest.update(text.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    return request_hash


def embedding_request_hash(
    text: str, *, provider: str, model: str, dimensions: int | None, encoding_format: str = "float",
    server: str | None = None,
) -> str:
    """The cache key of one already-normalised text (hex sha256)."""
    return embedding_hasher(
        provider=provider, model=model, dimensions=dimensions, encoding_format=encoding_format, server=server
    )(text)


def content_hash(*parts: str) -> str:
    """sha256 over string parts, for request identities other than embeddings (chat de-duplication)."""
    return hashlib.sha256(_SEP.join(parts).encode("utf-8", "surrogatepass")).hexdigest()
