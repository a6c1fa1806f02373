"""Running asyncio tasks together: all finish, or the first failure cancels the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence


async def gather_or_cancel(tasks: Sequence[asyncio.Task]) -> None:
    """Wait for every task; if one fails (or we are cancelled), cancel the others, wait for them, re-raise."""
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
