"""The HTTP API (SPEC §7): FastAPI on the engine.

:func:`create_app` builds one ASGI app around an :class:`~jobd.engine.Engine`.
The daemon builds one for the Unix socket (the kernel says who the caller is)
and one for the optional TCP listener (bearer tokens say), sharing one
:class:`~jobd.config.access.Access` policy (SPEC §11).

Contracts every route keeps:

* Errors are always ``{"error": {"code", "message", "details"}}``. Bad input
  is a 4xx that names the field; a 5xx is a bug and is logged with its
  traceback.
* Times go out as ISO 8601 UTC (``+00:00``) and come in as ISO 8601 with a
  zone; a time without a zone is refused (:mod:`jobd.core.timefmt`).
* Every route declares the role it needs, once, in its signature (``caller:
  Operator``): see :mod:`jobd.service.authz`; an app with a route that declares none
  is refused at build time. The caller's ``actor`` goes into every history row.
* Request bodies are capped at :data:`MAX_BODY` bytes before anything parses
  them, and unknown body fields are refused rather than ignored, so a typo
  like ``"priorty"`` cannot silently submit a job at priority 0.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import anyio
import structlog
from anyio import CancelScope
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobd.config.access import Access, Role, Token
from jobd.core.errors import JobdError, ValidationError
from jobd.core.models import PRIORITY_MAX, PRIORITY_MIN, SPEC_FIELDS, Job, JobSpec
from jobd.core.states import PUBLIC_OPERATIONS, JobState
from jobd.core.timefmt import format_time, parse_time
from jobd.service.authz import (
    ADMIN,
    PUBLIC_PATHS,
    VIEWER,
    AccessMiddleware,
    Admin,
    Anyone,
    Operator,
    caller_of,
    check_routes,
    operation_role,
    require,
    route_roles,
    undeclared_needs_admin,
)
from jobd.service.metrics import Metrics
from jobd.service.web import add_page_routes, is_public_path
from jobd.store import JobFilter

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from jobd.core.events import JobEvent
    from jobd.engine import Engine

log = structlog.get_logger("jobd.api")

#: Largest request body accepted (413 above it).
MAX_BODY = 1024 * 1024
#: Most jobs or ids in one batch request (413 above it).
MAX_BATCH = 10_000
#: Largest body of ``POST /v1/batch/jobs``: 10,000 jobs of about 1.6 KB each.
MAX_BATCH_BODY = 16 * 1024 * 1024
#: Bodies allowed above :data:`MAX_BODY`, by path.
BODY_LIMITS = {"/v1/batch/jobs": MAX_BATCH_BODY}
#: Seconds between SSE keep-alive comments on a quiet stream.
SSE_KEEPALIVE = 15.0
#: Largest id SQLite can hold; bigger path/query ids are bad input, not a database overflow.
MAX_ID = 2**63 - 1

#: ``{"warnings": [...], "plugins": [...]}``: see :meth:`jobd.service.daemon.Daemon.reload`.
ReloadFunc = Callable[[], Awaitable[Mapping[str, list[str]]]]
JobId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

# --------------------------------------------------------------------------- bodies

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Key = Annotated[str, Field(min_length=1, max_length=1000)]
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
_Time = Annotated[str, Field(min_length=1, max_length=100)]


class _Body(BaseModel):
    """Shared rules: unknown fields refused, no type coercion ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("params", check_fields=False)
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = _unstorable(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class SubmitBody(_Body):
    """``POST /v1/jobs``: a new job. Only ``workflow`` is required."""

    workflow: _Name
    name: _Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    assets: list[_Key] = Field(default_factory=list)
    shared_assets: list[_Key] = Field(default_factory=list)
    resources: list[_Key] = Field(default_factory=list)
    pools: list[_Key] = Field(default_factory=list)
    start_at: _Time | None = None
    end_at: _Time | None = None
    preroll: _Seconds = 0.0
    postroll: _Seconds = 0.0
    priority: _Priority = 0
    timeout: _Seconds | None = None
    lock_timeout: _Seconds | None = None
    state: Literal["draft", "tentative", "confirmed"] = "confirmed"


class EditBody(_Body):
    """``PATCH /v1/jobs/{id}``: only the fields sent change; ``null`` clears a nullable one."""

    name: _Name | None = None
    params: dict[str, Any] | None = None
    assets: list[_Key] | None = None
    shared_assets: list[_Key] | None = None
    resources: list[_Key] | None = None
    pools: list[_Key] | None = None
    start_at: _Time | None = None
    end_at: _Time | None = None
    preroll: _Seconds | None = None
    postroll: _Seconds | None = None
    priority: _Priority | None = None
    timeout: _Seconds | None = None
    lock_timeout: _Seconds | None = None


class BatchJobsBody(_Body):
    """``POST /v1/batch/jobs``: up to :data:`MAX_BATCH` submit bodies, stored all or none."""

    jobs: list[SubmitBody]


_Search = Annotated[str, Field(min_length=1, max_length=200)]


class FilterBody(_Body):
    """The list filters of ``GET /v1/jobs`` as an object (``POST /v1/batch/{operation}``)."""

    state: list[str] | None = None
    workflow: _Name | None = None
    asset: _Key | None = None
    resource: _Key | None = None
    since: _Time | None = None
    until: _Time | None = None
    search: _Search | None = None


class BatchOperationBody(_Body):
    """``POST /v1/batch/{operation}``: the jobs by ``ids`` (up to 10,000) or by ``filter``."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = None
    filter: FilterBody | None = None


#: The bodies' fields by kind, from the one definition of the JobSpec's (``SubmitBody``
#: has every spec field but ``schedule``, ``EditBody`` the editable ones, as
#: tests/test_spec_fields.py checks). PATCH fields that may be
#: set to null are those whose JobSpec default is None.
_NULLABLE = SPEC_FIELDS.nullable & SPEC_FIELDS.editable
_TIME_FIELDS = SPEC_FIELDS.times
_LIST_FIELDS = SPEC_FIELDS.lists


def _unstorable(value: Any) -> str | None:
    """Why ``value`` could not be stored and sent back as JSON, or None.

    ``json.loads`` accepts NaN/Infinity and lone surrogates (``"\\ud800"``),
    which SQLite's UTF-8 and strict JSON output then choke on, far from the
    request. Iterative, so deep nesting cannot overflow the stack here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not JSON numbers"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text contains an unpaired surrogate (invalid UTF-8)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def _field_time(field: str, text: str | None) -> float | None:
    """Parse one time field, naming the field in the error."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", field=field) from None


#: Submit-body fields copied as they are (the others are parsed: times, lists, state).
_PLAIN_FIELDS = tuple(
    f for f in SubmitBody.model_fields if f not in (*_TIME_FIELDS, *_LIST_FIELDS, "state")
)


def _spec_from(body: SubmitBody) -> JobSpec:
    """The JobSpec of a submit body: every body field, times parsed, lists as tuples."""
    values = body.__dict__  # pydantic keeps a model's field values here
    spec: dict[str, Any] = {field: values[field] for field in _PLAIN_FIELDS}
    for field in _LIST_FIELDS:
        spec[field] = tuple(values[field])
    for field in _TIME_FIELDS:
        spec[field] = _field_time(field, values[field])
    return JobSpec(state=JobState(body.state), **spec)


def _changes_from(body: EditBody) -> dict[str, Any]:
    """The JobSpec fields a PATCH sets, with times as POSIX floats and lists as tuples."""
    changes: dict[str, Any] = {}
    for field in sorted(body.model_fields_set):
        value = getattr(body, field)
        if value is None and field not in _NULLABLE:
            raise ValidationError(f"{field}: may not be null", field=field)
        if field in _TIME_FIELDS:
            value = _field_time(field, value)
        elif field in _LIST_FIELDS:
            value = tuple(value)
        changes[field] = value
    return changes


# --------------------------------------------------------------------------- JSON out

#: Keys whose values are user data: never rewritten as times.
_OPAQUE = frozenset({"params", "outputs", "data", "details"})


@functools.cache
def _is_time_key(key: str) -> bool:
    # Cached: a job has some 30 keys, each asked about on every job shown.
    return key in {"at", "start", "end", "since", "fire_time"} or key.endswith("_at")


def iso_times(value: Any) -> Any:
    """A copy of ``value`` with every POSIX time (keys ``at``, ``start``, ``end``,
    ``since``, ``fire_time``, ``*_at``) rewritten by :func:`format_time`; user data untouched."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _OPAQUE:
                out[key] = item
            elif _is_time_key(key) and isinstance(item, int | float) and not isinstance(item, bool):
                out[key] = format_time(float(item))
            else:
                out[key] = iso_times(item)
        return out
    if isinstance(value, list | tuple):
        return [iso_times(item) for item in value]
    return value


def _iso_flat(value: dict[str, Any]) -> dict[str, Any]:
    """:func:`iso_times` for an object whose values are not objects to walk (in place)."""
    for key, item in value.items():
        if _is_time_key(key) and isinstance(item, int | float) and not isinstance(item, bool):
            value[key] = format_time(float(item))
    return value


def job_json(job: Job, *, detail: bool = True) -> dict[str, Any]:
    """A job as the API shows it: :func:`iso_times` of ``job.to_dict()``, done on the parts
    a job has (itself, its error, steps, reservations, history) instead of a walk through
    every value: a third of a submission's cost went to that walk. ``detail=False``: a
    list's row, without the parts a list does not load."""
    out = _iso_flat(job.to_dict(detail=detail))
    if out["error"] is not None:
        _iso_flat(out["error"])
    for part in ("steps", "reservations", "history"):
        for item in out.get(part, ()):
            _iso_flat(item)
    return out


def _json(value: dict[str, Any]) -> dict[str, Any]:
    """:func:`iso_times` for an object (keeps the type checker informed)."""
    out = iso_times(value)
    assert isinstance(out, dict)
    return out


def _items(items: list[Any], next_cursor: int | None = None) -> dict[str, Any]:
    """The one list shape of SPEC §2."""
    return {"items": iso_times(items), "next_cursor": next_cursor}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _error(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


# --------------------------------------------------------------------------- errors

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}


async def _jobd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, JobdError)
    if exc.status >= 500:
        log.error(
            "request failed",
            method=request.method,
            path=request.url.path,
            code=exc.code,
            error=exc.message,
        )
    return _error(exc.status, exc.code, exc.message, exc.details)


