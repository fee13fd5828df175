"""Bodies read by hand: for routes that look at the body before validating it (a batch's
size) or skip the framework's machinery on the hot path, refused exactly as FastAPI
refuses a declared body (same error types and ``body.``-prefixed locations, so the same
messages)."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """``model`` of the decoded body; RequestValidationError with ``body.`` locations."""
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
