"""The peer of `studyllm embed` in bench_embed.py: the same batches and concurrency straight through
the OpenAI SDK, with no cache, no database and no retries. Run as its own process, like the CLI.

python _bare_embed_loop.py BASE_URL TEXTS_FILE BATCH CONCURRENCY
"""

import asyncio
import sys

from openai import AsyncOpenAI


async def main(base_url: str, path: str, batch: int, concurrency: int) -> None:
    texts = open(path, encoding="utf-8").read().splitlines()
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(chunk: list[str]) -> None:
        async with sem:
            await client.embeddings.create(model="bench-embed", input=chunk)

    await asyncio.gather(*(one(texts[i : i + batch]) for i in range(0, len(texts), batch)))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
