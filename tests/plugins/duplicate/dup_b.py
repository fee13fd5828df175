"""Test plugin offering ``echo``, like its sibling: together they are a config error."""

from __future__ import annotations

import jobd


async def echo(ctx: jobd.ActionContext, **params: object) -> dict:
    return dict(params)


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [jobd.Action("echo", echo)]
