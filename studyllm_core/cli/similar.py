"""`studyllm similar`: the stored texts nearest to a text (embedded through the cache) or to a stored item."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from studyllm_core.cli.common import positive_float, positive_int
from studyllm_core.output import emit, records, table
from studyllm_core.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "similar",
        help="nearest stored texts by cosine distance (an index per model: HNSW, IVFFlat when big)",
        description="Find the stored texts nearest to TEXT, or to a stored item with --of. TEXT is embedded with "
        "the provider and model of the stored vectors (cached and recorded like every call); without --provider "
        "and --model the one stored model is used. The first search of a model builds its index.",
    )
    p.add_argument("text", nargs="?", metavar="TEXT", help="the text to search for")
    p.add_argument("--of", metavar="ITEM", help="instead of TEXT: an embedding id or request hash from the cache")
    p.add_argument("--provider", metavar="P", help="provider of the stored vectors (default: the only one)")
    p.add_argument("--model", metavar="M", help="model of the stored vectors (default: the only one)")
    p.add_argument("--dimensions", type=positive_int, metavar="N", help="the --dimensions the texts were embedded with")
    p.add_argument("--base-url", metavar="URL", help="server URL (Azure: the endpoint); overrides the environment")
    p.add_argument("--timeout", type=positive_float, metavar="S",
                   help="seconds a whole request may take (default: STUDYLLM_REQUEST_TIMEOUT or 60)")
    p.add_argument("--k", type=positive_int, default=10, metavar="N", help="how many neighbours (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=cmd_similar)


def cmd_similar(args: argparse.Namespace) -> int:
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.study.similarity import SimilarityService

    if (args.text is None) == (args.of is None):
        raise InputError("give either TEXT to search for or --of ITEM (an embedding id or request hash), not both")
    if args.text is not None and not args.text.strip():
        raise InputError("TEXT is empty; give the text to search for")
    service = SimilarityService(open_database(), notice=lambda msg: print(msg, file=sys.stderr))
    if args.of is not None:
        found = service.neighbours_of(args.of, k=args.k)
        query: dict[str, Any] = {"of": args.of}
    else:
        from studyllm_core.services.capture.embedding import EmbeddingService  # only to embed TEXT: --of skips it

        space = service.space_named(args.provider, args.model, args.dimensions, base_url=args.base_url)  # before any API call
        # The query is embedded by the server that made the stored vectors when the server is part of the space.
        embedder = EmbeddingService.from_name(
            space.provider,
            engine=service.engine,
            base_url=args.base_url or space.server or None,
            timeout=args.timeout,
            model=space.model,
            dimensions=args.dimensions,
        )
        found = service.search_text(args.text, embedder, k=args.k)
        query = {"text": args.text, "provider": space.provider, "model": space.model, "server": space.server or None,
                 "dimension": space.dimension}
    payload = {"query": query, "neighbours": records(found)}
    emit(payload, args.json, _human)
    return 0


def _human(p: dict[str, Any]) -> str:
    rows = [
        {"rank": i + 1, "distance": f"{r['distance']:.4f}", "embedding_id": r["embedding_id"],
         "text": r["text"] if len(r["text"]) <= 80 else r["text"][:77] + "..."}
        for i, r in enumerate(p["neighbours"])
    ]
    return table(rows, ["rank", "distance", "embedding_id", "text"])
