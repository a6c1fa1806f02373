"""Keep secrets out of everything we write: logs, error messages, recorded JSON, CLI output.

Secrets are the values of environment variables whose names look like credentials, plus any
value registered at run time (e.g. a key passed on the command line).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

_SECRET_NAME = re.compile(r"(API_KEY|_KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
_MIN_SECRET_LEN = 6  # shorter values would redact ordinary words
_registered: set[str] = set()

MASK = "***"


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


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """Replace every known secret (and any given ones) in `text` with a mask."""
    if not text:
        return text
    values = known_secrets() | {s for s in (secrets or ()) if s and len(s) >= _MIN_SECRET_LEN}
    # Longest first so a key that contains another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


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
