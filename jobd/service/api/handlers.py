"""The exception handlers: every error a route raises becomes the one error shape
(SPEC §7). Bad input is a 4xx naming the field; a 5xx is a bug and is logged."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobd.core.errors import JobdError
from jobd.service.api.shapes import error_response

log = structlog.get_logger("jobd.api")

_HTTP_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    413: "too-large",
}


async def jobd_error(request: Request, exc: Exception) -> Response:
    """A :class:`JobdError`: its status, code, message and details."""
    assert isinstance(exc, JobdError)
    if exc.status >= 500:
        log.error(
            "request failed",
            method=request.method,
            path=request.url.path,
            code=exc.code,
            error=exc.message,
        )
    return error_response(exc.status, exc.code, exc.message, exc.details)


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
    return error_response(404, "not-found", f"job {raw!r} not found", {"what": "job", "id": raw})


async def validation_error(request: Request, exc: Exception) -> Response:
    """Bad input (FastAPI's or :func:`~jobd.service.api.parse.validate_body`'s): 400
    ``invalid`` or ``invalid-json`` naming each field, or 404 for a path naming no job."""
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
    return error_response(400, code, "; ".join(messages) or "invalid request", details)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own (no route, method not allowed, unparsable body) in the error shape."""
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http-error")
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such route: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif message == "There was an error parsing the body":
        code, message = "invalid-json", "the body could not be parsed as JSON"
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))
