"""Pooling of token-level embeddings to one vector per item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def mean_pool_tokens(
    token_embeddings: np.ndarray | Sequence[np.ndarray],
    mask: np.ndarray | None = None,
    lengths: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Mean of each item's valid token vectors -> (n_items, d).

    `token_embeddings` is either a padded (n_items, n_tokens, d) array, with the valid tokens given by
    `mask` ((n_items, n_tokens), nonzero = valid) or `lengths` (first lengths[i] tokens valid) or all
    valid when neither is given, or a sequence of (n_tokens_i, d) arrays (ragged, all tokens valid).
    An item with no valid token has no mean, so it raises ValueError.
    """
    if mask is not None and lengths is not None:
        raise ValueError("pass mask or lengths, not both.")
    if not isinstance(token_embeddings, np.ndarray):
        if mask is not None or lengths is not None:
            raise ValueError("mask/lengths apply to a padded 3-D array; a ragged list is used as is.")
        items = [np.asarray(t) for t in token_embeddings]
        if not items:
            raise ValueError("token_embeddings is empty; pass at least one item.")
        for i, item in enumerate(items):
            if item.ndim != 2 or item.shape[0] == 0:
                raise ValueError(f"item {i} has shape {item.shape}; each item must be a non-empty (n_tokens, d) array.")
        return np.stack([item.mean(axis=0) for item in items])
    tokens = token_embeddings
    if tokens.ndim != 3:
        raise ValueError(f"token_embeddings must be (n_items, n_tokens, d), got shape {tokens.shape}.")
    n, t, _ = tokens.shape
    if lengths is not None:
        lengths = np.asarray(lengths)
        if lengths.shape != (n,) or (lengths < 0).any() or (lengths > t).any():
            raise ValueError(f"lengths must be {n} integers between 0 and {t}.")
        mask = np.arange(t)[None, :] < lengths[:, None]
    if mask is None:
        return tokens.mean(axis=1)
    mask = np.asarray(mask)
    if mask.shape != (n, t):
        raise ValueError(f"mask has shape {mask.shape}, expected ({n}, {t}).")
    weights = (mask != 0).astype(tokens.dtype if np.issubdtype(tokens.dtype, np.floating) else np.float64)
    counts = weights.sum(axis=1)
    if (counts == 0).any():
        raise ValueError(f"item {int(np.flatnonzero(counts == 0)[0])} has no valid tokens; drop it before pooling.")
    return np.einsum("ntd,nt->nd", tokens, weights) / counts[:, None]
