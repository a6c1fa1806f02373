"""The clustering methods a user names (`studyllm sweep --method`, the Dagster sweep config), in one place.

`kmeans`: spherical k-means, k-LLMmeans with a summariser (SweepConfig.method "kllmmeans");
`ksubspaces`: rank-R affine k-subspaces, with summaries too when there is a summariser.
"""

from __future__ import annotations

from typing import Any

from studyllm_core.errors import InputError

METHODS = {"kmeans": "kllmmeans", "ksubspaces": "ksubspaces"}  # user's name -> SweepConfig.method
DEFAULT_METHOD = "kmeans"
DEFAULT_RANK = 1


def method_settings(method: str, rank: int | None) -> dict[str, Any]:
    """SweepConfig's `method` and `rank_r` for a method named by the user; InputError for a bad pair."""
    if method not in METHODS:
        raise InputError(f"method {method!r} is not one of {', '.join(METHODS)}")
    if method != "ksubspaces" and rank is not None:
        raise InputError(f"--rank is the subspace rank of ksubspaces; drop it or use --method ksubspaces (got {method})")
    rank = DEFAULT_RANK if rank is None else rank
    if rank < 0:
        raise InputError(f"the subspace rank must be at least 0, not {rank}")
    return {"method": METHODS[method], "rank_r": rank}


def check_method_fits(config_method: str, rank_r: int, k_max: int, n: int, what: str = "usable texts") -> None:
    """InputError, before any call, when K subspaces of rank R need more texts than there are."""
    if config_method == "ksubspaces" and k_max * (rank_r + 1) > n:
        raise InputError(
            f"ksubspaces with rank {rank_r} needs k_max x (rank + 1) = {k_max * (rank_r + 1)} texts but there are "
            f"{n} {what}: lower --k-max or --rank"
        )
