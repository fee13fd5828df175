"""The HTTP API (SPEC §7): FastAPI on the engine.

:func:`create_app` (:mod:`.app`) builds one ASGI app around an
:class:`~jobd.engine.Engine`. The daemon builds one for the Unix socket (the
kernel says who the caller is) and one for the optional TCP listener (bearer
tokens say), sharing one :class:`~jobd.config.access.Access` policy (SPEC §11).

The modules: :mod:`.app` (the app), :mod:`.limits` (sizes and bounds),
:mod:`.bodies` (request models, and the JobSpec, changes and filter from them),
:mod:`.parse` (bodies read by hand), :mod:`.shapes` (JSON out, the error shape),
:mod:`.handlers` (exceptions to errors), :mod:`.middleware` (catch-all, body
limit), :mod:`.submit` (the submissions and their hot path), and the routes by
area: :mod:`.jobs`, :mod:`.batch`, :mod:`.queues`, :mod:`.bookings`,
:mod:`.schedules`, :mod:`.events` (SSE), :mod:`.system` (plugins, health,
reload, metrics).

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

from jobd.service.api.app import create_app
from jobd.service.api.bodies import EditBody, SubmitBody, job_filter
from jobd.service.api.events import end_event_streams, sse_frame
from jobd.service.api.limits import MAX_BATCH, MAX_BATCH_BODY, MAX_BODY, MAX_ID
from jobd.service.api.middleware import BodyLimitMiddleware, CatchAllMiddleware
from jobd.service.api.shapes import error_body, iso_times, job_json
from jobd.service.api.submit import HotRoutes
from jobd.service.api.system import ReloadFunc

__all__ = [
    "MAX_BATCH",
    "MAX_BATCH_BODY",
    "MAX_BODY",
    "MAX_ID",
    "BodyLimitMiddleware",
    "CatchAllMiddleware",
    "EditBody",
    "HotRoutes",
    "ReloadFunc",
    "SubmitBody",
    "create_app",
    "end_event_streams",
    "error_body",
    "iso_times",
    "job_filter",
    "job_json",
    "sse_frame",
]
