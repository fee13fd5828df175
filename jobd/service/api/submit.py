"""The submissions: ``POST /v1/jobs`` and ``POST /v1/batch/jobs``, the functions both their
FastAPI routes and the hot path (:class:`HotRoutes`) answer with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from jobd.config.access import Role
from jobd.core.errors import JobdError
from jobd.service.api.bodies import BatchJobsBody, SubmitBody, spec_from
from jobd.service.api.handlers import http_error, jobd_error, validation_error
from jobd.service.api.limits import MAX_BATCH
from jobd.service.api.parse import load_json, parse_body, validate_body
from jobd.service.api.shapes import Answer, answer_response, error_body, job_json
from jobd.service.authz import caller_of, require

if TYPE_CHECKING:
    from starlette.responses import Response

    from jobd.core.models import JobSpec
    from jobd.engine import Engine


async def submit_one(engine: Engine, body: SubmitBody, actor: str) -> Answer:
    """``POST /v1/jobs``, for the FastAPI route and the hot path alike."""
    job = await engine.submit(spec_from(body), actor=actor)
    return 201, job_json(job), {"location": f"/v1/jobs/{job.id}"}


def specs_of(body: BatchJobsBody) -> list[JobSpec]:
    """A batch's specs, in order; a job that does not convert names its index."""
    specs = []
    for index, item in enumerate(body.jobs):
        try:
            specs.append(spec_from(item))
        except JobdError as exc:
            raise exc.in_batch(index) from None
    return specs


async def submit_batch_body(
    engine: Engine, raw: bytes, content_type: str | None, actor: str
) -> Answer:
    """``POST /v1/batch/jobs``: the size is checked before the jobs are validated."""
    data = load_json(raw, content_type)
    jobs = data.get("jobs") if isinstance(data, dict) else None
    if isinstance(jobs, list) and len(jobs) > MAX_BATCH:
        message = f"body.jobs: {len(jobs)} jobs in one batch; at most {MAX_BATCH}"
        return 413, error_body("too-large", message, {"limit": MAX_BATCH, "count": len(jobs)}), {}
    body = validate_body(data, BatchJobsBody)
    jobs_out = await engine.submit_many(specs_of(body), actor=actor)
    return 201, {"items": [job_json(job) for job in jobs_out]}, {}


#: The paths :class:`HotRoutes` answers (``POST``, without a query string).
HOT_PATHS = ("/v1/jobs", "/v1/batch/jobs")


def is_hot(scope: Scope) -> bool:
    """Whether :class:`HotRoutes` answers this request (else the framework does)."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and scope.get("path") in HOT_PATHS
        and not scope.get("query_string")
    )


class HotRoutes:
    """The submissions (``POST /v1/jobs``, ``POST /v1/batch/jobs``) without the framework's
    routing, dependency solving and response classes: the same models, the same functions
    (:func:`submit_one`, :func:`submit_batch_body`) and the same error handlers as their
    FastAPI routes, which stay declared for the OpenAPI document and serve what this path
    leaves to them (any query string: the unknown-parameter refusal). Runs inside the body
    limit, authentication and catch-all middlewares (the app's own instances of them, in
    front of the framework's stack: ``jobd.service.api.app.JobdAPI``); a check that a FastAPI
    route declares must be made here too."""

    def __init__(self, app: ASGIApp, engine: Engine, roles: dict[str, Role | None]) -> None:
        """``roles``: each route's declared role (:func:`jobd.service.authz.route_roles` of
        the app, filled once its routes are declared): the hot path checks the same one."""
        self.app = app
        self.engine = engine
        self.roles = roles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_hot(scope):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        request = Request(scope)
        try:
            response = await self._answer(request, path, receive)
        except JobdError as exc:
            response = await jobd_error(request, exc)
        except RequestValidationError as exc:
            response = await validation_error(request, exc)
        except StarletteHTTPException as exc:
            response = await http_error(request, exc)
        await response(scope, receive, send)

    async def _answer(self, request: Request, path: str, receive: Receive) -> Response:
        what = f"POST {path}"
        caller = caller_of(request)
        role = self.roles.get(what, Role.ADMIN)  # undeclared: admins only, as elsewhere
        if role is not None:
            require(caller, role, what)
        raw = await _whole_body(receive)
        ctype = request.headers.get("content-type")
        if path == "/v1/jobs":
            body = parse_body(raw, ctype, SubmitBody)
            answer = await submit_one(self.engine, body, caller.actor)
        else:
            answer = await submit_batch_body(self.engine, raw, ctype, caller.actor)
        return answer_response(answer)


async def _whole_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
