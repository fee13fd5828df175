"""A no-op action for benchmarks: the cost measured is jobd's own."""

from __future__ import annotations

from typing import Any

import jobd


async def noop(ctx: jobd.ActionContext, **params: Any) -> None:
    return None


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [jobd.Action("noop", noop, "does nothing (benchmarks)")]
