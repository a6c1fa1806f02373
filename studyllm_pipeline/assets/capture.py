"""raw_calls and embedding_cache: studyllm's own Postgres tables as external assets.

Dagster does not materialize them (every provider call is written as it happens, by whichever step
makes it); they are in the asset graph so its lineage is whole: the steps that call providers lead
to raw_calls, the analytics read it, and the embedding steps lead to the cache.
"""

import dagster as dg

CAPTURE_GROUP = "capture"

raw_calls = dg.AssetSpec(
    "raw_calls",
    group_name=CAPTURE_GROUP,
    deps=["prompt_run", "embeddings", "cluster_summaries"],
    kinds={"postgres"},
    description="Every provider attempt (success or failure): provider, model, request, response or error, latency, "
                "tokens. Append-only (a trigger refuses UPDATE and DELETE); written by each step that calls a provider.",
)

embedding_cache = dg.AssetSpec(
    "embedding_cache",
    group_name=CAPTURE_GROUP,
    deps=["embeddings", "clusters"],
    kinds={"postgres"},
    description="Table embedding_vectors: one pgvector row per (provider, model, dimensions, text) hash, so no text "
                "is embedded (or paid for) twice; filled by the embeddings step and by the sweep's summary embeddings.",
)

CAPTURE_ASSETS = [raw_calls, embedding_cache]
