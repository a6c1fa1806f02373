"""ProvenanceService: the conventions for recording where every result came from.

Group types: `dataset`, `embedding_batch`, `step`, `summarization_batch`, `metrics`, `run`
(plus `batch`, `prompt_run`, `conversation` from the capture services). Edges:

- `depends_on`: parent = the input, child = what was made from it (data flows parent -> child);
- `step`: parent = a run, child = one of its steps, `position` = the step's place in the run;
- `contains` / `generates`: free for callers.

Ancestors of a group are reached by walking `depends_on` edges to parents; descendants by
walking them to children. The pipeline and the CLI use this same code.

A pipeline materialization is recorded by one call, `record_materialization`, from what the
orchestrator knows (`Materialization`: asset, partition, run id, the upstream assets and partitions it
read); the naming conventions are here: the group `<asset>[<partition>]`, and for a partition of a
dataset (`demo` or `demo|7`) a step of the run group `sweep[<dataset>]`.

Run history: a group is what a result *is* (one per asset partition; its metadata holds the latest
run id and config, and its `depends_on` links accumulate over runs); each time it is made adds a
*record* (`materializations`: run id, config with secrets masked, code version, library versions,
time) tied to the groups it read and to the record each of them had then (`materialization_inputs`).
So `run_lineage(run_id)` shows exactly what one run made and read, and `history(asset, partition)`
every materialisation of an asset partition, newest first. A Dagster run's id is Dagster's; a CLI run
(`studyllm sweep`, `studyllm embed`) gets a `cli-...` id (`new_run_id`).

Member roles (`group_members.role`, as the plan defines them): `output` for the calls a group made
(recorded into it), `input` for the calls of other runs it reused (cached embeddings, shared replies).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import metadata as importlib_metadata
from typing import Any

from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import transaction, translate_db_errors
from studyllm_core.db.groups import ArtifactRow, GroupRepository, GroupRow, LinkRow
from studyllm_core.db.jsonutil import dumps, jsonb
from studyllm_core.db.vocabulary import ROLE_INPUT, ROLE_OUTPUT  # noqa: F401 - the member roles, re-exported
from studyllm_core.errors import NotFoundError
from studyllm_core.redaction import redact_settings

LIBRARIES = ("studyllm", "dagster", "numpy", "scikit-learn")  # the versions every record keeps


@lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """The installed versions of the libraries a result depends on (read from package metadata, not imported)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return found


def new_run_id() -> str:
    """The run id of a run started outside Dagster (a CLI command, a notebook): `cli-<uuid>`."""
    return f"cli-{uuid.uuid4().hex}"


def config_hash(config: Mapping[str, Any] | None) -> str:
    """A short fingerprint of a config (canonical JSON): equal configs, equal hashes."""
    canonical = json.dumps(config or {}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def config_diff(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, prefix: str = "") -> dict[str, list[Any]]:
    """What changed from `old` to `new`: dotted key -> [old value, new value] (None where absent)."""
    old, new = old or {}, new or {}
    changed: dict[str, list[Any]] = {}
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed.update(config_diff(a, b, f"{prefix}{key}."))
        elif a != b:
            changed[f"{prefix}{key}"] = [a, b]
    return changed


@dataclass(frozen=True)
class RunStamp:
    """Who made a record: the run id, the config it ran with (masked when written), the code version
    (default: the studyllm version) and versions beyond the libraries' (e.g. the embedding model)."""

    run_id: str
    config: Mapping[str, Any] = field(default_factory=dict)
    code_version: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordRow:
    """One materialisation of a group, with the records of the groups it read."""

    id: int
    group_id: int
    group_type: str
    group_name: str
    run_id: str
    asset: str
    partition: str | None
    config: dict[str, Any] | None
    code_version: str | None
    versions: dict[str, Any] | None
    created_at: datetime
    inputs: list[dict[str, Any]] = field(default_factory=list)  # {group, group_id, record_id, run_id, same_run}

    def to_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.id, "group_id": self.group_id, "group_type": self.group_type, "group": self.group_name,
            "run_id": self.run_id, "asset": self.asset, "partition": self.partition, "config": self.config,
            "config_hash": config_hash(self.config), "code_version": self.code_version, "versions": self.versions,
            "created_at": self.created_at.isoformat(), "inputs": self.inputs,
        }


