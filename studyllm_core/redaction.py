"""Keep secrets out of everything we write: logs, error messages, recorded JSON, CLI output.

Secrets are the values of environment variables whose names look like credentials, plus any
value registered at run time (e.g. a key passed on the command line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

_SECRET_NAME = re.compile(r"(API_KEY|_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
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


def register_secret(value: str | None) -> None:
    """Treat `value` as a secret from now on in this process."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


def known_secrets() -> set[str]:
    """Secret values currently known: registered ones and credential-like environment variables."""
    found = set(_registered)
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and value and len(value) >= _MIN_SECRET_LEN:
            found.add(value)
    return found


def redact(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """Mask every known secret, the given ones, and anything shaped like a bearer or `sk-` key."""
    return redact_many([text], secrets)[0]


def redact_many(texts: Sequence[str], secrets: Iterable[str | None] | None = None) -> list[str]:
    """`redact` for many texts: the secrets looked up once, and in the usual case (nothing to mask)
    one scan over all texts together instead of one per text."""
    values = known_secrets() | {s for s in (secrets or ()) if s and len(s) >= _MIN_SECRET_LEN}
    ordered = sorted(values, key=len, reverse=True)  # longest first: a key containing another is masked whole

    def suspect(text: str) -> bool:
        # A cheap superset of "needs masking": a known secret, or a word every key shape needs.
        lowered = text.lower()
        return any(m in lowered for m in _KEY_SHAPE_MARKERS) or any(v in text for v in ordered)

    if not suspect("\x00".join(texts)):
        return list(texts)
    return [_mask_text(t, ordered) if t and suspect(t) else t for t in texts]


def _mask_text(text: str, ordered: list[str]) -> str:
    for value in ordered:
        if value in text:
            text = text.replace(value, MASK)
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
