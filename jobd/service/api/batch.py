"""The batch routes (SPEC §6, §7): ``POST /v1/batch/jobs`` (up to :data:`MAX_BATCH` jobs,
stored all or none) and ``POST /v1/batch/{operation}`` on jobs by ids or by filter."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from jobd.core.errors import ValidationError
from jobd.core.states import PUBLIC_OPERATIONS
from jobd.service.api.bodies import BatchJobsBody, BatchOperationBody, job_filter
from jobd.service.api.limits import MAX_BATCH
from jobd.service.api.parse import body_schema
from jobd.service.api.shapes import answer_response, error_response, unknown_operation
from jobd.service.api.submit import submit_batch_body
from jobd.service.authz import Operator, operation_role, require

if TYPE_CHECKING:
    from jobd.engine import Engine


def add_batch_routes(app: FastAPI, engine: Engine) -> None:
    """``POST /v1/batch/jobs``, then ``POST /v1/batch/{operation}`` (matched in that order)."""

    @app.post(
        "/v1/batch/jobs",
        status_code=201,
        openapi_extra=body_schema(BatchJobsBody),
        responses={413: {"description": f"more than {MAX_BATCH} jobs, or a body over 16 MiB"}},
    )
    async def submit_batch(request: Request, caller: Operator) -> Response:
        """Submit up to 10,000 jobs: all validated and booked, then stored in one transaction;
        one refusal (its index in the message and ``details.index``) stores none. Usually
        answered by :class:`HotRoutes`, with the same function."""
        raw, ctype = await request.body(), request.headers.get("content-type")
        return answer_response(await submit_batch_body(engine, raw, ctype, caller.actor))

    @app.post("/v1/batch/{operation}", responses={413: {"description": "over 10,000 jobs"}})
    async def operate_batch(
        operation: str, body: BatchOperationBody, request: Request, caller: Operator
    ) -> JSONResponse:
        """One operation on many jobs: each is done or refused (naming its state and the
        operations allowed there); ``matched`` counts the jobs asked for or found."""
        if operation not in PUBLIC_OPERATIONS:
            return unknown_operation(operation)
        require(caller, operation_role(operation), f"{request.method} {request.url.path}")
        ids = await _batch_ids(engine, body)
        if isinstance(ids, JSONResponse):
            return ids
        outcome = await engine.operate_many(ids, operation, actor=caller.actor)
        answer: dict[str, Any] = {
            "operation": operation,
            "matched": len(ids),
            "done": outcome.done,
            "refused": [{"id": i, "error": exc.to_dict()} for i, exc in outcome.refused],
        }
        if operation == "resubmit":
            answer["created"] = outcome.created
        return JSONResponse(answer)


async def _batch_ids(engine: Engine, body: BatchOperationBody) -> list[int] | JSONResponse:
    """The ids a batch operation acts on (oldest first for a filter), or the refusal."""
    if (body.ids is None) == (body.filter is None):
        raise ValidationError("body: give either ids or filter", field="ids")
    if body.ids is not None:
        if len(body.ids) > MAX_BATCH:
            return _too_many(f"body.ids: {len(body.ids)} ids", len(body.ids))
        return body.ids
    assert body.filter is not None
    f = job_filter(**body.filter.model_dump(), where="filter.")
    if not f:
        raise ValidationError(
            "body.filter: give at least one filter (an empty one would select every job)",
            field="filter",
        )
    ids = await engine.store.match_ids(f, MAX_BATCH + 1)
    if len(ids) > MAX_BATCH:
        return _too_many(f"body.filter: more than {MAX_BATCH} jobs match", None)
    return ids


def _too_many(what: str, count: int | None) -> JSONResponse:
    return error_response(
        413,
        "too-large",
        f"{what}; at most {MAX_BATCH} per request (narrow the filter, or split the ids)",
        {"limit": MAX_BATCH, "count": count},
    )
