"""Test plugin offering an action whose run is a plain function, not async."""

from __future__ import annotations

import jobd


def run(ctx: jobd.ActionContext) -> None:
    return None


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [jobd.Action("sync-run", run)]
