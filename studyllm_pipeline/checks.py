"""Data-quality asset checks: the core's verdicts (studyllm_core.quality) as Dagster check specs and results.

Checks on what the next step reads are blocking: when one fails, the run stops before wrong data
flows on (the materialization stays, marked by the failed check). Each spec carries the asset's
partitions, so a result of a one-partition run is stored for that partition; a run over a K range
gives one result per check whose description and metadata name each partition.
"""

import warnings
from typing import Optional

import dagster as dg

from studyllm_core.quality import Verdict


def check_spec(
    asset: str, name: str, description: str, *, partitions_def: Optional[dg.PartitionsDefinition],
    blocking: bool = False,
) -> dg.AssetCheckSpec:
    """A check of `asset` with the asset's partitions, so the UI shows each partition's result.

    Partitioned checks are a preview feature of Dagster 1.13 (pinned with the webserver): its
    warning is silenced here only, for these specs, so the CLI and the code server stay quiet.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def on an AssetCheckSpec")
        return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking,
                                 partitions_def=partitions_def)


def quality_spec(
    asset: str, name: str, description: str, *, partitions_def: Optional[dg.PartitionsDefinition],
    blocking: bool = True,
) -> dg.AssetCheckSpec:
    """A data-quality check of `asset`; `description` says in plain words what it guarantees."""
    return check_spec(asset, name, description, partitions_def=partitions_def, blocking=blocking)


def quality_result(
    verdict: Verdict, *, asset: str, name: str, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR,
) -> dg.AssetCheckResult:
    """The check result of one verdict (lists and dicts shown as JSON)."""
    metadata = {key: dg.MetadataValue.json(value) if isinstance(value, (list, dict)) else value
                for key, value in verdict.metadata.items() if value is not None}
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=verdict.passed, severity=severity,
                               description=verdict.description, metadata=metadata)