@dataclass
class Provenance:
    """One group's place in the record: where it came from, what came of it, what it holds."""

    group: GroupRow
    ancestors: list[tuple[GroupRow, int]]  # (group, distance), nearest first
    descendants: list[tuple[GroupRow, int]]
    steps: list[GroupRow]  # for a run: its steps in order
    runs: list[GroupRow]  # runs this group is a step of
    member_count: int
    artifacts: list[ArtifactRow] = field(default_factory=list)
    member_roles: dict[str, int] = field(default_factory=dict)  # role ('input', 'output', 'unset') -> calls
    records: list[RecordRow] = field(default_factory=list)  # its materialisations, newest first

    def to_dict(self) -> dict[str, Any]:
        def g(row: GroupRow) -> dict[str, Any]:
            return {"id": row.id, "type": row.group_type, "name": row.name}

        return {
            "group_id": self.group.id,
            "group": {**g(self.group), "metadata": self.group.metadata_json, "created_at": self.group.created_at.isoformat()},
            "ancestors": [{**g(row), "distance": d} for row, d in self.ancestors],
            "descendants": [{**g(row), "distance": d} for row, d in self.descendants],
            "steps": [g(row) for row in self.steps],
            "runs": [g(row) for row in self.runs],
            "members": self.member_count,
            "member_roles": self.member_roles,
            "history": with_changes(self.records),
            "artifacts": [
                {"id": a.id, "uri": a.uri, "content_type": a.content_type, "byte_size": a.byte_size, "sha256": a.sha256}
                for a in self.artifacts
            ],
        }


@dataclass(frozen=True)
class StepRecord:
    """What a caller knows about one step it ran: its group, the run it belongs to, what it read.

    The pipeline builds one per materialization (asset key and partition make `name`, the Dagster
    run id goes in `metadata`, upstream asset keys and partitions make `inputs`); `run` names the
    `run` group that orders the steps of one sweep.
    """

    group_type: str
    name: str
    run: str | None = None
    position: int = 0
    inputs: dict[str, str] = field(default_factory=dict)  # upstream group name -> its group type
    extra_inputs: tuple[int, ...] = ()  # ids of groups outside the graph the step read (a dataset source)
    metadata: dict[str, Any] = field(default_factory=dict)
    run_metadata: dict[str, Any] = field(default_factory=dict)
    stamp: RunStamp | None = None  # the run that made it: a record of this materialisation is added
    asset: str | None = None  # the record's asset key (default: the group's name)
    partition: str | None = None


def materialization_group(asset: str, partition: str | None = None) -> str:
    """The group name of one materialization of an asset: `<asset>[<partition>]`, or `<asset>` unpartitioned."""
    return f"{asset}[{partition}]" if partition else asset


def dataset_of(partition: str | None) -> str | None:
    """The dataset of a partition key (`demo` for both `demo` and `demo|7`)."""
    return str(partition).split("|")[0] if partition else None


def sweep_run_group(dataset: str) -> str:
    """The name of the `run` group that orders the sweep steps of one dataset."""
    return f"sweep[{dataset}]"


