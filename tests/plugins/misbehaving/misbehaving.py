"""Test plugin that loads fine but whose actions misbehave when they run.

- ``non-dict``: returns 42 instead of a dict or None;
- ``raises``: raises RuntimeError;
- ``hangs``: awaits forever (cancellable: a step timeout ends it);
- ``blocks``: blocks its thread in ``time.sleep`` (only a worker process kill ends it).
  With ``report_to`` (a Unix socket path) it first sends its pid there.
"""

from __future__ import annotations

import os
import socket
import time

import anyio

import jobd


async def non_dict(ctx: jobd.ActionContext) -> object:
    return 42


async def raises(ctx: jobd.ActionContext, message: str = "action is broken") -> None:
    ctx.log.warning("about to raise")
    raise RuntimeError(message)


async def hangs(ctx: jobd.ActionContext) -> None:
    await anyio.sleep(10**6)


async def blocks(ctx: jobd.ActionContext, report_to: str | None = None) -> None:
    if report_to:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(report_to)
            sock.sendall(f"{os.getpid()}\n".encode())
    time.sleep(1000)  # deliberately blocking the thread: what isolation is for


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action("non-dict", non_dict),
        jobd.Action("raises", raises),
        jobd.Action("hangs", hangs),
        jobd.Action("blocks", blocks),
    ]