def _validation_message(err: Any) -> str:
    loc = ".".join(str(part) for part in err.get("loc", ()))
    if err.get("type") == "extra_forbidden":
        return f"{loc}: unknown field"
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "JSON decode error")
        return f"malformed JSON body at position {err['loc'][-1]}: {reason}"
    message = str(err.get("msg", "invalid"))
    if err.get("type") == "value_error":
        message = message.removeprefix("Value error, ")  # our own validators' wording
    return f"{loc}: {message}"


def _unknown_job(request: Request, errors: list[Any]) -> Response | None:
    """A 404 when the path itself is what failed validation (``/v1/jobs/abc``, ``/0``,
    ``/2**70``): such a path names no job, so it is "not found", not bad input (SPEC §7)."""
    if not any(tuple(err.get("loc", ()))[:1] == ("path",) for err in errors):
        return None
    raw = str(request.path_params.get("job_id", request.url.path))
    return _error(404, "not-found", f"job {raw!r} not found", {"what": "job", "id": raw})


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    unknown = _unknown_job(request, errors)
    if unknown is not None:
        return unknown
    messages = [_validation_message(err) for err in errors]
    code = "invalid-json" if any(e.get("type") == "json_invalid" for e in errors) else "invalid"
    content_type = request.headers.get("content-type", "")
    if request.method in {"POST", "PATCH", "PUT"} and "json" not in content_type:
        messages.append("send the body as JSON with Content-Type: application/json")
    # Only loc/msg/type: ``input`` may echo a megabyte back, ``ctx`` may hold exceptions.
    details = {
        "errors": [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg"), "type": e.get("type")}
            for e in errors
        ]
    }
    return _error(400, code, "; ".join(messages) or "invalid request", details)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif message == "There was an error parsing the body":
        code, message = "invalid-json", "the body could not be parsed as JSON"
    return _error(exc.status_code, code, message, headers=dict(exc.headers or {}))