@dataclass(frozen=True)
class Materialization:
    """What an orchestrator knows about one materialization of an asset (`step()` names its groups)."""

    asset: str
    partition: str | None
    run_id: str
    group_type: str = "step"
    position: int = 0
    upstream: Mapping[tuple[str, str | None], str] = field(default_factory=dict)  # (asset, partition) read -> group type
    extra_inputs: tuple[int, ...] = ()  # ids of groups outside the asset graph it read (a dataset's source)
    config: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    code_version: str | None = None  # the asset's code version (default: the studyllm version)
    versions: dict[str, str] = field(default_factory=dict)  # beyond the libraries' (e.g. the embedding model)

    def input_names(self) -> list[str]:
        """The groups of the upstream materializations it read."""
        return [materialization_group(asset, partition) for asset, partition in self.upstream]

    def step(self) -> StepRecord:
        """The StepRecord of this materialization, by the conventions in the module docstring."""
        dataset = dataset_of(self.partition)
        return StepRecord(
            group_type=self.group_type,
            name=materialization_group(self.asset, self.partition),
            run=sweep_run_group(dataset) if dataset else None,
            position=self.position,
            inputs={materialization_group(a, p): kind for (a, p), kind in self.upstream.items()},
            extra_inputs=tuple(self.extra_inputs),
            metadata={
                "dagster_run_id": self.run_id,
                "asset_key": self.asset,
                "partition": self.partition,
                "config": redact_settings(self.config),
                **self.metadata,
            },
            run_metadata={"dataset": dataset} if dataset else {},
            stamp=RunStamp(self.run_id, self.config, self.code_version, self.versions),
            asset=self.asset,
            partition=self.partition,
        )


def with_changes(records: Sequence[RecordRow]) -> list[dict[str, Any]]:
    """Records (newest first) as dicts, each with `config_changes`: its config's diff from the next older
    record of the same group (None for the oldest)."""
    out = []
    for i, row in enumerate(records):
        older = next((r for r in records[i + 1:] if r.group_id == row.group_id), None)
        out.append({**row.to_dict(), "config_changes": None if older is None else config_diff(older.config, row.config)})
    return out


SCOPE_LINKS = ("depends_on", "step", "contains")  # edges that lead from a group to the groups it covers

_WALK_SQL = """
WITH RECURSIVE walk(id, distance, path) AS (
    SELECT CAST(:start AS bigint), 0, ARRAY[CAST(:start AS bigint)]
    UNION ALL
    SELECT l.{next}, w.distance + 1, w.path || l.{next}
    FROM walk w JOIN group_links l ON l.{this} = w.id AND l.link_type = ANY(CAST(:types AS text[]))
    WHERE NOT l.{next} = ANY(w.path)
)
SELECT g.id, g.group_type, g.name, g.description, g.metadata_json, g.created_at, min(w.distance) AS distance
FROM walk w JOIN groups g ON g.id = w.id
WHERE w.distance > 0
GROUP BY g.id ORDER BY distance, g.id
"""


# One statement per record: the record, and its inputs each tied to the record that input group had
# when it was read (this run's own when it made one, else the newest).
_RECORD_SQL = """
WITH rec AS (
    INSERT INTO materializations (group_id, run_id, asset_key, partition, config, code_version, versions)
    VALUES (:g, :run, :asset, :partition, :config, :code, :versions) RETURNING id
), ins AS (
    INSERT INTO materialization_inputs (materialization_id, input_group_id, input_materialization_id)
    SELECT rec.id, u.g, (SELECT m.id FROM materializations m WHERE m.group_id = u.g
                         ORDER BY (m.run_id = :run) DESC, m.id DESC LIMIT 1)
    FROM rec, unnest(CAST(:inputs AS bigint[])) AS u(g)
)
SELECT id FROM rec
"""

