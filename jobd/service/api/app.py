"""The app: :func:`create_app` puts the middlewares, exception handlers and routes of
the API together on one :class:`~jobd.engine.Engine`."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from jobd.config.access import Access, Role, Token
from jobd.core.errors import JobdError, ValidationError
from jobd.service.api.batch import add_batch_routes
from jobd.service.api.bookings import add_booking_routes
from jobd.service.api.events import add_event_routes
from jobd.service.api.handlers import http_error, jobd_error, validation_error
from jobd.service.api.jobs import add_job_routes
from jobd.service.api.limits import BODY_LIMITS, MAX_BODY, SSE_KEEPALIVE
from jobd.service.api.middleware import BodyLimitMiddleware, CatchAllMiddleware
from jobd.service.api.openapi import document_errors
from jobd.service.api.queues import add_queue_routes
from jobd.service.api.schedules import add_schedule_routes
from jobd.service.api.submit import HotRoutes, is_hot
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


class JobdAPI(FastAPI):
    """The API's FastAPI app, whose submissions (:func:`is_hot`) are answered in front of
    the framework's stack by :attr:`hot`: :class:`HotRoutes` inside the same catch-all,
    access and body-limit middlewares as every other route (:func:`_guarded`). What that
    skips, Starlette's and FastAPI's own outer layers (the server-error handler, the
    telemetry and app body-limit wrappers, ``scope["app"]``), does nothing a submission
    needs and cost ~60 µs of a lone submission's CPU (docs/performance.md)."""

    #: The submissions' path (None: every request goes through the framework).
    hot: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and is_hot(scope):
            await self.hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document with jobd's error responses (:mod:`.openapi`), made once."""
        if self.openapi_schema is None:
            self.openapi_schema = document_errors(super().openapi())
        return self.openapi_schema


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


def _bare_app(version: str) -> JobdAPI:
    """The FastAPI app with its exception handlers, and no route yet."""
    app = JobdAPI(
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
    app: JobdAPI,
    engine: Engine,
    access: Access,
    tcp: bool,
    hot_roles: dict[str, Role | None] | None,
) -> None:
    """Added inner to outer: the catch-all wraps everything, the caller is settled (and a
    missing token refused) before any body is read; the same three guard the hot path
    (:func:`_guarded`). ``hot_roles``: the routes' roles for :class:`HotRoutes` (None: no
    hot path)."""
    app.add_middleware(BodyLimitMiddleware, limit=MAX_BODY, limits=BODY_LIMITS)
    app.add_middleware(AccessMiddleware, access=access, tcp=tcp, public=_is_public)
    app.add_middleware(CatchAllMiddleware)
    if hot_roles is not None:
        framework = partial(FastAPI.__call__, app)  # what is not a submission: never, here
        app.hot = _guarded(HotRoutes(framework, engine, hot_roles), access, tcp)


def _guarded(inner: ASGIApp, access: Access, tcp: bool) -> ASGIApp:
    """``inner`` inside the middlewares of :func:`_add_middlewares`, in the same order."""
    limited = BodyLimitMiddleware(inner, limit=MAX_BODY, limits=BODY_LIMITS)
    return CatchAllMiddleware(AccessMiddleware(limited, access=access, tcp=tcp, public=_is_public))


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
