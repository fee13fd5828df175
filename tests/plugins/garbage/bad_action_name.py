"""Test plugin offering an action whose name breaks the naming rule."""

from __future__ import annotations

import jobd


async def run(ctx: jobd.ActionContext) -> None:
    return None


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [jobd.Action("Bad Name", run)]