# The same, for many records: the records (one per group), then every input tied to the record its group
# has in the record's own run when there is one (made by this batch or before), else the newest.
_RECORDS_SQL = """
INSERT INTO materializations (group_id, run_id, asset_key, partition, config, code_version, versions)
SELECT u.g, u.run, u.asset, u.partition, CAST(u.config AS jsonb), u.code, CAST(u.versions AS jsonb)
FROM unnest(CAST(:g AS bigint[]), CAST(:run AS text[]), CAST(:asset AS text[]), CAST(:partition AS text[]),
            CAST(:config AS text[]), CAST(:code AS text[]), CAST(:versions AS text[]))
     WITH ORDINALITY AS u(g, run, asset, partition, config, code, versions, ord)
ORDER BY u.ord
RETURNING group_id, id
"""
_RECORD_INPUTS_SQL = """
INSERT INTO materialization_inputs (materialization_id, input_group_id, input_materialization_id)
SELECT r.id, u.g, (SELECT m.id FROM materializations m WHERE m.group_id = u.g
                   ORDER BY (m.run_id = r.run_id) DESC, m.id DESC LIMIT 1)
FROM unnest(CAST(:recs AS bigint[]), CAST(:inputs AS bigint[])) AS u(rec, g)
JOIN materializations r ON r.id = u.rec
"""

_RECORD_COLS = (
    "m.id, m.group_id, g.group_type, g.name, m.run_id, m.asset_key, m.partition, m.config, m.code_version, "
    "m.versions, m.created_at"
)
_INPUTS_SQL = """
SELECT i.materialization_id, g.name, g.id, i.input_materialization_id, m.run_id, m.created_at
FROM materialization_inputs i JOIN groups g ON g.id = i.input_group_id
LEFT JOIN materializations m ON m.id = i.input_materialization_id
WHERE i.materialization_id = ANY(CAST(:ids AS bigint[]))
ORDER BY i.materialization_id, g.name
"""


