"""The API's side of SPEC §11: who the caller is (middleware) and what each route needs.

How a route picks its role — one declaration, in its signature::

    @app.post("/v1/jobs", status_code=201)
    async def submit_job(body: SubmitBody, caller: Operator) -> JSONResponse:
        job = await engine.submit(spec, actor=caller.actor)

``Viewer``, ``Operator`` and ``Admin`` are the caller (a
:class:`~jobd.config.access.Caller`), checked to hold at least that role before the
route runs; a caller below it gets 403 ``forbidden`` naming the role needed.
``Anyone`` is the caller unchecked (only ``GET /v1/health``, which must also be
in :data:`PUBLIC_PATHS` so the TCP listener lets it through without a token).
A route that does not use the caller still declares its role the same way
(``_: Viewer``), or with ``dependencies=[VIEWER]`` on the decorator.

A route that declares none is an error: :func:`check_routes` (called at the
end of ``jobd.service.api.create_app``) refuses to build such an app, and should one
slip in later anyway, :func:`undeclared_needs_admin` (an app-wide dependency)
lets only admins through it: forgetting fails closed.

One route whose need depends on its input (``POST /v1/jobs/{id}/{operation}``,
``POST /v1/batch/{operation}``) declares the lower role and calls
:func:`require` with :func:`operation_role` inside: ``delete`` is admin only.

Who the caller is, is settled before any route by :class:`AccessMiddleware`
and kept in ``scope["jobd.caller"]``: the kernel's word on the Unix socket,
the bearer token over TCP (401 without a valid one, but on :data:`PUBLIC_PATHS`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from jobd.config.access import PEER_SCOPE_KEY, Access, Caller, Forbidden, Role, client_kind

#: Where the middleware leaves the :class:`Caller` (and where the routes find it).
CALLER_SCOPE_KEY = "jobd.caller"
#: Paths the TCP listener serves without a token (each route here declares ``Anyone``).
PUBLIC_PATHS = frozenset({"/v1/health"})
#: Operations that need more than ``operator`` (the role of every other operation).
OPERATION_ROLES = {"delete": Role.ADMIN}


class Needs:
    """A FastAPI dependency: the request's caller, who must hold at least ``role``
    (None: anyone, the caller unchecked). Use it through the aliases below."""

    def __init__(self, role: Role | None) -> None:
        self.role = role

    async def __call__(self, request: Request) -> Caller:
        caller = caller_of(request)
        if self.role is not None:
            require(caller, self.role, f"{request.method} {request.url.path}")
        return caller

    def __repr__(self) -> str:
        return f"Needs({self.role and self.role.value})"


Anyone = Annotated[Caller, Depends(Needs(None))]
Viewer = Annotated[Caller, Depends(Needs(Role.VIEWER))]
Operator = Annotated[Caller, Depends(Needs(Role.OPERATOR))]
Admin = Annotated[Caller, Depends(Needs(Role.ADMIN))]
#: For ``dependencies=[...]`` on a decorator, when the route does not use the caller.
VIEWER = Depends(Needs(Role.VIEWER))
OPERATOR = Depends(Needs(Role.OPERATOR))
ADMIN = Depends(Needs(Role.ADMIN))


def caller_of(request: Request) -> Caller:
    """The caller :class:`AccessMiddleware` settled; an app without it has no callers."""
    caller = request.scope.get(CALLER_SCOPE_KEY)
    if not isinstance(caller, Caller):
        raise RuntimeError("no caller in the request scope: is AccessMiddleware installed?")
    return caller


def require(caller: Caller, role: Role, what: str) -> None:
    """Raise :class:`Forbidden` (403) unless ``caller`` holds at least ``role``."""
    if not caller.may(role):
        raise Forbidden(what, role, caller)


def operation_role(operation: str) -> Role:
    """The role a job operation needs: ``admin`` for ``delete``, ``operator`` for the rest."""
    return OPERATION_ROLES.get(operation, Role.OPERATOR)


# --------------------------------------------------------------------------- declarations


def _needs_in(dependant: Dependant) -> Iterator[Needs]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, Needs):
            yield sub.call
        yield from _needs_in(sub)


def route_role(route: APIRoute) -> tuple[bool, Role | None]:
    """``(declared, role)``: whether ``route`` declares a role, and the highest it names."""
    found = list(_needs_in(route.dependant))
    if not found:
        return False, None
    roles = [needs.role for needs in found if needs.role is not None]
    return True, max(roles, key=lambda role: role.rank) if roles else None


def route_roles(app: FastAPI) -> dict[str, Role | None]:
    """``{"POST /v1/jobs": Role.OPERATOR, ...}`` for every declared API route (docs, tests)."""
    table: dict[str, Role | None] = {}
    for route in app.routes:
        if isinstance(route, APIRoute):
            declared, role = route_role(route)
            if declared:
                for method in sorted(route.methods or ()):
                    table[f"{method} {route.path}"] = role
    return table


def check_routes(app: FastAPI) -> None:
    """Refuse an app with a route that declares no role (see the module docstring)."""
    missing = [
        f"{','.join(sorted(route.methods or ()))} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute) and not route_role(route)[0]
    ]
    if missing:
        raise RuntimeError(
            "API routes without a role (declare Viewer, Operator, Admin or Anyone, "
            f"see jobd.service.authz): {', '.join(missing)}"
        )


async def undeclared_needs_admin(request: Request) -> None:
    """App-wide dependency: a route that declares no role is for admins only."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and not route_role(route)[0]:
        require(caller_of(request), Role.ADMIN, f"{request.method} {request.url.path}")


# --------------------------------------------------------------------------- middleware


class AccessMiddleware:
    """Settles who the caller is, before anything reads the request body.

    ``tcp``: the TCP listener's app: a valid ``Authorization: Bearer`` token
    is required on every path for which ``public(path)`` is false (else 401;
    default: only :data:`PUBLIC_PATHS`). Otherwise
    the Unix socket's: the kernel's peer credentials (``scope["jobd.peer"]``)
    decide, through ``access``. Only HTTP passes (no WebSocket routes exist).
    """

    def __init__(
        self,
        app: ASGIApp,
        access: Access,
        tcp: bool,
        public: Callable[[str], bool] = PUBLIC_PATHS.__contains__,
    ) -> None:
        self.app, self.access, self.tcp, self.public = app, access, tcp, public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # the server closes what the app did not accept
        headers = scope.get("headers") or []
        client = client_kind(headers)
        if self.tcp:
            authorization = dict(headers).get(b"authorization")
            caller = self.access.token_caller(authorization, client)
            if caller is None:
                if not self.public(scope.get("path", "")):
                    await _unauthorized(send, "invalid" if authorization else "missing")
                    return
                caller = Caller(None, "token", None, client)
        else:
            caller = self.access.socket_caller(scope.get(PEER_SCOPE_KEY), client)
        scope[CALLER_SCOPE_KEY] = caller
        await self.app(scope, receive, send)


async def _unauthorized(send: Send, what: str) -> None:
    body = json.dumps(
        {"error": {"code": "unauthorized", "message": f"{what} bearer token", "details": {}}}
    ).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})