# --------------------------------------------------------------------------- middleware


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the error shape straight from ASGI (before the app ran)."""
    body = json.dumps(error_body(code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class CatchAllMiddleware:
    """Any exception that escapes a route is a bug: log it, answer 500 ``internal``.

    Starlette's own 500 handler re-raises after answering (so servers log it
    twice and test transports blow up); this one answers and stops.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unhandled error in API", method=scope.get("method"), path=scope.get("path")
            )
            if not started:
                await _send_error(
                    send, 500, "internal", "internal error (a bug in jobd; see the daemon log)"
                )


class BodyLimitMiddleware:
    """Refuse bodies over ``limit`` bytes with 413, by Content-Length and by counting.

    The body is read here (at most ``limit`` bytes are ever buffered) and
    replayed to the app, so a client that lies about or omits Content-Length
    is still cut off before anything parses it.
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY, limits: dict[str, int] | None = None
    ) -> None:
        """``limits``: larger caps for some paths (the batch route)."""
        self.app = app
        self.limit = limit
        self.limits = limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        limit = self.limits.get(scope.get("path", ""), self.limit)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._too_large(send, limit)
            return
        body = await self._read(receive, limit)
        if body is None:
            await self._too_large(send, limit)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)  # disconnected: the app will see an empty body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Send, limit: int) -> None:
        await _send_error(
            send,
            413,
            "too-large",
            f"request body larger than {limit} bytes",
            [(b"connection", b"close")],
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


# --------------------------------------------------------------------------- SSE


class EventStreams:
    """The open event streams of one app, so a stopping daemon can end them at once.

    An SSE response never completes by itself, and an ASGI server that is
    shutting down waits for open responses; :func:`end_event_streams` ends
    them so shutdown does not sit out the server's grace period.
    """

    def __init__(self) -> None:
        self._scopes: set[CancelScope] = set()
        self.closed = False

    def close_all(self) -> None:
        """End every open stream and refuse new ones (call on the event loop)."""
        self.closed = True
        for scope in list(self._scopes):
            scope.cancel()

    @contextlib.contextmanager
    def track(self) -> Iterator[CancelScope]:
        with CancelScope() as scope:
            if self.closed:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)


def end_event_streams(app: FastAPI) -> None:
    """End the app's open ``/v1/events`` streams cleanly (the daemon calls this on shutdown)."""
    streams: EventStreams = app.state.event_streams
    streams.close_all()


