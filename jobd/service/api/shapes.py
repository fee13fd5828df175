"""What the API sends: jobs and records as JSON (times as ISO 8601 UTC), the one list
shape, and the one error shape ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from fastapi import Response
from fastapi.responses import JSONResponse

from jobd.core.jsontext import dumps
from jobd.core.states import PUBLIC_OPERATIONS
from jobd.core.timefmt import format_time

if TYPE_CHECKING:
    from jobd.core.models import Job

#: What a time may be (a tuple: ``int | float`` would build a union on every test).
_NUMBER = (int, float)
#: Keys whose values are user data: never rewritten as times.
_OPAQUE = frozenset({"params", "outputs", "data", "details"})


@functools.cache
def _is_time_key(key: str) -> bool:
    # Cached: a job has some 30 keys, each asked about on every job shown.
    return key in {"at", "start", "end", "since", "fire_time"} or key.endswith("_at")


#: :func:`format_time`, remembered: a job shows one time up to five times (created,
#: updated, each history row), and the jobs of a batch share theirs; formatting one was
#: a tenth of a batch submission's cost.
_iso = functools.lru_cache(maxsize=4096)(format_time)


def iso_times(value: Any) -> Any:
    """A copy of ``value`` with every POSIX time (keys ``at``, ``start``, ``end``,
    ``since``, ``fire_time``, ``*_at``) rewritten by :func:`format_time`; user data untouched."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _OPAQUE:
                out[key] = item
            elif _is_time_key(key) and isinstance(item, _NUMBER) and not isinstance(item, bool):
                out[key] = _iso(float(item))
            else:
                out[key] = iso_times(item)
        return out
    if isinstance(value, list | tuple):
        return [iso_times(item) for item in value]
    return value


def _iso_or_none(value: float | None) -> str | None:
    return None if value is None else _iso(value)


def job_json(job: Job, *, detail: bool = True) -> dict[str, Any]:
    """A job as the API shows it: ``job.to_dict()`` built with its times already in ISO 8601
    (what :func:`iso_times` of it gives), not rewritten afterwards by a walk through
    every value: that walk was a third of a submission's cost, and the rewrite of the
    known time keys half of what was left. ``detail=False``: a list's row, without the
    parts a list does not load."""
    return job.to_dict(detail=detail, time=_iso_or_none)


def as_json(value: dict[str, Any]) -> dict[str, Any]:
    """:func:`iso_times` for an object (keeps the type checker informed)."""
    out = iso_times(value)
    assert isinstance(out, dict)
    return out


def items(rows: list[Any], next_cursor: int | None = None) -> dict[str, Any]:
    """The one list shape of SPEC §2."""
    return {"items": iso_times(rows), "next_cursor": next_cursor}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def unknown_operation(operation: str) -> JSONResponse:
    """404 ``unknown-operation`` for a job operation that does not exist."""
    known = ", ".join(PUBLIC_OPERATIONS)
    return error_response(
        404,
        "unknown-operation",
        f"unknown operation {operation!r} (one of: {known})",
        {"operation": operation, "operations": list(PUBLIC_OPERATIONS)},
    )


#: An answer: status, JSON content, extra headers.
Answer = tuple[int, Any, dict[str, str]]


def answer_response(answer: Answer) -> Response:
    """The response of an :data:`Answer`: the JSON Starlette's JSONResponse writes, encoded
    by orjson (:func:`jobd.core.jsontext.dumps`, a tenth of the CPU)."""
    status, content, headers = answer
    return Response(dumps(content), status, headers, "application/json")
