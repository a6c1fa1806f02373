"""Run the `prepare_dataset` assets for one dataset in this process (used as a subprocess by tests).

python materialize_prepare.py DATASET SOURCE_PATH EMBED_BASE_URL
DAGSTER_HOME, STUDYLLM_DATABASE_URL, STUDYLLM_HOME and the provider key come from the environment.
"""

import sys

import dagster as dg

from studyllm_pipeline.definitions import SWEEP_ASSETS, build_resources
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import EmbedderResource


def main(dataset: str, source: str, base_url: str) -> int:
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(datasets.name, [dataset])
        resources = {
            **build_resources(),
            "embedder": EmbedderResource(
                provider="openai-compatible", model="stub-embedding", base_url=base_url, batch_size=64, concurrency=4
            ),
        }
        result = dg.materialize(
            SWEEP_ASSETS,
            selection=PREPARE,
            partition_key=dataset,
            instance=instance,
            resources=resources,
            run_config={"ops": {"dataset_snapshot": {"config": {"source_path": source}}}},
            raise_on_error=False,
        )
        print("success" if result.success else "failure", flush=True)
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
