"""What waits: ``GET /v1/queue`` (the run queue) and ``GET /v1/locks`` (each asset's
holders and FIFO queue)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from jobd.service.api.shapes import as_json, items
from jobd.service.authz import VIEWER

if TYPE_CHECKING:
    from jobd.engine import Engine


def add_queue_routes(app: FastAPI, engine: Engine) -> None:
    """``GET /v1/queue``, ``GET /v1/locks``."""

    @app.get("/v1/queue", dependencies=[VIEWER])
    async def queue() -> dict[str, Any]:
        return as_json(engine.queue_info())

    @app.get("/v1/locks", dependencies=[VIEWER])
    async def locks() -> dict[str, Any]:
        return items(await engine.locks_info())
