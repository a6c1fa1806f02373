"""Prompt preprocessing: whitespace cleaning, PII redaction, truncation and a template, in that order.

The order is fixed and chosen so each step sees what it needs: whitespace is cleaned first so the
later steps work on normalised text; PII is masked before truncation so a cut can never leave
half an address unmasked; truncation bounds the caller's prompt (not the template, whose
instructions stay whole); the template wraps the result last.

PII redaction is a small, tested set of patterns, not a guarantee: e-mail addresses, phone
numbers written with a leading `+country` code (`+44 20 7946 0958`, `+1-555-123-4567`), and
North American numbers in 3-3-4 groups with separators (`(555) 123-4567`, `555.123.4567`).
Dates, versions, prices and bare digit runs are left alone.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from studyllm_core.errors import InputError
from studyllm_core.services.capture.cache_key import normalize_text

PLACEHOLDER = "{prompt}"
DEFAULT_MAX_CHARS = 10_000
EMAIL_MASK = "[EMAIL]"
PHONE_MASK = "[PHONE]"

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_SEP = r"[ .\-]"
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    rf"\+\d{{1,3}}(?:{_SEP}?\(?\d{{1,4}}\)?){{2,5}}"  # international: +CC then 2-5 groups
    r"|"
    rf"(?:1{_SEP})?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"  # North American 3-3-4
    r")(?![\w])"
)
_MIN_INTERNATIONAL_DIGITS = 8
_BLANK_RUNS = re.compile(r"\n{3,}")


def clean_whitespace(text: str) -> str:
    """Each line normalised (NULs dropped, inner runs of spaces/tabs collapsed), blank-line runs cut to one."""
    lines = [normalize_text(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def redact_pii(text: str) -> str:
    """E-mail addresses and phone numbers (see the module docstring for the formats) replaced by masks."""
    text = _EMAIL.sub(EMAIL_MASK, text)
    return _PHONE.sub(_phone_mask, text)


def _phone_mask(match: re.Match[str]) -> str:
    found = match.group(0)
    if found.startswith("+") and sum(ch.isdigit() for ch in found) < _MIN_INTERNATIONAL_DIGITS:
        return found  # too short for a phone number: a sum or a score, not PII
    return PHONE_MASK


def apply_template(template: str, prompt: str) -> str:
    """`template` with every `{prompt}` replaced (other braces are left as they are, e.g. JSON examples)."""
    check_template(template)
    return template.replace(PLACEHOLDER, prompt)


def check_template(template: str) -> None:
    """InputError unless `template` holds the `{prompt}` placeholder."""
    if PLACEHOLDER not in template:
        raise InputError(
            f"prompt template {_shorten(template)!r} has no {PLACEHOLDER} placeholder: add {PLACEHOLDER} where the prompt goes"
        )


def truncate(text: str, max_chars: int) -> str:
    """The first `max_chars` characters of `text`."""
    return text[:max_chars]


@dataclass(frozen=True)
class Preprocessor:
    """Which steps to apply to a prompt; `apply` runs them in the module's fixed order.

    `max_chars=None` disables truncation; the default keeps the first 10,000 characters.
    """

    clean_whitespace: bool = True
    redact_pii: bool = False
    max_chars: int | None = DEFAULT_MAX_CHARS
    template: str | None = None

    def __post_init__(self) -> None:
        if self.template is not None:
            check_template(self.template)
        if self.max_chars is not None and self.max_chars < 1:
            raise InputError(f"max_chars must be at least 1 (or None for no limit), got {self.max_chars}")

    def apply(self, prompt: str) -> str:
        """The processed prompt: whitespace, then PII, then truncation, then the template."""
        text = prompt
        if self.clean_whitespace:
            text = clean_whitespace(text)
        if self.redact_pii:
            text = redact_pii(text)
        if self.max_chars is not None:
            text = truncate(text, self.max_chars)
        if self.template is not None:
            text = apply_template(self.template, text)
        return text

    def describe(self) -> dict[str, Any]:
        """The configuration as JSON, recorded with each request it shaped."""
        return asdict(self)


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
