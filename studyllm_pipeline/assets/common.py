"""What every sweep asset shares: its decorator arguments and how user errors are reported."""

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg

from studyllm_core.errors import StudyllmError
from studyllm_core.providers.errors import PermanentError
from studyllm_core.redaction import redact

from studyllm_pipeline.lineage import provenance_check_spec

SWEEP_GROUP = "sweep"
USER_ERRORS = (StudyllmError, PermanentError)  # a user can fix these: bad input, missing keys, unknown models
API_POOL = "provider_api"  # caps parallel API-calling steps across runs (limit set in dagster.yaml)

# Assets that call a provider's API: with a paid provider they cost money. The owner answers for the
# spend; the tag lets a selection (`tag:cost=provider-api`) or an alert find them.
SPENDS_MONEY: dict[str, Any] = {"owners": ["team:studyllm"], "tags": {"cost": "provider-api"}}
# Kinds: how an asset is computed (python) and stored (parquet, numpy), plus postgres when its content
# comes from studyllm's tables (raw_calls, the embedding cache) rather than only from upstream files.
PARQUET, NUMPY = {"python", "parquet"}, {"python", "numpy"}


def sweep_asset_args(
    name: str, *, io: str, partitions_def: dg.PartitionsDefinition, checks: Sequence[dg.AssetCheckSpec] = (),
    postgres: bool = False,
) -> dict[str, Any]:
    """Keyword arguments of @dg.asset for one step of the sweep graph: its provenance check and `checks`."""
    return {
        "name": name,
        "group_name": SWEEP_GROUP,
        "io_manager_key": f"{io}_io",
        "partitions_def": partitions_def,
        "check_specs": [provenance_check_spec(name, partitions_def), *checks],
        "kinds": (NUMPY if io == "npy" else PARQUET) | ({"postgres"} if postgres else set()),
    }


def user_errors_as_failures(fn: Callable) -> Callable:
    """Report errors a user can fix (bad input, missing keys) as a one-line Failure in the event log.

    Other exceptions are bugs and keep their traceback.
    """

    def as_failure(exc: Exception) -> dg.Failure:
        return dg.Failure(description=redact(str(exc)), allow_retries=False)

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except USER_ERRORS as exc:
                raise as_failure(exc) from None

        return generator

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as exc:
            raise as_failure(exc) from None

    return plain

