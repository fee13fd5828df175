"""Shipped plugin: the ``sleep`` action waits ``seconds`` and reports its progress.

Params: ``seconds`` (a number, or a numeric string: templated params arrive
as strings). No outputs. Useful for demos, tests and holding a lock.

It sleeps with ``anyio`` (never ``time.sleep``, which would freeze the whole
daemon), so a step timeout or a cancel ends it at once.
"""

from __future__ import annotations

import math
from typing import Any

import anyio

import jobd

# Progress is written to the database: at most this many updates per sleep.
MAX_UPDATES = 10


def _seconds(seconds: Any) -> float:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise jobd.ActionError(f"sleep: 'seconds' must be a number, not {seconds!r}") from None
    if not math.isfinite(value) or value < 0:
        raise jobd.ActionError(f"sleep: 'seconds' must be a finite number >= 0, not {seconds!r}")
    return value


async def run(ctx: jobd.ActionContext, seconds: Any = None) -> None:
    """Sleep ``seconds``, reporting progress about once a second (at most 10 times)."""
    total = _seconds(seconds)
    if total == 0:
        return
    updates = min(MAX_UPDATES, math.ceil(total))
    start = anyio.current_time()
    for done in range(1, updates + 1):
        # Sleeping until a fixed point, not for a slice, keeps the total exact.
        await anyio.sleep_until(start + total * done / updates)
        await ctx.progress(100 * done / updates, f"slept {total * done / updates:g} of {total:g} s")


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action(
            "sleep",
            run,
            "Wait a number of seconds, reporting progress",
            params=(jobd.Param("seconds", "number", required=True, description="how long, >= 0"),),
        )
    ]
