"""The labelled short-text sets of /work/shared/data, embedded once with the packaged local MiniLM model and
cached under benchmarks/out/ (gitignored), so benchmarks that only need vectors rerun in seconds.

Run directly to fill the cache: python benchmarks/_labelled.py [names...]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data")
OUT = Path(__file__).resolve().parent / "out"
TRUE_K = {"stackoverflow": 20, "search_snippets": 8, "agnews_8000": 4, "tweet": 89}


@dataclass
class LabelledSet:
    name: str
    texts: list[str]
    labels: np.ndarray  # int codes, 0..true_k-1
    vectors: np.ndarray  # (N, 384) float32, unit rows (all-MiniLM-L6-v2)

    @property
    def true_k(self) -> int:
        return int(self.labels.max()) + 1


def read_tsv(name: str) -> tuple[list[str], np.ndarray]:
    """Texts and integer label codes of one set (label<TAB>text, no header)."""
    raw_labels, texts = [], []
    with open(DATA / f"{name}.tsv", encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                continue
            raw_labels.append(parts[0])
            texts.append(parts[1])
    _, codes = np.unique(np.array(raw_labels), return_inverse=True)
    return texts, codes.astype(np.int64)


def embed_texts(texts: list[str]) -> np.ndarray:
    """Unit-norm MiniLM vectors of `texts` with the packaged model (offline)."""
    from studyllm_core.process_policy import apply_process_policy
    from studyllm_core.providers.local import load_model

    apply_process_policy()  # benchmarks are entry points: the offline switches are theirs to set
    model = load_model()
    return model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True,
                        show_progress_bar=False).astype(np.float32)


def load(name: str, verbose: bool = True) -> LabelledSet:
    """One set with its vectors (embedded on first use, then read from benchmarks/out/)."""
    texts, labels = read_tsv(name)
    cache = OUT / f"vectors_{name}_minilm.npy"
    if cache.exists():
        vectors = np.load(cache)
        if vectors.shape[0] == len(texts):
            return LabelledSet(name, texts, labels, vectors)
    started = time.perf_counter()
    vectors = embed_texts(texts)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    if verbose:
        print(f"{name}: embedded {len(texts):,} texts in {time.perf_counter() - started:.0f} s -> {cache}", flush=True)
    return LabelledSet(name, texts, labels, vectors)


if __name__ == "__main__":
    for set_name in sys.argv[1:] or list(TRUE_K):
        data = load(set_name)
        print(f"{set_name}: {len(data.texts):,} texts, {data.true_k} labels, vectors {data.vectors.shape}", flush=True)
