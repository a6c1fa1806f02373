"""Prompt preprocessing: each step, their fixed order, and the errors a user can cause."""

import pytest

from studyllm_core.errors import InputError
from studyllm_core.services.capture.preprocess import (
    DEFAULT_MAX_CHARS,
    Preprocessor,
    apply_template,
    clean_whitespace,
    redact_pii,
)


def test_whitespace_is_cleaned_but_line_structure_kept():
    raw = "  Title\t\t here  \r\n\r\n\r\n\n- item   one\n- item\x00 two  \n\n"
    assert clean_whitespace(raw) == "Title here\n\n- item one\n- item two"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("write to john.doe+x@example.co.uk today", "write to [EMAIL] today"),
        ("a@b.io and c_d@e-f.org", "[EMAIL] and [EMAIL]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("call +1-555-123-4567 now", "call [PHONE] now"),
        ("+4915112345678", "[PHONE]"),
        ("+33 1 23 45 67 89", "[PHONE]"),
        ("(555) 123-4567", "[PHONE]"),
        ("555.123.4567 or 555 123 4567", "[PHONE] or [PHONE]"),
        ("dial 1-800-555-1234.", "dial [PHONE]."),
    ],
)
def test_pii_is_masked(text, expected):
    assert redact_pii(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-01-15 12:30", "version 1.2.3", "costs $1,234.56", "host 192.168.1.100", "score +12 34 56",
        "100 200 300", "order 1234567890", "user@localhost", "@handle",
    ],
)
def test_ordinary_numbers_and_handles_are_left_alone(text):
    assert redact_pii(text) == text


def test_template_needs_the_placeholder():
    assert apply_template('Reply in JSON like {"a": 1}.\n{prompt}', "hi") == 'Reply in JSON like {"a": 1}.\nhi'
    with pytest.raises(InputError, match=r"has no \{prompt\} placeholder: add \{prompt\}"):
        Preprocessor(template="Answer this question")
    with pytest.raises(InputError, match="max_chars must be at least 1"):
        Preprocessor(max_chars=0)


def test_truncation_defaults_to_ten_thousand_characters_and_spares_the_template():
    assert DEFAULT_MAX_CHARS == 10_000
    assert len(Preprocessor().apply("x" * 25_000)) == 10_000
    out = Preprocessor(max_chars=5, template="Q: {prompt} (end)").apply("abcdefghij")
    assert out == "Q: abcde (end)"
    assert Preprocessor(max_chars=None).apply("y" * 25_000) == "y" * 25_000


def test_the_steps_run_in_a_fixed_order():
    pre = Preprocessor(redact_pii=True, max_chars=20, template="<<{prompt}>>")
    # Whitespace first, then PII (so the cut at 20 cannot leave half an address), then the cut, then the template.
    assert pre.apply("  reach   me:  someone.long@example.com please") == "<<reach me: [EMAIL] pl>>"
    assert pre.describe() == {"clean_whitespace": True, "redact_pii": True, "max_chars": 20, "template": "<<{prompt}>>"}


def test_nothing_changes_with_every_step_off():
    raw = "  keep \t this\n\n\n as is  "
    assert Preprocessor(clean_whitespace=False, max_chars=None).apply(raw) == raw
