"""The extractive summariser: deterministic, central, and reading the documented message format."""

from __future__ import annotations

import pytest

from studyllm_core.providers import errors
from studyllm_core.providers.base import ChatMessage
from studyllm_core.providers.extractive import (
    describe_texts,
    format_texts,
    rank_sentences,
    summarize_texts,
    texts_from_message,
)
from studyllm_core.providers.registry import create_provider

CLUSTER = [
    "The battery drains fast on this phone.",
    "Battery life is poor and the phone drains overnight.",
    "I love the screen colours.",
    "The phone battery drains fast even in standby.",
    "Shipping took two weeks.",
]


def test_picks_the_most_central_sentence():
    summary = summarize_texts(CLUSTER)
    assert "batter" in summary.lower() and "drain" in summary.lower()
    assert summary in CLUSTER  # extractive: a sentence of the input, verbatim
    assert rank_sentences(CLUSTER)[-1][0] in {"Shipping took two weeks.", "I love the screen colours."}


def test_is_deterministic_and_order_breaks_ties():
    assert len({summarize_texts(CLUSTER) for _ in range(5)}) == 1
    # Two sentences with identical scores: the earlier one wins, whichever it is.
    assert summarize_texts(["alpha beta.", "gamma delta."]) == "alpha beta."
    assert summarize_texts(["gamma delta.", "alpha beta."]) == "gamma delta."


def test_several_sentences_come_back_in_input_order():
    two = summarize_texts(CLUSTER, n_sentences=2)
    top = {s for s, _ in rank_sentences(CLUSTER)[:2]}
    assert two == " ".join(s for s in CLUSTER if s in top)


def test_splits_sentences_inside_texts_and_handles_degenerate_input():
    assert summarize_texts(["Short one. The battery drains fast. Battery drains."]) != ""
    assert summarize_texts([]) == "" and summarize_texts(["", "   "]) == ""
    assert summarize_texts(["the of and.", "a an the."]) == "the of and."  # only stop words: first wins
    with pytest.raises(ValueError):
        summarize_texts(CLUSTER, n_sentences=0)


def test_message_format_round_trips():
    texts = ["one line", "two\nlines", "- starts like a bullet"]
    message = "Summarise these texts in one sentence:\n\n" + format_texts(texts) + "\n\nThanks."
    assert texts_from_message(message) == texts
    assert texts_from_message("plain one\n\nplain two\n") == ["plain one", "plain two"]


def test_chat_reads_last_user_message(run):
    p = create_provider("extractive")
    messages = [
        ChatMessage("system", "- this bullet is in the system message and is ignored"),
        ChatMessage("user", "- an older user message, ignored"),
        ChatMessage("user", "Summarise:\n" + format_texts(CLUSTER)),
    ]
    r = run(p.chat(messages, model="tfidf-centroid"))
    assert r.text == summarize_texts(CLUSTER)
    assert (r.provider, r.model, r.finish_reason) == ("extractive", "tfidf-centroid", "stop")
    assert r.usage.prompt_tokens == sum(len(t.split()) for t in CLUSTER) and r.raw["n_texts"] == 5
    r2 = run(p.chat(messages, model="tfidf-centroid", n_sentences=2, max_tokens=3))
    assert len(r2.text.split()) == 3 and r2.finish_reason == "length"
    r3 = run(p.chat(messages, model="keyphrases"))
    assert r3.text == describe_texts(CLUSTER) and r3.model == "keyphrases" and r3.raw["method"] == "keyphrases"
    with pytest.raises(errors.ModelNotFoundError, match="no model 'keyphrase'.*tfidf-centroid, keyphrases"):
        run(p.chat(messages, model="keyphrase"))


def test_keyphrases_describe_what_the_texts_share():
    description = describe_texts(CLUSTER)
    phrases = description.split(", ")
    assert phrases[:2] == ["battery", "drains"] or phrases[:2] == ["phone", "battery"]  # in 3 of 5 texts each
    assert description not in CLUSTER and len(phrases) == 8  # written, not picked
    assert len({w for p in phrases for w in p.split()}) == sum(len(p.split()) for p in phrases)  # no word twice
    assert describe_texts(CLUSTER) == description and describe_texts(CLUSTER, n_phrases=2) == ", ".join(phrases[:2])
    # Two-word phrases need two texts; shared ones come through, ties go to the first seen.
    assert describe_texts(["c++ template error", "c++ template question", "python"], 1) == "c++ template"
    assert describe_texts(["the of and.", "a an the."]) == "the of and."  # only stop words: central sentence
    assert describe_texts([]) == ""
    with pytest.raises(ValueError):
        describe_texts(CLUSTER, n_phrases=0)


def test_chat_without_texts_and_embed_are_errors(run):
    p = create_provider("extractive")
    with pytest.raises(errors.BadRequestError, match="'- '"):
        run(p.chat([ChatMessage("system", "hi")], model="tfidf-centroid"))
    with pytest.raises(errors.UnsupportedOperation):
        run(p.embed(["x"], model="x"))