class EventStreamResponse(Response):
    """``text/event-stream`` of committed events, written straight to ASGI.

    Subscribes *before* sending the headers, so a client that has the headers
    misses nothing that happens afterwards. Ends when the client disconnects
    or the engine closes the subscription (shutdown, slow reader dropped).
    Raw ASGI rather than an async generator: a generator cannot safely yield
    from inside the cancel scopes the keep-alive timer needs.
    """

    media_type = "text/event-stream"

    def __init__(
        self, engine: Engine, job_id: int | None, keepalive: float, streams: EventStreams
    ) -> None:
        super().__init__(status_code=200)
        self._engine, self._job_id, self._keepalive = engine, job_id, keepalive
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The client going away mid-write is an ordinary end for a stream, not an error.
        with contextlib.suppress(OSError):
            await self._stream(receive, send)

    async def _stream(self, receive: Receive, send: Send) -> None:
        async with self._engine.subscribe() as events:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no"),
                    ],
                }
            )
            await self._chunk(send, b": connected\n\n")
            with self._streams.track():
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_cancel_on_disconnect, receive, tg.cancel_scope)
                    await self._pump(events, send)
                    tg.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, events: MemoryObjectReceiveStream[JobEvent], send: Send) -> None:
        while True:
            event: JobEvent | None = None
            with anyio.move_on_after(self._keepalive):
                try:
                    event = await events.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
            if event is None:
                await self._chunk(send, b": keepalive\n\n")
            elif self._job_id is None or event.job_id == self._job_id:
                await self._chunk(send, sse_frame(event))

    @staticmethod
    async def _chunk(send: Send, data: bytes) -> None:
        await send({"type": "http.response.body", "body": data, "more_body": True})


def sse_frame(event: JobEvent) -> bytes:
    """One SSE message: ``event: job`` and the event as JSON on one ``data:`` line."""
    data = json.dumps(iso_times(event.to_dict()), separators=(",", ":"))
    return f"event: job\ndata: {data}\n\n".encode()


