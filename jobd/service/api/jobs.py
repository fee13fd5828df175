"""The job routes (SPEC §7): submit, list with filters, show, edit, delete, the
operations, and a job's log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from jobd.core.states import PUBLIC_OPERATIONS
from jobd.service.api.bodies import EditBody, SubmitBody, changes_from, job_filter
from jobd.service.api.limits import MAX_ID, JobId
from jobd.service.api.shapes import answer_response, items, job_json, unknown_operation
from jobd.service.api.submit import submit_one
from jobd.service.authz import VIEWER, Admin, Operator, operation_role, require

if TYPE_CHECKING:
    from jobd.engine import Engine


def add_job_routes(app: FastAPI, engine: Engine) -> None:
    """The routes under ``/v1/jobs``, in the order the OpenAPI document lists them."""
    _jobs(app, engine)
    _one_job(app, engine)


def _jobs(app: FastAPI, engine: Engine) -> None:
    @app.post("/v1/jobs", status_code=201)
    async def submit_job(body: SubmitBody, caller: Operator) -> Response:
        """Usually answered by :class:`HotRoutes`, with the same function."""
        return answer_response(await submit_one(engine, body, caller.actor))

    @app.get("/v1/jobs", dependencies=[VIEWER], response_model=dict[str, Any])
    async def list_jobs(
        state: Annotated[list[str] | None, Query(description="repeatable or a,b")] = None,
        workflow: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        asset: Annotated[str | None, Query(min_length=1, max_length=1000)] = None,
        resource: Annotated[
            str | None, Query(min_length=1, max_length=1000, description="or pool")
        ] = None,
        since: Annotated[
            str | None, Query(max_length=100, description="start_at, else created_at, >=")
        ] = None,
        until: Annotated[
            str | None, Query(max_length=100, description="start_at, else created_at, <=")
        ] = None,
        search: Annotated[
            str | None, Query(min_length=1, max_length=200, description="in the name")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> Response:
        """Newest first; every filter given must hold."""
        f = job_filter(state, workflow, asset, resource, since, until, search)
        jobs, next_cursor = await engine.list_jobs(f, limit, cursor)
        rows = [job_json(job, detail=False) for job in jobs]
        return answer_response((200, {"items": rows, "next_cursor": next_cursor}, {}))


def _one_job(app: FastAPI, engine: Engine) -> None:
    # The reads answer with orjson, as the submissions do (``response_model``: the same
    # document; FastAPI's validation and encoding of the answer were most of their CPU).
    @app.get("/v1/jobs/{job_id}", dependencies=[VIEWER], response_model=dict[str, Any])
    async def get_job(job_id: JobId) -> Response:
        return answer_response((200, job_json(await engine.get_job(job_id)), {}))

    @app.patch("/v1/jobs/{job_id}")
    async def edit_job(job_id: JobId, body: EditBody, caller: Operator) -> dict[str, Any]:
        job = await engine.edit(job_id, changes_from(body), actor=caller.actor)
        return job_json(job)

    @app.delete("/v1/jobs/{job_id}", status_code=204)
    async def delete_job(job_id: JobId, caller: Admin) -> Response:
        await engine.operate(job_id, "delete", actor=caller.actor)
        return Response(status_code=204)

    @app.post(
        "/v1/jobs/{job_id}/{operation}",
        responses={
            200: {"description": "the job as the operation left it"},
            201: {"description": "resubmit: the new job"},
            204: {"description": "delete: done, nothing to show"},
        },
    )
    async def operate(
        job_id: JobId, operation: str, request: Request, caller: Operator
    ) -> Response:
        if operation not in PUBLIC_OPERATIONS:
            return unknown_operation(operation)
        require(caller, operation_role(operation), f"{request.method} {request.url.path}")
        job = await engine.operate(job_id, operation, actor=caller.actor)
        if job is None:
            return Response(status_code=204)
        status = 201 if operation == "resubmit" else 200
        return JSONResponse(job_json(job), status_code=status)

    @app.get("/v1/jobs/{job_id}/log", dependencies=[VIEWER])
    async def job_log(
        job_id: JobId,
        after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    ) -> dict[str, Any]:
        lines = await engine.job_log(job_id, after, limit)
        more = lines[-1].get("seq") if len(lines) >= limit else None
        return items(lines, more)
