"""Embedding throughput: `studyllm embed` vs a bare client loop and vs the seed's one-text-per-request.

Both `studyllm embed` and its peer (a bare AsyncOpenAI loop, _bare_embed_loop.py) run as their
own processes and are timed from start to exit, so both pay interpreter start and imports.

Run: python benchmarks/bench_embed.py [--texts 20000] [--big 100000] [--sequential 300]
All against one loopback OpenAI-compatible server (separate process, 50 ms per request) and one
fresh embedded database, from one run. Printed: texts/s of each, the ratios the issue sets goals
for, the cached re-run time as a fraction of the first, and peak RSS of `studyllm embed` on
--big texts. The sequential baseline runs on --sequential texts (20,000 would take 17 minutes);
its rate is per text either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _db import scratch_database
from _measure import STUDYLLM
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.testing import stub_server_process

BATCH, CONCURRENCY, LATENCY, DIM = 256, 8, 0.05, 64
PAIRS = 3  # in-process first/cached pairs; the median is reported


def write_texts(path: Path, n: int, tag: str) -> list[str]:
    texts = [f"{tag} text {i}: the quick brown fox jumps over the lazy dog {i * 7919 % 10007}" for i in range(n)]
    path.write_text("\n".join(texts) + "\n")
    return texts


def run_cli_rss(path: Path, env: dict[str, str]) -> tuple[float, dict, int]:
    """Like run_cli, but waits with wait4 to read the child's own peak RSS."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", "bench-embed",
         "--batch-size", str(BATCH), "--concurrency", str(CONCURRENCY), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"studyllm embed failed: {err}")
    return seconds, json.loads(out), usage.ru_maxrss


def bare_loop(base_url: str, path: Path) -> float:
    """Wall seconds of the peer process (_bare_embed_loop.py), start to exit like the CLI."""
    script = Path(__file__).with_name("_bare_embed_loop.py")
    start = time.perf_counter()
    subprocess.run([sys.executable, str(script), base_url, str(path), str(BATCH), str(CONCURRENCY)], check=True)
    return time.perf_counter() - start


async def sequential(base_url: str, texts: list[str]) -> float:
    """The seed's way: one text per request, one request at a time."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    start = time.perf_counter()
    for text in texts:
        await client.embeddings.create(model="bench-embed", input=[text])
    seconds = time.perf_counter() - start
    await client.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=20_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--sequential", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sl-bench-embed-", ignore_cleanup_errors=True) as tmp, \
            scratch_database() as (engine, url), \
            stub_server_process("--latency", str(LATENCY), "--dim", str(DIM)) as (base, admin):
        work = Path(tmp)  # the texts and the CLI's home: removed with the run
        env = {**os.environ, "STUDYLLM_DATABASE_URL": url, "OPENAI_COMPATIBLE_BASE_URL": base, "STUDYLLM_HOME": str(work)}
        main_file = work / "main.txt"
        texts = write_texts(main_file, args.texts, "main")

        cli_s, first, _ = run_cli_rss(main_file, env)
        assert first["embedded"] == args.texts, first
        cached_s, second, _ = run_cli_rss(main_file, env)
        assert second["api_requests"] == 0, second

        bare_file = work / "bare.txt"
        write_texts(bare_file, args.texts, "bare")
        bare_s = bare_loop(base, bare_file)
        seq_texts = [t.replace("main", "seq") for t in texts[: args.sequential]]
        seq_s = asyncio.run(sequential(base, seq_texts))

        # The same two runs in-process (no interpreter start or imports), for the cached fraction:
        # PAIRS pairs on fresh texts each, the median pair reported (this machine is shared and noisy).
        service = EmbeddingService.from_name(
            "openai-compatible", engine=engine, base_url=base, model="bench-embed", batch_size=BATCH, concurrency=CONCURRENCY,
        )
        pairs = []
        for p in range(PAIRS):
            fresh = [t.replace("main", f"inproc{p}") for t in texts]
            start = time.perf_counter()
            service.embed(fresh)
            first_s = time.perf_counter() - start
            start = time.perf_counter()
            assert service.embed(fresh).api_requests == 0
            pairs.append((time.perf_counter() - start, first_s))
        inproc_cached_s, inproc_first_s = sorted(pairs, key=lambda pair: pair[0] / pair[1])[PAIRS // 2]

        big_file = work / "big.txt"
        write_texts(big_file, args.big, "big")
        big_s, big, big_rss_kib = run_cli_rss(big_file, env)
        assert big["embedded"] == args.big, big
        duplicates = admin.stats(include_texts=False)["embedding_texts_max_ok_per_text"]

    rate = lambda n, s: n / s  # noqa: E731
    cli_rate, bare_rate, seq_rate = rate(args.texts, cli_s), rate(args.texts, bare_s), rate(args.sequential, seq_s)
    print(f"loopback server: {LATENCY * 1000:.0f} ms per request, {DIM}-dim vectors; batch {BATCH}, concurrency {CONCURRENCY}")
    print(f"{'run':<46}{'texts':>9}{'seconds':>9}{'texts/s':>10}")
    print(f"{'studyllm embed (CLI, cache + database)':<46}{args.texts:>9}{cli_s:>9.2f}{cli_rate:>10,.0f}")
    print(f"{'bare AsyncOpenAI loop process (no database)':<46}{args.texts:>9}{bare_s:>9.2f}{bare_rate:>10,.0f}")
    print(f"{'one text per request, sequential (seed)':<46}{args.sequential:>9}{seq_s:>9.2f}{seq_rate:>10,.0f}")
    print(f"{'studyllm embed, cached re-run':<46}{args.texts:>9}{cached_s:>9.2f}{rate(args.texts, cached_s):>10,.0f}")
    print(f"{'EmbeddingService in-process, first run *':<46}{args.texts:>9}{inproc_first_s:>9.2f}{rate(args.texts, inproc_first_s):>10,.0f}")
    print(f"{'EmbeddingService in-process, cached re-run *':<46}{args.texts:>9}{inproc_cached_s:>9.2f}{rate(args.texts, inproc_cached_s):>10,.0f}")
    print(f"{'studyllm embed, fresh texts (peak RSS run)':<46}{args.big:>9}{big_s:>9.2f}{rate(args.big, big_s):>10,.0f}")
    print(f"* the median of {PAIRS} first/cached pairs on fresh texts (by their ratio)")
    print(f"vs bare loop:        {cli_rate / bare_rate:.2f}x  (goal >= 0.7x)")
    print(f"vs sequential:       {cli_rate / seq_rate:.1f}x  (goal >= 20x)")
    print(f"cached / first run:  {cached_s / cli_s:.3f} CLI (process start included), "
          f"{inproc_cached_s / inproc_first_s:.3f} in-process   (goal <= 0.1)")
    print(f"peak RSS, {args.big:,} texts: {big_rss_kib / 1024:.0f} MiB  (goal <= 1024 MiB)")
    print(f"most successful sends of one text: {duplicates}  (1 = nothing embedded twice)")


if __name__ == "__main__":
    main()