async def _cancel_on_disconnect(receive: Receive, scope: CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


# --------------------------------------------------------------------------- bodies read by hand

M = TypeVar("M", bound=BaseModel)


async def read_body(request: Request, model: type[M]) -> M:
    """``model`` from the request's JSON body, refused exactly as FastAPI refuses a declared
    body (same error types and ``body.``-prefixed locations, so the same messages): for
    routes that look at the body before validating it (a batch's size) or skip the
    framework's machinery on the hot path."""
    return parse_body(await request.body(), request.headers.get("content-type"), model)


def parse_body(raw: bytes, content_type: str | None, model: type[M]) -> M:
    """See :func:`read_body`."""
    return validate_body(load_json(raw, content_type), model)


def load_json(raw: bytes, content_type: str | None) -> Any:
    """The JSON body as Python objects, read as FastAPI reads a declared body: none is a
    missing body, one sent without a JSON content type is not parsed (so it is not an
    object); RequestValidationError, or 400 ``invalid-json``."""
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required"}]
        )
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if not (
        media == "application/json"
        or (media.startswith("application/") and media.endswith("+json"))
    ):
        raise RequestValidationError(
            [
                {
                    "type": "model_attributes_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary or object to extract fields from",
                }
            ]
        )
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", exc.pos),
                    "msg": "JSON decode error",
                    "ctx": {"error": exc.msg},
                }
            ]
        ) from None
    except (ValueError, RecursionError):  # an integer of 5,000 digits, nesting too deep
        raise StarletteHTTPException(400, "There was an error parsing the body") from None


def validate_body(data: Any, model: type[M]) -> M:
    try:
        # from_attributes: as FastAPI validates a body (JSON has no objects with attributes;
        # it changes only what a non-object body is called).
        return model.model_validate(data, from_attributes=True)
    except PydanticValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the JSON body of a route that reads its body
    by hand (its nested models must appear in the document through another route)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


# --------------------------------------------------------------------------- submissions

#: One encoder, built once (``json.dumps`` with options builds one per call); the output
#: is what Starlette's JSONResponse writes.
_OUT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))

#: An answer: status, JSON content, extra headers.
Answer = tuple[int, Any, dict[str, str]]


async def submit_one(engine: Engine, body: SubmitBody, actor: str) -> Answer:
    """``POST /v1/jobs``, for the FastAPI route and the hot path alike."""
    job = await engine.submit(_spec_from(body), actor=actor)
    return 201, job_json(job), {"location": f"/v1/jobs/{job.id}"}


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
    specs = []
    for index, item in enumerate(body.jobs):
        try:
            specs.append(_spec_from(item))
        except JobdError as exc:
            raise exc.in_batch(index) from None
    jobs_out = await engine.submit_many(specs, actor=actor)
    return 201, {"items": [job_json(job) for job in jobs_out]}, {}


def answer_response(answer: Answer) -> Response:
    status, content, headers = answer
    return Response(_OUT.encode(content).encode(), status, headers, "application/json")


class HotRoutes:
    """The submissions (``POST /v1/jobs``, ``POST /v1/batch/jobs``) without the framework's
    routing, dependency solving and response classes: the same models, the same functions
    (:func:`submit_one`, :func:`submit_batch_body`) and the same error handlers as their
    FastAPI routes, which stay declared for the OpenAPI document and serve what this path
    leaves to them (any query string: the unknown-parameter refusal). Runs inside the body
    limit, authentication and catch-all middlewares; a check that a FastAPI route declares
    must be made here too."""

    def __init__(self, app: ASGIApp, engine: Engine, roles: dict[str, Role | None]) -> None:
        """``roles``: each route's declared role (:func:`jobd.service.authz.route_roles` of the
        app, filled once its routes are declared): the hot path checks the same one."""
        self.app = app
        self.engine = engine
        self.roles = roles

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or path not in ("/v1/jobs", "/v1/batch/jobs")
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
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
            response = answer_response(answer)
        except JobdError as exc:
            response = await _jobd_error(request, exc)
        except RequestValidationError as exc:
            response = await _validation_error(request, exc)
        except StarletteHTTPException as exc:
            response = await _http_error(request, exc)
        await response(scope, receive, send)


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


# --------------------------------------------------------------------------- the app


