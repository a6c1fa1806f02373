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
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from studyllm_core.db.engine import transaction, translate_db_errors
from studyllm_core.db.groups import ArtifactRow, GroupRepository, GroupRow, LinkRow


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
                "config": self.config,
                **self.metadata,
            },
            run_metadata={"dataset": dataset} if dataset else {},
        )


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
    ) -> int:
        """Create or reuse the group (type, name), link each input to it, and place it in a run (one transaction)."""
        with transaction(self.groups.engine) as conn:
            group_id = self.groups.ensure_group(group_type, name, metadata=metadata, conn=conn)
            parents = list(dict.fromkeys(i for i in inputs if i != group_id))  # distinct, in the given order
            self.groups.link_parents(parents, group_id, "depends_on", conn=conn)
            if run_id is not None:
                self.groups.link(run_id, group_id, "step", position=position, conn=conn)
        return group_id

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
        return group_id

    def record_materialization(self, materialization: Materialization) -> int:
        """Record one materialization of a pipeline asset in one call (`record` of its `step()`)."""
        return self.record(materialization.step())

    def inputs_of(self, group_id: int) -> list[GroupRow]:
        """The groups this one was made from (its `depends_on` parents)."""
        return self.groups.parent_groups(group_id, "depends_on")

    def input_names_of(self, group_ids: Sequence[int]) -> dict[int, set[str]]:
        """Group id -> the names of the groups it was made from, for many groups in one query."""
        return self.groups.parent_names(group_ids, "depends_on")

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
        with translate_db_errors("counting members"), self.engine.connect() as conn:
            members = conn.execute(text("SELECT count(*) FROM group_members WHERE group_id = :g"), {"g": group.id}).scalar_one()
        return Provenance(
            group=group,
            ancestors=self.walk(group.id, direction="up"),
            descendants=self.walk(group.id, direction="down"),
            steps=self.groups.get_run_step_sequence(group.id),
            runs=runs,
            member_count=int(members),
            artifacts=self.groups.artifacts(group_id=group.id),
        )

    def links_of(self, group_id: int) -> list[LinkRow]:
        return self.groups.parents(group_id) + self.groups.children(group_id)
