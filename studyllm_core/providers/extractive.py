"""The `extractive` provider: an offline, deterministic summariser behind the chat interface.

Two models, chosen by the model name (`extractive` or `extractive:keyphrases` as a summarizer spec):

* "tfidf-centroid" (default), in the spirit of k-NLPmeans: a cluster's summary is its most central
  sentence(s): sentences are TF-IDF vectors, and a sentence's centrality is its cosine similarity to
  the centroid of all sentences (for L2-normalised rows, the same ranking as mean similarity to the
  others). The summary is a member's sentence, i.e. close to a medoid.
* "keyphrases": a description written from the texts rather than picked from them: the words and
  two-word phrases found in the most texts (English stop words left out), e.g.
  "excel, vba macro, cell, worksheet" (see `describe_texts`).

Ties go to the earlier sentence or phrase, so the same texts always give the same summary.

Message format (what `chat` reads), so a summarisation service can build matching prompts:

* Only the LAST message with role "user" is read; system and earlier messages are ignored.
* If any line of it starts with "- ", every such line starts one text; a following line that
  starts with two spaces continues that text (joined with a newline); every other line
  (instructions, headers, blank lines) is ignored. `format_texts(texts)` writes this format.
* Otherwise each non-blank line is one text.
* `n_sentences` (default 1) may be passed to `chat(...)` as a keyword parameter;
  `max_tokens` cuts the summary to that many whitespace-separated words.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from studyllm_core.providers.base import ChatMessage, ChatResponse, Provider, TokenUsage
from studyllm_core.providers.errors import BadRequestError, ConfigurationError, ModelNotFoundError

DEFAULT_MODEL = "tfidf-centroid"
KEYPHRASES_MODEL = "keyphrases"
MODELS = (DEFAULT_MODEL, KEYPHRASES_MODEL)
DEFAULT_N_PHRASES = 8
BULLET = "- "
CONTINUATION = "  "

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")
# Words keep inner + # . _ - (c++, c#, asp.net, jquery-ui); a lone letter or digit is a word too.
_WORD = re.compile(r"[a-z0-9][a-z0-9+#._-]*[a-z0-9+#]|[a-z0-9]")


def format_texts(texts: Iterable[str]) -> str:
    """Texts as the bullet list `texts_from_message` reads back (newlines become continuation lines)."""
    lines: list[str] = []
    for text in texts:
        parts = [p.strip() for p in str(text).strip().splitlines() if p.strip()] or [""]
        lines.append(BULLET + parts[0])
        lines.extend(CONTINUATION + p for p in parts[1:])
    return "\n".join(lines)


def texts_from_message(content: str) -> list[str]:
    """The texts in one message: bullet items if there are any, else the non-blank lines."""
    lines = content.splitlines()
    if not any(line.startswith(BULLET) for line in lines):
        return [line.strip() for line in lines if line.strip()]
    texts: list[list[str]] = []
    in_item = False
    for line in lines:
        if line.startswith(BULLET):
            texts.append([line[len(BULLET):].strip()])
            in_item = True
        elif in_item and line.startswith(CONTINUATION) and line.strip():
            texts[-1].append(line.strip())
        else:
            in_item = False
    return ["\n".join(parts) for parts in texts if any(parts)]


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: split after . ! ? followed by space, and at line breaks."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def _tfidf(sentences: Sequence[str]) -> np.ndarray | None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    for stop_words in ("english", None):
        try:
            return TfidfVectorizer(stop_words=stop_words, sublinear_tf=True).fit_transform(sentences).toarray()
        except ValueError:  # empty vocabulary: only stop words / punctuation
            continue
    return None


def rank_sentences(texts: Sequence[str]) -> list[tuple[str, float]]:
    """Unique sentences of `texts`, most central first (ties: earlier first), with their scores."""
    sentences = [s for t in texts for s in split_sentences(t)]
    if not sentences:
        return []
    matrix = _tfidf(sentences)
    if matrix is None:
        scores = np.zeros(len(sentences))
    else:
        centroid = matrix.mean(axis=0)
        norm = np.linalg.norm(centroid)
        scores = matrix @ (centroid / norm) if norm > 0 else np.zeros(len(sentences))
    first_seen: dict[str, int] = {}
    for i, s in enumerate(sentences):
        first_seen.setdefault(s, i)
    # Rounding makes float noise count as a tie, so order decides, not the last bit.
    order = sorted(first_seen, key=lambda s: (-round(float(scores[first_seen[s]]), 9), first_seen[s]))
    return [(s, float(scores[first_seen[s]])) for s in order]


def summarize_texts(texts: Sequence[str], n_sentences: int = 1) -> str:
    """The `n_sentences` most central sentences of `texts`, in their original order, joined by spaces."""
    if n_sentences < 1:
        raise ValueError("n_sentences must be at least 1")
    ranked = rank_sentences([t for t in texts if t and t.strip()])
    chosen = {s for s, _ in ranked[:n_sentences]}
    out: list[str] = []
    for t in texts:
        for s in split_sentences(t or ""):
            if s in chosen and s not in out:
                out.append(s)
    return " ".join(out)


def _phrases(text: str, stop: frozenset[str]) -> list[str]:
    """Candidate phrases of one text in order: content words and adjacent pairs of content words."""
    words = [w for w in _WORD.findall(text.lower()) if len(w) > 1 and not w.isdigit()]
    out: list[str] = []
    for i, w in enumerate(words):
        if w in stop:
            continue
        out.append(w)
        if i + 1 < len(words) and words[i + 1] not in stop:
            out.append(f"{w} {words[i + 1]}")
    return out


def describe_texts(texts: Sequence[str], n_phrases: int = DEFAULT_N_PHRASES) -> str:
    """A keyphrase description of `texts`: up to `n_phrases` words or two-word phrases, most shared
    first, joined by ", ". A phrase's weight is the number of texts it occurs in (a two-word phrase
    needs at least two, and wins a tie with its words); a phrase sharing a word with one already
    chosen is skipped, so the description names different things. Other ties: the phrase seen first. Texts without a content word
    (only stop words) fall back to the most central sentence (`summarize_texts`)."""
    if n_phrases < 1:
        raise ValueError("n_phrases must be at least 1")
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for text in texts:
        for phrase in dict.fromkeys(_phrases(text or "", ENGLISH_STOP_WORDS)):
            counts[phrase] = counts.get(phrase, 0) + 1
            first.setdefault(phrase, len(first))
    ranked = sorted(
        (p for p in counts if " " not in p or counts[p] >= 2), key=lambda p: (-counts[p], -p.count(" "), first[p])
    )
    chosen: list[str] = []
    used: set[str] = set()
    for phrase in ranked:
        words = set(phrase.split())
        if words & used:
            continue
        chosen.append(phrase)
        used |= words
        if len(chosen) == n_phrases:
            break
    return ", ".join(chosen) or summarize_texts(texts)


def _last_user_content(messages: Iterable[ChatMessage | Mapping[str, Any]]) -> str | None:
    content = None
    for m in messages:
        role = m.role if isinstance(m, ChatMessage) else m.get("role")
        if role == "user":
            content = m.content if isinstance(m, ChatMessage) else m.get("content")
    return content if isinstance(content, str) else None


class ExtractiveSummarizer(Provider):
    """Summaries without a model or network: the most central sentence(s) of the texts in the prompt
    (model "tfidf-centroid") or a keyphrase description of them (model "keyphrases")."""

    name: ClassVar[str] = "extractive"

    def __init__(self, *, n_sentences: int = 1) -> None:
        if n_sentences < 1:
            raise ConfigurationError(f"extractive provider: n_sentences must be at least 1, got {n_sentences}")
        self.n_sentences = n_sentences

    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        model: str = DEFAULT_MODEL,
        temperature: float | None = None,
        max_tokens: int | None = None,
        **params: Any,
    ) -> ChatResponse:
        start = time.perf_counter()
        if model not in MODELS:
            raise ModelNotFoundError(
                f"extractive provider has no model {model!r}: use one of {', '.join(MODELS)} "
                "(e.g. --summarizer extractive:keyphrases)",
                provider=self.name,
            )
        content = _last_user_content(messages)
        texts = texts_from_message(content) if content else []
        if not texts:
            raise BadRequestError(
                "extractive provider found no texts: put them in the last user message, one per line starting with '- '",
                provider=self.name,
            )
        n = int(params.get("n_sentences", self.n_sentences))
        if n < 1:
            raise BadRequestError("n_sentences must be at least 1", provider=self.name)
        if model == KEYPHRASES_MODEL:
            summary = await asyncio.to_thread(describe_texts, texts, int(params.get("n_phrases", DEFAULT_N_PHRASES)))
        else:
            summary = await asyncio.to_thread(summarize_texts, texts, n)  # TF-IDF on big clusters: off the loop
        finish_reason = "stop"
        words = summary.split()
        if max_tokens is not None and len(words) > max_tokens:
            summary, finish_reason = " ".join(words[:max_tokens]), "length"
        prompt_tokens = sum(len(t.split()) for t in texts)
        completion_tokens = len(summary.split())
        return ChatResponse(
            text=summary,
            provider=self.name,
            model=model,
            usage=TokenUsage(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens),
            latency_ms=(time.perf_counter() - start) * 1000.0,
            finish_reason=finish_reason,
            raw={"method": model, "n_texts": len(texts), "n_sentences": n},
        )

    def __repr__(self) -> str:
        return f"ExtractiveSummarizer(n_sentences={self.n_sentences})"