async def _refuse_unknown_query(request: Request) -> None:
    """An unknown query parameter is a 400, as an unknown body field is: ``?stat=failed``
    must not quietly list every job."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    allowed = {param.alias for param in dependant.query_params}
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValidationError(
            [f"query.{name}: unknown parameter (allowed: {known})" for name in unknown],
            field=unknown[0],
        )


def _is_public(path: str) -> bool:
    """Served over TCP without a token: ``/v1/health``, and the page's shell and static
    files (they hold no data; the page's data requests need a token and a role)."""
    return path in PUBLIC_PATHS or is_public_path(path)


def _parse_states(values: list[str] | None) -> list[JobState] | None:
    """``?state=a&state=b`` or ``?state=a,b``; an unknown state is a 400 listing the valid ones."""
    if not values:
        return None
    states: list[JobState] = []
    for value in (v.strip() for raw in values for v in raw.split(",")):
        if not value:
            continue
        try:
            states.append(JobState(value))
        except ValueError:
            valid = ", ".join(s.value for s in JobState)
            raise ValidationError(
                f"state: unknown state {value!r} (one of: {valid})", field="state"
            ) from None
    return states or None


def job_filter(
    state: list[str] | None = None,
    workflow: str | None = None,
    asset: str | None = None,
    resource: str | None = None,
    since: str | None = None,
    until: str | None = None,
    search: str | None = None,
    *,
    where: str = "",
) -> JobFilter:
    """The one reading of the list filters, from the query or a batch body (``where``
    prefixes the names in errors: ``filter.``). Raises ValidationError naming the field."""
    try:
        states = _parse_states(state)
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc.message}", field=f"{where}state") from None
    lo = _field_time(f"{where}since", since)
    hi = _field_time(f"{where}until", until)
    if lo is not None and hi is not None and hi < lo:
        raise ValidationError(f"{where}until: must not be before since", field=f"{where}until")
    return JobFilter(tuple(states or ()), workflow, asset, resource, lo, hi, search)


def create_app(
    engine: Engine,
    *,
    version: str,
    started_at: float,
    access: Access | None = None,
    tcp: bool = False,
    token: str | None = None,
    reload: ReloadFunc | None = None,
    metrics: Metrics | None = None,
    sse_keepalive: float = SSE_KEEPALIVE,
    hot_routes: bool = True,
) -> FastAPI:
    """The API app on ``engine``.

    ``access``: who may do what (default: nobody listed, so every socket
    caller is admin, and no tokens). ``tcp``: the TCP listener's app: every
    route but ``/v1/health`` needs ``Authorization: Bearer <token>`` of one of
    ``access``'s tokens. ``token``: shorthand for ``tcp=True`` with that one
    token as the admin token ``default``. ``reload``: what ``POST
    /v1/reload`` calls; it raises ConfigError for a bad config (→ 400, old
    config kept) or returns its warnings and plugin changes. ``metrics``: share one :class:`Metrics`
    between apps; when omitted the app makes one and registers it with
    ``engine.add_listener``. ``hot_routes``: answer the submissions through
    :class:`HotRoutes` (False: through FastAPI only; the tests compare the two).
    """
    if token is not None:
        access, tcp = Access(tokens=[Token("default", Role.ADMIN, token.encode())]), True
    if metrics is None:
        metrics = Metrics(engine)
        engine.add_listener(metrics.observe)
    app = FastAPI(
        title="jobd",
        version=version,
        docs_url=None,
        redoc_url=None,
        description="Job scheduler daemon for media operations (SPEC §7).",
        dependencies=[Depends(undeclared_needs_admin), Depends(_refuse_unknown_query)],
        openapi_url=None,  # served below, as a viewer's route
        # jobd exports no OpenTelemetry: without this, FastAPI asks on every request
        # whether a provider is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_exception_handler(JobdError, _jobd_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Added inner to outer: the catch-all wraps everything, the caller is settled (and a
    # missing token refused) before any body is read.
    hot_roles: dict[str, Role | None] = {}  # filled below, once the routes are declared
    if hot_routes:
        app.add_middleware(HotRoutes, engine=engine, roles=hot_roles)
    app.add_middleware(BodyLimitMiddleware, limit=MAX_BODY, limits=BODY_LIMITS)
    app.add_middleware(AccessMiddleware, access=access or Access(), tcp=tcp, public=_is_public)
    app.add_middleware(CatchAllMiddleware)
    _job_routes(app, engine)
    _batch_routes(app, engine)
    _inspect_routes(app, engine)
    _service_routes(
        app,
        engine,
        version=version,
        started_at=started_at,
        reload=reload,
        metrics=metrics,
        sse_keepalive=sse_keepalive,
    )
    check_routes(app)
    hot_roles.update(route_roles(app))
    add_page_routes(app)  # plain routes: the page's shell and files, which hold no data
    return app


def _job_routes(app: FastAPI, engine: Engine) -> None:
    @app.post("/v1/jobs", status_code=201)
    async def submit_job(body: SubmitBody, caller: Operator) -> Response:
        """Usually answered by :class:`HotRoutes`, with the same function."""
        return answer_response(await submit_one(engine, body, caller.actor))

    @app.get("/v1/jobs", dependencies=[VIEWER])
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
    ) -> dict[str, Any]:
        """Newest first; every filter given must hold."""
        f = job_filter(state, workflow, asset, resource, since, until, search)
        jobs, next_cursor = await engine.list_jobs(f, limit, cursor)
        rows = [job_json(job, detail=False) for job in jobs]
        return {"items": rows, "next_cursor": next_cursor}

    @app.get("/v1/jobs/{job_id}", dependencies=[VIEWER])
    async def get_job(job_id: JobId) -> dict[str, Any]:
        return job_json(await engine.get_job(job_id))

    @app.patch("/v1/jobs/{job_id}")
    async def edit_job(job_id: JobId, body: EditBody, caller: Operator) -> dict[str, Any]:
        job = await engine.edit(job_id, _changes_from(body), actor=caller.actor)
        return job_json(job)

    @app.delete("/v1/jobs/{job_id}", status_code=204)
    async def delete_job(job_id: JobId, caller: Admin) -> Response:
        await engine.operate(job_id, "delete", actor=caller.actor)
        return Response(status_code=204)

    @app.post("/v1/jobs/{job_id}/{operation}")
    async def operate(
        job_id: JobId, operation: str, request: Request, caller: Operator
    ) -> Response:
        if operation not in PUBLIC_OPERATIONS:
            return _unknown_operation(operation)
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
        return _items(lines, more)


