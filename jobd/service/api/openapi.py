"""The OpenAPI document's error responses: what each route can answer besides its success.

FastAPI documents a ``422`` with its own validation-error body on every route that takes
input, yet jobd never answers 422: bad input is a ``400`` in jobd's one error shape
(SPEC §7, :mod:`.handlers`). :func:`document_errors` replaces it, on every operation of the
document, by the statuses the route can really give, each with that shape
(``#/components/schemas/Error``), so that a client generated from ``/openapi.json`` knows
them. The rules, by what a route is:

- every route but the public ones (``GET /v1/health``): 401 (over TCP, no or a wrong token)
  and 403 (``forbidden``: beyond the caller's role, SPEC §11);
- every route: 400 (bad input, naming the field; an unknown query parameter too);
- a path with ``{...}``: 404 (no such job, schedule or operation);
- a route with a JSON body: 413 (over the body limit);
- a change of jobs (:data:`CONFLICTS`): 409 (a state or booking conflict);
- an operation that may be sent to the node holding the job (:data:`FORWARDED`): 503
  (``node-unavailable``, SPEC §10).

A status a route declares itself (``responses=`` on its decorator) keeps its description.
"""

from __future__ import annotations

from typing import Any, Final

#: The error shape of every non-2xx answer (``handlers.error_response``).
ERROR_SCHEMA: Final[dict[str, Any]] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "stable, e.g. invalid, not-found"},
                "message": {"type": "string", "description": "for people: what is wrong"},
                "details": {"type": "object", "description": "the field, state, ids, ..."},
            },
        }
    },
}

#: ``METHOD path`` of the routes that change jobs: a state or booking conflict is a 409.
CONFLICTS: Final = frozenset(
    {
        "POST /v1/jobs",
        "PATCH /v1/jobs/{job_id}",
        "DELETE /v1/jobs/{job_id}",
        "POST /v1/jobs/{job_id}/{operation}",
        "POST /v1/batch/jobs",
    }
)
#: Operations that another node of a cluster may have to carry out (engine/forward.py).
FORWARDED: Final = frozenset(
    {
        "PATCH /v1/jobs/{job_id}",
        "DELETE /v1/jobs/{job_id}",
        "POST /v1/jobs/{job_id}/{operation}",
        "POST /v1/batch/{operation}",
    }
)
#: Routes anyone may call, also over TCP without a token.
PUBLIC: Final = frozenset({"GET /v1/health"})

_DESCRIPTIONS: Final = {
    "400": "bad input: the error names the field (an unknown query parameter too)",
    "401": "over TCP: no bearer token, or a wrong one",
    "403": "beyond the caller's role (code forbidden, details.needed names the role)",
    "404": "no such job, schedule or operation",
    "409": "refused in the job's state, or a booking conflict (details name them)",
    "413": "the body is over the limit",
    "503": "the node that holds the job did not answer (code node-unavailable)",
}


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``document`` (FastAPI's, in place) as the module docstring says; returns it."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in statuses(method.upper(), path, operation):
                declared = responses.setdefault(status, {})
                declared.setdefault("description", _DESCRIPTIONS[status])
                declared["content"] = {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def statuses(method: str, path: str, operation: dict[str, Any]) -> list[str]:
    """The error statuses of one operation of the document, in order."""
    route = f"{method} {path}"
    found = ["400"] if route in PUBLIC else ["400", "401", "403"]
    if "{" in path:
        found.append("404")
    if route in CONFLICTS:
        found.append("409")
    if "requestBody" in operation:
        found.append("413")
    if route in FORWARDED:
        found.append("503")
    return sorted(found)
