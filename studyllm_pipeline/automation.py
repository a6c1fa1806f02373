"""When a dataset's report (and its comparison) follow new results on their own.

Dagster's tick-based `any_deps_updated().since_last_handled()` loses an update when the report is materialized and a
dependency is updated between the same two ticks (the report's own materialization resets the condition in that
tick even when the dependency came after it). `DepsNewerThanSelf` reads the order from the event log instead: a
partition is due while one of its dependencies has a materialization stored after its own latest one.
"""

import dagster as dg


class DepsNewerThanSelf(dg.AutomationCondition):
    """True for a partition whose dependencies hold a materialization newer (by event-log storage id) than its own
    latest materialization, or any at all when it has none: a state, so no update is lost between two ticks."""

    @property
    def description(self) -> str:
        return "a dependency was materialized after this partition's latest materialization"

    @property
    def name(self) -> str:
        return "deps_newer_than_self"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        instance = context.asset_graph_view.instance
        parents = sorted(context.asset_graph.get(context.key).parent_keys)
        due = set()
        for partition in sorted(context.candidate_subset.expensively_compute_partition_keys()):
            own = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=context.key, asset_partitions=[partition]), limit=1).records
            after = own[0].storage_id if own else None
            one = context.candidate_subset.compute_intersection_with_partition_keys({partition})
            for parent in parents:
                keys = sorted(one.compute_parent_subset(parent).expensively_compute_partition_keys())
                if keys and instance.fetch_materializations(
                        dg.AssetRecordsFilter(asset_key=parent, asset_partitions=keys, after_storage_id=after),
                        limit=1).records:
                    due.add(partition)
                    break
        return dg.AutomationResult(context, true_subset=context.candidate_subset.compute_intersection_with_partition_keys(due))


# Reading stored results costs nothing, so the report follows new K results on its own (also after a sweep run that
# failed or was cancelled part-way: its done K are stored, the others named), and the comparison follows the report.
# Due while a dependency is newer than the latest materialization (a report that failed waits for the next new
# result instead of being asked again every tick), and never while a dependency or the target itself is running.
FOLLOW_NEW_RESULTS = (
    ((DepsNewerThanSelf() & ~dg.AutomationCondition.execution_failed())
     | dg.AutomationCondition.any_deps_updated().since_last_handled())
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("newer inputs")
