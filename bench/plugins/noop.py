"""A no-op action for benchmarks: the cost measured is jobd's own."""

from __future__ import annotations

from typing import Any

import jobd


async def noop(ctx: jobd.ActionContext, **params: Any) -> None:
    return None


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action("noop", noop, "does nothing (benchmarks)"),
        jobd.Action("hold", hold, "waits for a file (benchmarks)"),
        jobd.Action("pause", pause, "sleeps ``seconds`` (benchmarks: a step of known length)"),
    ]


async def hold(ctx: jobd.ActionContext, path: str = "", **params: Any) -> None:
    """Hold a worker until ``path`` exists (the batch-cancel benchmark's queue filler)."""
    import anyio

    while not await anyio.Path(path).exists():  # noqa: ASYNC110 (a file from outside)
        await anyio.sleep(0.01)


async def pause(ctx: jobd.ActionContext, seconds: float = 0.05, **params: Any) -> None:
    """A step that takes ``seconds``: the work is the wait (the 50 ms benchmarks)."""
    import anyio

    await anyio.sleep(float(seconds))
