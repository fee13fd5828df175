"""The schedules: ``GET /v1/schedules`` and ``POST /v1/schedules/{name}/{action}`` (run,
pause, resume)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from jobd.service.api.shapes import as_json, error_response, items, job_json
from jobd.service.authz import VIEWER, Operator

if TYPE_CHECKING:
    from jobd.engine import Engine


def add_schedule_routes(app: FastAPI, engine: Engine) -> None:
    """``GET /v1/schedules``, ``POST /v1/schedules/{name}/{action}``."""

    @app.get("/v1/schedules", dependencies=[VIEWER])
    async def schedules() -> dict[str, Any]:
        return items(await engine.schedules_info())

    @app.post("/v1/schedules/{name}/{action}")
    async def schedule_control(
        name: Annotated[str, PathParam(max_length=200)],
        action: Annotated[str, PathParam(description="run, pause or resume")],
        caller: Operator,
    ) -> JSONResponse:
        """``run``: fire now (201 with the job); ``pause``/``resume``: stop and restart its
        firings, kept in the store (200 with the schedule)."""
        if action == "run":
            job = await engine.run_schedule(name, actor=caller.actor)
            return JSONResponse(
                job_json(job), status_code=201, headers={"location": f"/v1/jobs/{job.id}"}
            )
        if action in ("pause", "resume"):
            paused = action == "pause"
            info = await engine.pause_schedule(name, paused, actor=caller.actor)
            return JSONResponse(as_json(info))
        return error_response(
            404,
            "unknown-operation",
            f"unknown schedule action {action!r} (one of: run, pause, resume)",
            {"operation": action, "operations": ["run", "pause", "resume"]},
        )
