"""Keep secrets out of everything we write, without rewriting research data.

Secrets are the values of environment variables whose names look like credentials, plus any
value registered at run time (e.g. a key passed on the command line), that are long and random
enough to be secrets (`looks_like_secret`): at least 16 characters, no whitespace, and a digit
or both upper and lower case. A placeholder key such as Ollama's "ollama" or llama.cpp's
"sk-no-key-required" is not a secret, so "ollama" in a prompt or a model name stays as written.

Two strengths:

- `redact` for what studyllm itself says: logs, error messages, errors recorded in `raw_calls`,
  CLI output. It masks known secrets and anything shaped like a bearer token or an `sk-` key,
  because a server's error body may echo a key we do not know.
- `redact_data` for what users wrote or models answered: texts, prompts, replies, request and
  response JSON, caller metadata, output files. It masks only the exact values of known secrets
  (a configured key pasted into a prompt is never stored); everything else is kept verbatim.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

_SECRET_NAME = re.compile(r"(API_KEY|_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
MIN_SECRET_LEN = 16  # shorter values are placeholders ("ollama", "EMPTY"), and masking them rewrites words
_registered: set[str] = set()

MASK = "***"

# Credentials that may appear even when we do not know their value (e.g. set by another tool).
_GENERIC_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)(api[-_]?key[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"()\bsk-[A-Za-z0-9_\-]{8,}"),
)
# Every generic pattern needs one of these (lower-cased) words: a text without them skips the regexes.
_KEY_SHAPE_MARKERS = ("bearer", "key", "sk-")


def looks_like_secret(value: str | None) -> bool:
    """Whether a configured value is long and random enough to be a secret (see the module docstring)."""
    if not value or len(value) < MIN_SECRET_LEN or any(c.isspace() for c in value):
        return False
    return any(c.isdigit() for c in value) or (any(c.isupper() for c in value) and any(c.islower() for c in value))


def register_secret(value: str | None) -> None:
    """Treat `value` as a secret from now on in this process (if it looks like one)."""
    if looks_like_secret(value):
        _registered.add(value)  # type: ignore[arg-type]


def known_secrets() -> set[str]:
    """Secret values currently known: registered ones and credential-like environment variables."""
    found = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and looks_like_secret(value):
            found.add(value)
    return found


def _ordered(secrets: Iterable[str | None] | None) -> list[str]:
    values = known_secrets() | {s for s in (secrets or ()) if looks_like_secret(s)}
    return sorted(values, key=len, reverse=True)  # type: ignore[arg-type]  # longest first: a key holding another is masked whole


def redact(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """For messages and logs: mask every known secret, the given ones, and anything shaped like a bearer or `sk-` key."""
    return redact_many([text], secrets)[0]


def redact_many(texts: Sequence[str], secrets: Iterable[str | None] | None = None) -> list[str]:
    """`redact` for many texts: the secrets looked up once, and in the usual case (nothing to mask)
    one scan over all texts together instead of one per text."""
    ordered = _ordered(secrets)

    def suspect(text: str) -> bool:
        # A cheap superset of "needs masking": a known secret, or a word every key shape needs.
        lowered = text.lower()
        return any(m in lowered for m in _KEY_SHAPE_MARKERS) or any(v in text for v in ordered)

    if not suspect("\x00".join(texts)):
        return list(texts)
    return [_mask_text(t, ordered, generic=True) if t and suspect(t) else t for t in texts]


def redact_data(text: str) -> str:
    """For user data (texts, prompts, replies, recorded JSON, output files): only known secret values are masked."""
    return redact_data_many([text])[0]


def redact_data_many(texts: Sequence[str]) -> list[str]:
    """`redact_data` for many texts (one scan over all of them when, as usual, none holds a secret)."""
    ordered = _ordered(None)
    if not ordered or not any(v in "\x00".join(texts) for v in ordered):
        return list(texts)
    return [_mask_text(t, ordered, generic=False) for t in texts]


def _mask_text(text: str, ordered: list[str], *, generic: bool) -> str:
    for value in ordered:
        if value in text:
            text = text.replace(value, MASK)
    if generic:
        for pattern in _GENERIC_PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


def mask(secret: str | None) -> str:
    """How a secret shows in a repr: set or not, never its value."""
    return "None" if not secret else repr(MASK)


def mask_url_password(url: str) -> str:
    """Return a database URL with its password (if any) masked, for printing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if not parts.password:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{userinfo}:{MASK}@{netloc[1]}"))


def redact_settings(value: object) -> object:
    """A settings mapping (a run's config) as it may be recorded: the value of every key named like a
    credential (`api_key`, `token`, `secret`, `password`) shown as `***` when set, and every string
    `redact`ed (a key pasted into another setting). Key names that only *name* a variable
    (`api_key_env`) are kept: they are not secrets."""
    if isinstance(value, dict):
        return {k: (MASK if value[k] and _SECRET_NAME.search(str(k)) else redact_settings(value[k])) for k in value}
    if isinstance(value, (list, tuple)):
        return [redact_settings(v) for v in value]
    return redact(value) if isinstance(value, str) else value
