"""The app: :func:`create_app` puts the middlewares, exception handlers and routes of
the API together on one :class:`~jobd.engine.Engine`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from jobd.config.access import Access, Role, Token
from jobd.core.errors import JobdError, ValidationError
from jobd.service.api.batch import add_batch_routes
from jobd.service.api.bookings import add_booking_routes
from jobd.service.api.events import add_event_routes
from jobd.service.api.handlers import http_error, jobd_error, validation_error
from jobd.service.api.jobs import add_job_routes
from jobd.service.api.limits import BODY_LIMITS, MAX_BODY, SSE_KEEPALIVE
from jobd.service.api.middleware import BodyLimitMiddleware, CatchAllMiddleware
from jobd.service.api.queues import add_queue_routes
from jobd.service.api.schedules import add_schedule_routes
from jobd.service.api.submit import HotRoutes
from jobd.service.api.system import (
    ReloadFunc,
    add_admin_routes,
    add_health_routes,
    add_plugin_routes,
)
from jobd.service.authz import (
    PUBLIC_PATHS,
    AccessMiddleware,
    check_routes,
    route_roles,
    undeclared_needs_admin,
)
from jobd.service.metrics import Metrics
from jobd.service.web import add_page_routes, is_public_path

if TYPE_CHECKING:
    from jobd.engine import Engine


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
    app = _bare_app(version)
    hot_roles: dict[str, Role | None] = {}  # filled below, once the routes are declared
    _add_middlewares(app, engine, access or Access(), tcp, hot_roles if hot_routes else None)
    add_job_routes(app, engine)
    add_batch_routes(app, engine)
    add_queue_routes(app, engine)
    add_booking_routes(app, engine)
    add_schedule_routes(app, engine)
    add_plugin_routes(app, engine)
    add_health_routes(app, version=version, started_at=started_at)
    add_event_routes(app, engine, sse_keepalive)
    add_admin_routes(app, reload=reload, metrics=metrics)
    check_routes(app)
    hot_roles.update(route_roles(app))
    add_page_routes(app)  # plain routes: the page's shell and files, which hold no data
    return app


def _bare_app(version: str) -> FastAPI:
    """The FastAPI app with its exception handlers, and no route yet."""
    app = FastAPI(
        title="jobd",
        version=version,
        docs_url=None,
        redoc_url=None,
        description="Job scheduler daemon for media operations (SPEC §7).",
        dependencies=[Depends(undeclared_needs_admin), Depends(_refuse_unknown_query)],
        openapi_url=None,  # served by add_health_routes, as a viewer's route
        # jobd exports no OpenTelemetry: without this, FastAPI asks on every request
        # whether a provider is configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.add_exception_handler(JobdError, jobd_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    return app


def _add_middlewares(
    app: FastAPI,
    engine: Engine,
    access: Access,
    tcp: bool,
    hot_roles: dict[str, Role | None] | None,
) -> None:
    """Added inner to outer: the catch-all wraps everything, the caller is settled (and a
    missing token refused) before any body is read. ``hot_roles``: the routes' roles for
    :class:`HotRoutes` (None: no hot path)."""
    if hot_roles is not None:
        app.add_middleware(HotRoutes, engine=engine, roles=hot_roles)
    app.add_middleware(BodyLimitMiddleware, limit=MAX_BODY, limits=BODY_LIMITS)
    app.add_middleware(AccessMiddleware, access=access, tcp=tcp, public=_is_public)
    app.add_middleware(CatchAllMiddleware)


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
