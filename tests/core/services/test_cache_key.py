"""The cache key: normalisation and the fields that make two requests the same request."""

import re
import sys

import pytest

from studyllm_core.services.capture.cache_key import already_prepared, embedding_request_hash, normalize_text, prepare_text

_REGEX_DEFINITION = re.compile(r"\s+")  # the normalisation as first defined; the key must not drift from it


def _by_regex(text: str) -> str:
    return _REGEX_DEFINITION.sub(" ", text.replace("\x00", "")).strip()


def test_normalisation_collapses_exactly_the_whitespace_the_regex_did():
    whitespace = [chr(c) for c in range(sys.maxunicode + 1) if _REGEX_DEFINITION.fullmatch(chr(c))]
    assert "\u3000" in whitespace and "\x1f" in whitespace  # ideographic space; unit separator
    for ch in whitespace:
        sample = f"{ch}a{ch}{ch}b\x00c{ch}"
        assert normalize_text(sample) == _by_regex(sample) == "a bc", repr(ch)
    assert normalize_text("a\u200bb") == "a\u200bb"  # zero-width space is not whitespace in either


def test_prepare_text_reports_unusable_inputs():
    assert prepare_text("  hello \n world ") == (None, "hello world")
    assert prepare_text(" \t\u3000 ")[0] == "empty or whitespace-only text"
    assert prepare_text(" \t\x00 ")[0] == "invalid text: a NUL character at character 2 (a binary file?)"
    assert prepare_text(b"bytes")[0] == "not a text (bytes)"
    assert prepare_text("bad \udcff byte")[0] == "invalid UTF-8 in the input"
    assert prepare_text("json \ud800 escape")[0] == (
        "invalid text: a lone surrogate (\\ud800) at character 5, which no encoding can hold")
    assert "exceeds the limit" in prepare_text("x" * 11, max_chars=10)[0]


def test_every_field_of_the_key_matters_and_cannot_run_into_the_next():
    base = dict(provider="openai", model="m", dimensions=None)
    h = embedding_request_hash("text", **base)
    assert h == embedding_request_hash("text", **base)
    assert h != embedding_request_hash("text", **{**base, "model": "m2"})
    assert h != embedding_request_hash("text", **{**base, "dimensions": 256})
    assert h != embedding_request_hash("text", **base, encoding_format="base64")
    assert embedding_request_hash("text", provider="ab", model="c", dimensions=None) != embedding_request_hash(
        "text", provider="a", model="bc", dimensions=None
    )


@pytest.mark.parametrize("bad", [
    ["a", "b\nc"], ["a  b"], [" a"], ["a "], ["a", ""], [""], ["a\tb"], ["a\rb"], ["a\x0bb"], ["a\x0cb"],
    ["a\x1cb"], ["a\x1fb"], ["a\x00b"], ["a\u00a0b"], ["a\u2028b"], ["a\udc80"], ["a", 3], [], ["x" * 11],
])
def test_already_prepared_is_false_whenever_prepare_text_would_change_or_refuse_a_text(bad):
    assert not already_prepared(bad, max_chars=10)
    assert any(prepare_text(t, 10) != (None, t) for t in bad) or not bad


def test_already_prepared_texts_are_what_prepare_text_returns():
    clean = ["a short reply", "x", "scale 1 text 2: about topic 3", "!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]
    assert already_prepared(clean, max_chars=40)
    assert all(prepare_text(t, 40) == (None, t) for t in clean)
    assert not already_prepared(["caf\u00e9"])  # accepted unchanged by prepare_text, but non-ASCII takes its path
