"""The `extractive` provider: an offline, deterministic summariser behind the chat interface.

In the spirit of k-NLPmeans, a cluster's summary is its most central sentence(s): sentences
are TF-IDF vectors, and a sentence's centrality is its cosine similarity to the centroid of
all sentences (for L2-normalised rows, the same ranking as mean similarity to the others).
Ties go to the earlier sentence, so the same texts always give the same summary.

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
from studyllm_core.providers.errors import BadRequestError, ConfigurationError

DEFAULT_MODEL = "tfidf-centroid"
BULLET = "- "
CONTINUATION = "  "

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


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


def _last_user_content(messages: Iterable[ChatMessage | Mapping[str, Any]]) -> str | None:
    content = None
    for m in messages:
        role = m.role if isinstance(m, ChatMessage) else m.get("role")
        if role == "user":
            content = m.content if isinstance(m, ChatMessage) else m.get("content")
    return content if isinstance(content, str) else None


class ExtractiveSummarizer(Provider):
    """Summaries without a model or network: the most central sentence(s) of the texts in the prompt."""

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
            raw={"method": DEFAULT_MODEL, "n_texts": len(texts), "n_sentences": n},
        )

    def __repr__(self) -> str:
        return f"ExtractiveSummarizer(n_sentences={self.n_sentences})"
