"""The daemon itself: ``GET /v1/plugins``, ``GET /v1/nodes``, ``GET /v1/health``,
``GET /openapi.json``, ``POST /v1/reload`` and ``GET /metrics``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse

from jobd.core.timefmt import format_time
from jobd.service.api.shapes import as_json, error_response, items
from jobd.service.authz import ADMIN, VIEWER, Anyone

if TYPE_CHECKING:
    from jobd.engine import Engine
    from jobd.service.metrics import Metrics

#: ``{"warnings": [...], "plugins": [...]}``: see :meth:`jobd.service.daemon.Daemon.reload`.
ReloadFunc = Callable[[], Awaitable[Mapping[str, list[str]]]]


def add_plugin_routes(app: FastAPI, engine: Engine) -> None:
    """``GET /v1/plugins``, ``GET /v1/nodes``."""

    @app.get("/v1/plugins", dependencies=[VIEWER])
    async def plugins() -> dict[str, Any]:
        return as_json(engine.plugins_info())

    @app.get("/v1/nodes", dependencies=[VIEWER])
    async def nodes() -> dict[str, Any]:
        """The cluster's nodes (SPEC §10); a daemon on SQLite shows itself alone."""
        return items(await engine.nodes_info())


def add_health_routes(app: FastAPI, *, version: str, started_at: float) -> None:
    """``GET /v1/health`` (anyone, also over TCP without a token), ``GET /openapi.json``."""

    @app.get("/v1/health")
    async def health(caller: Anyone) -> dict[str, Any]:
        return {
            "status": "ok",
            "version": version,
            "started_at": format_time(started_at),
            "uptime": round(max(0.0, time.time() - started_at), 3),
            "caller": caller.to_dict(),
        }

    @app.get("/openapi.json", include_in_schema=False, dependencies=[VIEWER])
    async def openapi() -> dict[str, Any]:
        return app.openapi()


def add_admin_routes(app: FastAPI, *, reload: ReloadFunc | None, metrics: Metrics) -> None:
    """``POST /v1/reload`` (409 when this app cannot reload), ``GET /metrics``."""

    @app.post("/v1/reload", dependencies=[ADMIN])
    async def reload_config() -> Response:
        if reload is None:
            return error_response(
                409, "reload-unavailable", "this API instance cannot reload the config"
            )
        answer = await reload()
        return JSONResponse(
            {
                "reloaded": True,
                "warnings": list(answer.get("warnings", ())),
                "plugins": list(answer.get("plugins", ())),
            }
        )

    @app.get("/metrics", dependencies=[VIEWER])
    async def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)
