"""What the pipeline's embeddings cost as an artifact: write, read and check of an N x 384 float32 array.

Run: python benchmarks/bench_artifacts.py [--rows 1000000] [--repeats 3]

Each with its peer from the same run, medians of --repeats:
- write: `ArtifactService.write` (NPY streamed from the array's memory, sha256 on a helper thread while the next
  16 MiB slice is written, fsync, rename, one `call_artifacts` row) vs `np.save` to a file, fsync, then
  `hashlib.sha256` of the array's bytes: the same work done one after the other;
- read: `ArtifactService.read` (verified against its record while read into place) vs `np.load` then sha256;
- check: `quality.embeddings_verdict` (finite and non-zero rows, in 4 MiB blocks) vs `np.isfinite(x).all(axis=1)`
  over the whole array (one check of the two, and a full boolean copy).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _db import scratch_database


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from studyllm_core.quality import embeddings_verdict
    from studyllm_core.services.artifacts import ArtifactService

    vectors = np.random.default_rng(0).standard_normal((args.rows, 384), dtype=np.float32)
    with scratch_database() as (engine, _url), tempfile.TemporaryDirectory(prefix="sl-bench-artifacts-") as tmp:
        service = ArtifactService(engine, Path(tmp))
        path = service.path_for("embeddings", suffix=".npy")
        peer_path = Path(tmp) / "peer.npy"

        def peer_write() -> None:
            with peer_path.open("wb") as handle:
                np.save(handle, vectors, allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            hashlib.sha256(memoryview(vectors).cast("B")).hexdigest()

        def peer_read() -> None:
            np.load(peer_path)
            hashlib.sha256(peer_path.read_bytes()).hexdigest()

        rows = [
            ("write", median_seconds(lambda: service.write(vectors, path, group_id=None), args.repeats),
             median_seconds(peer_write, args.repeats), "np.save + fsync, then sha256"),
            ("read", median_seconds(lambda: service.read(path), args.repeats),
             median_seconds(peer_read, args.repeats), "np.load, then sha256"),
            ("check", median_seconds(lambda: embeddings_verdict(vectors, rows=args.rows), args.repeats),
             median_seconds(lambda: np.isfinite(vectors).all(axis=1), args.repeats), "np.isfinite(x).all(axis=1)"),
        ]
    print(f"{args.rows:,} x 384 float32 ({vectors.nbytes / 2**30:.2f} GiB), median of {args.repeats}")
    for name, ours, peer, what in rows:
        print(f"  {name:<6} {ours:6.2f} s   peer {peer:6.2f} s ({what})   {ours / peer:.2f}x")


if __name__ == "__main__":
    main()