class ProvenanceService:
    """Create groups and edges by convention, and read a group's provenance back in a few queries."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.groups = GroupRepository(engine)

    def ensure_group(self, group_type: str, name: str, *, metadata: dict[str, Any] | None = None) -> int:
        """Id of the group (type, name), created on first use; `metadata` is merged into it."""
        return self.groups.ensure_group(group_type, name, metadata=metadata)

    def lookup(self, group_type: str, name: str) -> GroupRow | None:
        """The group (type, name), or None."""
        return self.groups.lookup(group_type, name)

    def link(self, parent_id: int, child_id: int, link_type: str) -> int:
        """Id of the edge parent -> child of `link_type`, created on first use."""
        return self.groups.link(parent_id, child_id, link_type)

    def list_groups(self, group_type: str | None = None, *, limit: int = 100) -> list[tuple[GroupRow, int]]:
        """The newest groups (of one type), each with its number of member calls (two queries)."""
        found = self.groups.list_groups(group_type, limit=limit)
        counts = self.groups.member_counts([g.id for g in found])
        return [(g, counts.get(g.id, 0)) for g in found]

    def record_step(
        self,
        group_type: str,
        name: str,
        *,
        inputs: Iterable[int] = (),
        run_id: int | None = None,
        position: int | None = None,
        metadata: dict[str, Any] | None = None,
        stamp: RunStamp | None = None,
    ) -> int:
        """Create or reuse the group (type, name), link each input to it, and place it in a run (one
        transaction); with `stamp`, add a record of this materialisation (run history)."""
        with transaction(self.groups.engine) as conn:
            group_id = self.groups.ensure_group(group_type, name, metadata=metadata, conn=conn)
            parents = list(dict.fromkeys(i for i in inputs if i != group_id))  # distinct, in the given order
            self.groups.link_parents(parents, group_id, "depends_on", conn=conn)
            if run_id is not None:
                self.groups.link(run_id, group_id, "step", position=position, conn=conn)
            if stamp is not None:
                self._add_record(conn, group_id, stamp, parents, name, None)
        return group_id

    def add_record(self, group_id: int, stamp: RunStamp, *, inputs: Sequence[int] = (), asset: str | None = None,
                   partition: str | None = None) -> int:
        """Record one materialisation of an existing group (a run group, a batch made again); returns the record id."""
        group = self.groups.get_group(group_id)
        if group is None:
            raise NotFoundError(f"no group with id {group_id}")
        with transaction(self.groups.engine) as conn:
            return self._add_record(conn, group_id, stamp, list(inputs), asset or group.name, partition)

    @staticmethod
    def _record_values(group_id: int, stamp: RunStamp, asset: str, partition: str | None) -> dict[str, Any]:
        """The columns of one record: config masked, library versions, code version (default: studyllm's)."""
        versions = {**library_versions(), **stamp.versions}
        code = stamp.code_version or (f"studyllm {versions['studyllm']}" if "studyllm" in versions else None)
        return {"g": group_id, "run": stamp.run_id, "asset": asset, "partition": partition,
                "config": redact_settings(dict(stamp.config)), "code": code, "versions": versions}

    def _add_record(self, conn: Connection, group_id: int, stamp: RunStamp, inputs: Sequence[int], asset: str,
                    partition: str | None) -> int:
        values = self._record_values(group_id, stamp, asset, partition)
        params = {**values, "config": jsonb(values["config"]), "versions": jsonb(values["versions"]),
                  "inputs": [i for i in dict.fromkeys(inputs) if i != group_id]}
        with translate_db_errors(f"recording a materialisation of {asset}"):
            return int(conn.execute(text(_RECORD_SQL), params).scalar_one())

    def _add_records(self, conn: Connection, stamped: Sequence[tuple[StepRecord, int, list[int]]]) -> None:
        """`_add_record` of many (step, group id, input group ids) in two statements."""
        rows = []
        for step, group_id, _ in stamped:
            values = self._record_values(group_id, step.stamp, step.asset or step.name, step.partition)
            rows.append({**values, "config": dumps(values["config"]), "versions": dumps(values["versions"])})
        columns = {c: [r[c] for r in rows] for c in ("g", "run", "asset", "partition", "config", "code", "versions")}
        with translate_db_errors(f"recording {len(rows)} materialisations"):
            made = dict(conn.execute(text(_RECORDS_SQL), columns).all())  # group id -> record id
            pairs = [(made[g], i) for _, g, inputs in stamped for i in dict.fromkeys(inputs) if i != g]
            if pairs:
                conn.execute(text(_RECORD_INPUTS_SQL), {"recs": [r for r, _ in pairs], "inputs": [i for _, i in pairs]})

    def record(self, step: StepRecord) -> int:
        """Record one step in one call: its input groups (created by name where missing, one
        statement per group type), its run group, the step's group, and the links between them."""
        by_type: dict[str, list[str]] = {}
        for name, group_type in step.inputs.items():
            by_type.setdefault(group_type, []).append(name)
        with transaction(self.groups.engine) as conn:
            ids: dict[str, int] = {}
            for group_type, names in by_type.items():
                ids.update(self.groups.ensure_groups(group_type, names, conn=conn))
            run_id = None
            if step.run is not None:
                run_id = self.groups.ensure_group("run", step.run, metadata=step.run_metadata or None, conn=conn)
            group_id = self.groups.ensure_group(step.group_type, step.name, metadata=step.metadata, conn=conn)
            parents = [ids[name] for name in step.inputs] + list(step.extra_inputs)
            self.groups.link_parents(list(dict.fromkeys(p for p in parents if p != group_id)), group_id, "depends_on", conn=conn)
            if run_id is not None:
                self.groups.link(run_id, group_id, "step", position=step.position, conn=conn)
            if step.stamp is not None:
                self._add_record(conn, group_id, step.stamp, parents, step.asset or step.name, step.partition)
        return group_id

    def record_materialization(self, materialization: Materialization) -> int:
        """Record one materialization of a pipeline asset in one call (`record` of its `step()`)."""
        return self.record(materialization.step())

    def record_materializations(self, materializations: Sequence[Materialization]) -> list[int]:
        """Record many materializations (the K of a ranged run) in one transaction, set-based: what
        `record_materialization` of each would store, in a fixed number of statements whatever their
        count. Group ids in the given order."""
        return self.record_steps([m.step() for m in materializations])

    def record_steps(self, steps: Sequence[StepRecord]) -> list[int]:
        """`record` of many steps in one transaction: one statement per group type for the groups, one for
        the runs' step links, one for the `depends_on` links, two for the records (each input tied to this
        run's record of it when the batch made one, as `record` in order would)."""
        if not steps:
            return []
        with transaction(self.groups.engine) as conn:
            ids: dict[tuple[str, str], int] = {}
            inputs_by_type: dict[str, list[str]] = {}
            for step in steps:
                for name, group_type in step.inputs.items():
                    inputs_by_type.setdefault(group_type, []).append(name)
            for group_type, names in inputs_by_type.items():
                found = self.groups.ensure_groups(group_type, list(dict.fromkeys(names)), conn=conn)
                ids.update({(group_type, n): i for n, i in found.items()})
            by_type: dict[str, list[StepRecord]] = {}
            for step in steps:
                by_type.setdefault(step.group_type, []).append(step)
            for group_type, group_steps in by_type.items():
                found = self.groups.ensure_groups(group_type, [s.name for s in group_steps],
                                                  metadata=[s.metadata for s in group_steps], conn=conn)
                ids.update({(group_type, n): i for n, i in found.items()})
            runs: dict[str, int] = {}
            for step in steps:
                if step.run is not None and step.run not in runs:
                    runs[step.run] = self.groups.ensure_group("run", step.run, metadata=step.run_metadata or None, conn=conn)
            group_ids = [ids[(s.group_type, s.name)] for s in steps]
            placed = [(runs[s.run], g, s.position) for s, g in zip(steps, group_ids) if s.run is not None]
            if placed:
                self.groups.link_positions(*(list(c) for c in zip(*placed)), "step", conn=conn)
            parents_of = [list(dict.fromkeys(p for p in [ids[(t, n)] for n, t in s.inputs.items()] + list(s.extra_inputs)
                                             if p != g)) for s, g in zip(steps, group_ids)]
            pairs = list(dict.fromkeys((p, g) for parents, g in zip(parents_of, group_ids) for p in parents))
            if pairs:
                self.groups.link_pairs([p for p, _ in pairs], [c for _, c in pairs], "depends_on", conn=conn)
            stamped = [(s, g, parents) for s, g, parents in zip(steps, group_ids, parents_of) if s.stamp is not None]
            if stamped:
                self._add_records(conn, stamped)
        return group_ids

    def inputs_of(self, group_id: int) -> list[GroupRow]:
        """The groups this one was made from (its `depends_on` parents, over all its runs)."""
        return self.groups.parent_groups(group_id, "depends_on")

    # -- run history ----------------------------------------------------------------------------

    def _records(self, where: str, params: dict[str, Any], order: str = "m.id DESC") -> list[RecordRow]:
        sql = f"SELECT {_RECORD_COLS} FROM materializations m JOIN groups g ON g.id = m.group_id WHERE {where} ORDER BY {order}"
        with translate_db_errors("reading run history"), self.engine.connect() as conn:
            rows = [RecordRow(*r) for r in conn.execute(text(sql), params)]
            inputs: dict[int, list[dict[str, Any]]] = {}
            if rows:
                for rid, name, gid, input_rid, input_run, input_at in conn.execute(text(_INPUTS_SQL), {"ids": [r.id for r in rows]}):
                    inputs.setdefault(int(rid), []).append({
                        "group": name, "group_id": int(gid), "record_id": input_rid, "run_id": input_run,
                        "created_at": input_at.isoformat() if input_at else None,
                    })
        for row in rows:
            row.inputs.extend({**i, "same_run": i["run_id"] == row.run_id} for i in inputs.get(row.id, []))
        return rows

    def run_lineage(self, run_id: str) -> list[RecordRow]:
        """Every record one run made (oldest first), each with the records of its inputs; NotFoundError for an unknown run."""
        found = self._records("m.run_id = :run", {"run": run_id}, order="m.id")
        if not found:
            raise NotFoundError(
                f"no materialisation recorded for run {run_id!r}; copy a run id from the Dagster UI (Runs) or from "
                "`studyllm provenance --asset ASSET --partition P`"
            )
        return found

    def history(self, asset: str, partition: str | None = None) -> list[RecordRow]:
        """Every materialisation of an asset (at a partition), newest first; NotFoundError when there is none."""
        found = self._records("m.asset_key = :a AND m.partition IS NOT DISTINCT FROM :p", {"a": asset, "p": partition})
        if not found:
            where = f" at partition {partition!r}" if partition else " without a partition"
            raise NotFoundError(
                f"no materialisation of {asset!r}{where} is recorded; check the asset key and --partition "
                "(e.g. --asset clusters --partition 'demo|10'), or list groups with `studyllm groups`"
            )
        return found

    def records_of(self, group_id: int, *, run_id: str | None = None) -> list[RecordRow]:
        """The records of one group, newest first (only those of `run_id` when given)."""
        where, params = "m.group_id = :g", {"g": group_id}
        if run_id is not None:
            where, params = where + " AND m.run_id = :run", {**params, "run": run_id}
        return self._records(where, params)

    def run_inputs_of(self, group_ids: Sequence[int], run_id: str) -> dict[int, set[str] | None]:
        """Group id -> the names of the inputs stored in `run_id`'s record of it (None: that run made no
        record of the group), for many groups in one query."""
        found: dict[int, set[str] | None] = {int(g): None for g in group_ids}
        if group_ids:
            for row in self._records("m.group_id = ANY(CAST(:gs AS bigint[])) AND m.run_id = :run",
                                     {"gs": [int(g) for g in group_ids], "run": run_id}):
                if found[row.group_id] is None:  # newest record of the run first
                    found[row.group_id] = {i["group"] for i in row.inputs}
        return found

    def walk(
        self, group_id: int, *, direction: str, link_types: Sequence[str] = ("depends_on",)
    ) -> list[tuple[GroupRow, int]]:
        """All ancestors ("up") or descendants ("down") through edges of `link_types`, with distance."""
        this, nxt = ("child_group_id", "parent_group_id") if direction == "up" else ("parent_group_id", "child_group_id")
        sql = text(_WALK_SQL.format(this=this, next=nxt))
        with translate_db_errors("walking provenance"), self.engine.connect() as conn:
            rows = conn.execute(sql, {"start": group_id, "types": list(link_types)})
            return [(GroupRow(*row[:6]), int(row[6])) for row in rows]

    def scope(self, group_id: int) -> list[int]:
        """The group and every group below it (made from it, its steps, what it contains): whose calls it covers."""
        return [group_id] + [g.id for g, _ in self.walk(group_id, direction="down", link_types=SCOPE_LINKS)]

    def provenance(self, id_or_name: str | int) -> Provenance:
        """Everything recorded about one group (NotFoundError if there is no such group)."""
        group = self.groups.find_group(id_or_name)
        runs = self.groups.parent_groups(group.id, "step")
        sql = text("SELECT coalesce(role, 'unset'), count(*) FROM group_members WHERE group_id = :g GROUP BY 1 ORDER BY 1")
        with translate_db_errors("counting members"), self.engine.connect() as conn:
            roles = {str(role): int(n) for role, n in conn.execute(sql, {"g": group.id})}
        members = sum(roles.values())
        return Provenance(
            group=group,
            ancestors=self.walk(group.id, direction="up"),
            descendants=self.walk(group.id, direction="down"),
            steps=self.groups.get_run_step_sequence(group.id),
            runs=runs,
            member_count=int(members),
            artifacts=self.groups.artifacts(group_id=group.id),
            member_roles=roles,
            records=self.records_of(group.id),
        )

    def links_of(self, group_id: int) -> list[LinkRow]:
        return self.groups.parents(group_id) + self.groups.children(group_id)
