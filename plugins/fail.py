"""Shipped plugin: the ``fail`` action always fails, with ``message``. For tests and demos.

Raising :class:`jobd.ActionError` is how any action fails its attempt with a
clean one-line message (any other exception fails it too, with its type).
"""

from __future__ import annotations

from typing import Any

import jobd


async def run(ctx: jobd.ActionContext, message: Any = "failed on purpose") -> None:
    """Raise ActionError(message); the step is retried as configured, then fails."""
    raise jobd.ActionError(str(message))


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action(
            "fail",
            run,
            "Always fail with the given message (tests, demos)",
            params=(jobd.Param("message", "string", description="the attempt's error"),),
        )
    ]
