"""Partitions: one per dataset (dynamic: added by the sensor, the demo, `studyllm backfill` or by
hand). The K range of a sweep is its run config, not a partition axis, so a dataset whose sweep
ran looks done in the catalog whatever range it covered (see docs/user-guide.md)."""

import dagster as dg

datasets = dg.DynamicPartitionsDefinition(name="datasets")