def _batch_routes(app: FastAPI, engine: Engine) -> None:
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
            return _unknown_operation(operation)
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
    return _error(
        413,
        "too-large",
        f"{what}; at most {MAX_BATCH} per request (narrow the filter, or split the ids)",
        {"limit": MAX_BATCH, "count": count},
    )


def _unknown_operation(operation: str) -> JSONResponse:
    known = ", ".join(PUBLIC_OPERATIONS)
    return _error(
        404,
        "unknown-operation",
        f"unknown operation {operation!r} (one of: {known})",
        {"operation": operation, "operations": list(PUBLIC_OPERATIONS)},
    )


def _inspect_routes(app: FastAPI, engine: Engine) -> None:
    @app.get("/v1/queue", dependencies=[VIEWER])
    async def queue() -> dict[str, Any]:
        return _json(engine.queue_info())

    @app.get("/v1/locks", dependencies=[VIEWER])
    async def locks() -> dict[str, Any]:
        return _items(await engine.locks_info())

    @app.get("/v1/resources", dependencies=[VIEWER])
    async def resources() -> dict[str, Any]:
        return _items(await engine.resources_info())

    @app.get("/v1/bookings", dependencies=[VIEWER])
    async def bookings(
        start: Annotated[str | None, Query(alias="from", max_length=100)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=100)] = None,
    ) -> JSONResponse:
        lo, hi = _field_time("from", start), _field_time("to", end)
        if lo is not None and hi is not None and hi < lo:
            raise ValidationError("to: must not be before from", field="to")
        # A JSONResponse skips FastAPI's jsonable_encoder walk: a timeline asks for 10,000.
        return JSONResponse(_items(await engine.bookings(lo, hi)))

    @app.get("/v1/schedules", dependencies=[VIEWER])
    async def schedules() -> dict[str, Any]:
        return _items(await engine.schedules_info())

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
            return JSONResponse(_json(info))
        return _error(
            404,
            "unknown-operation",
            f"unknown schedule action {action!r} (one of: run, pause, resume)",
            {"operation": action, "operations": ["run", "pause", "resume"]},
        )

    @app.get("/v1/plugins", dependencies=[VIEWER])
    async def plugins() -> dict[str, Any]:
        return _json(engine.plugins_info())

    @app.get("/v1/nodes", dependencies=[VIEWER])
    async def nodes() -> dict[str, Any]:
        """The cluster's nodes (SPEC §10); a daemon on SQLite shows itself alone."""
        return _items(await engine.nodes_info())


def _service_routes(
    app: FastAPI,
    engine: Engine,
    *,
    version: str,
    started_at: float,
    reload: ReloadFunc | None,
    metrics: Metrics,
    sse_keepalive: float,
) -> None:
    streams = app.state.event_streams = EventStreams()

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

    @app.get("/v1/events", dependencies=[VIEWER])
    async def events(
        job: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    ) -> Response:
        return EventStreamResponse(engine, job, sse_keepalive, streams)

    @app.post("/v1/reload", dependencies=[ADMIN])
    async def reload_config() -> Response:
        if reload is None:
            return _error(409, "reload-unavailable", "this API instance cannot reload the config")
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
