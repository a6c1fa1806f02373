"""Bulk capture speed: RawCallRepository.insert_many (COPY) vs row-by-row ORM inserts.

Run: python benchmarks/bench_capture.py [--rows 100000] [--orm-rows 5000]
Prints rows/s of each and the ratio, from one run on one fresh embedded database. The row-by-row
figure is measured on --orm-rows rows (one INSERT and commit per row, as the seed's repository
did) because 100,000 of them take minutes; rows/s is per row either way.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy.orm import Session

from _db import scratch_database
from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.models import RawCall


def make_calls(n: int) -> list[NewCall]:
    return [
        NewCall(
            provider="openai",
            model="gpt-4o-mini",
            modality="chat",
            status="success" if i % 10 else "failed",
            request_json={"prompt": f"Summarise item {i} in one line.", "messages": [{"role": "user", "content": f"item {i}"}], "temperature": 0.2},
            response_json={"text": f"A one-line summary of item {i}."} if i % 10 else None,
            error_json=None if i % 10 else {"type": "rate_limit", "message": "429", "retry_after": 1.0},
            latency_ms=100.0 + i % 50,
            tokens_json={"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21},
            metadata_json={"attempt": 1, "request_hash": f"{i:064x}"},
            request_hash=f"{i:064x}",
        )
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--orm-rows", type=int, default=5_000)
    args = parser.parse_args()

    with scratch_database() as (engine, _):
        calls = make_calls(args.rows)
        repo = RawCallRepository(engine)
        start = time.perf_counter()
        ids = repo.insert_many(calls)
        bulk_s = time.perf_counter() - start
        assert len(ids) == args.rows and repo.count() == args.rows

        orm_calls = make_calls(args.orm_rows)
        start = time.perf_counter()
        with Session(engine) as session:
            for c in orm_calls:
                session.add(RawCall(
                    provider=c.provider, model=c.model, modality=c.modality, status=c.status,
                    request_json=c.request_json, response_json=c.response_json, error_json=c.error_json,
                    latency_ms=c.latency_ms, tokens_json=c.tokens_json, metadata_json=c.metadata_json,
                    request_hash=c.request_hash,
                ))
                session.commit()
        orm_s = time.perf_counter() - start

    bulk_rate, orm_rate = args.rows / bulk_s, args.orm_rows / orm_s
    print(f"{'method':<34}{'rows':>10}{'seconds':>10}{'rows/s':>12}")
    print(f"{'insert_many (COPY, 10k chunks)':<34}{args.rows:>10}{bulk_s:>10.2f}{bulk_rate:>12,.0f}")
    print(f"{'row-by-row ORM (commit per row)':<34}{args.orm_rows:>10}{orm_s:>10.2f}{orm_rate:>12,.0f}")
    print(f"ratio bulk/row-by-row: {bulk_rate / orm_rate:.1f}x  (goal >= 10x; bulk goal >= 20,000 rows/s)")


if __name__ == "__main__":
    main()
