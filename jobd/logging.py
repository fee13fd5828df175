"""One logging set-up for structlog and the stdlib (uvicorn, apscheduler, aiosqlite).

Every line, whoever logs it, goes through the same processors and one handler
on the root logger: JSON lines for journald (``format = "json"``, or ``auto``
when the stream is not a terminal), ``ConsoleRenderer`` for a person at a
terminal. Timestamps are ISO 8601 UTC. Context bound with
``structlog.contextvars.bound_contextvars(job_id=..., step=...)`` appears on
every line logged inside that context, and so do the job and step of the
attempt running in it (:data:`RUNNING_STEP`, set by the runner).

Job log capture: :func:`set_job_log_sink` installs a callable that receives
every event carrying a ``job_id`` (``jobd logs ID`` reads what it stores).

:func:`configure_logging` is idempotent and is called again on a config
reload: it swaps the handler and levels, never stacks a second handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from jobd.config import LoggingConfig

#: ``sink(job_id, step, level, message, at)``; ``at`` is POSIX seconds.
JobLogSink = Callable[[int, str | None, str, str, float], None]

#: Keys that are the line's frame, not its content: left out of a job log message.
_FRAME_KEYS = frozenset(
    {
        "event",
        "job_id",
        "step",
        "level",
        "timestamp",
        "logger",
        "_record",
        "_from_structlog",
        "exc_info",
        "stack_info",
    }
)
#: ``(job_id, step)`` of the step attempt running in this context: the runner sets it around
#: each attempt, and every line logged there (structlog or stdlib, in the action's task or
#: its threads) carries both, unless it names its own. One variable, set once per attempt:
#: ``bind_contextvars(job_id=..., step=...)`` and its reset cost 16 times as much (4.2 µs
#: against 0.25 µs measured here), on every job's path.
RUNNING_STEP: ContextVar[tuple[int, str] | None] = ContextVar("jobd_running_step", default=None)

#: A job log line longer than this is cut: a runaway plugin must not bloat the database.
MAX_JOB_MESSAGE = 8192

#: Third-party loggers that are chatty at INFO (one line per request / per timer firing).
_QUIET_LOGGERS = {"uvicorn.access": logging.WARNING, "apscheduler": logging.WARNING}
#: aiosqlite logs every statement at DEBUG: keep it at INFO even when jobd debugs.
_FLOOR_LOGGERS = {"aiosqlite": logging.INFO}


class _State:
    """What the processors read at call time, so a reload takes effect on cached loggers."""

    sink: JobLogSink | None = None
    #: The event loop and thread that installed the sink: lines logged elsewhere
    #: (``anyio.to_thread`` in an action) are handed over to that loop.
    loop: asyncio.AbstractEventLoop | None = None
    thread: int | None = None
    handler: logging.Handler | None = None


_state = _State()
_in_sink = threading.local()


def level_number(level: str | int) -> int:
    """``"info"`` → ``logging.INFO``; raises ValueError for an unknown name."""
    if isinstance(level, int):
        return level
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def set_job_log_sink(sink: JobLogSink | None) -> None:
    """Send every event carrying ``job_id`` to ``sink(job_id, step, level, message, at)``.

    ``message`` is the event followed by its other key=value pairs, rendered
    compactly. The sink may be called from any thread that logs (actions use
    ``anyio.to_thread``): when installed from a running event loop, lines
    logged on other threads are passed to it with ``call_soon_threadsafe``, so
    the sink itself always runs on that loop's thread. It must be cheap (batch,
    do not write synchronously) and must not log with a ``job_id`` itself (such
    lines are not re-captured). Its exceptions are swallowed: logging never
    fails the caller. ``None`` stops capture.
    """
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    _state.sink, _state.loop, _state.thread = sink, loop, threading.get_ident()


def _compact(value: Any) -> str:
    """A value as it reads in ``key=value``: bare when it is one plain word, else JSON."""
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # e.g. a circular structure
        return repr(value)


def render_job_message(event_dict: EventDict) -> str:
    """The event text plus the other key=values, e.g. ``step done attempt=2 exit_code=0``."""
    parts = [str(event_dict.get("event", ""))]
    parts += [f"{k}={_compact(v)}" for k, v in event_dict.items() if k not in _FRAME_KEYS]
    exc = event_dict.get("exception")
    if exc is None and event_dict.get("exc_info"):
        exc_info = event_dict["exc_info"]
        if isinstance(exc_info, BaseException):
            parts.append(f"error={type(exc_info).__name__}: {exc_info}")
        elif exc_info is True and sys.exc_info()[1] is not None:
            err = sys.exc_info()[1]
            parts.append(f"error={type(err).__name__}: {err}")
    message = " ".join(p for p in parts if p)
    return message[:MAX_JOB_MESSAGE]


def _event_time(event_dict: EventDict) -> float:
    record = event_dict.get("_record")
    return record.created if isinstance(record, logging.LogRecord) else time.time()


def add_running_step(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Processor: ``job_id`` and ``step`` of the attempt running here (:data:`RUNNING_STEP`)."""
    running = RUNNING_STEP.get()
    if running is not None:
        event_dict.setdefault("job_id", running[0])
        event_dict.setdefault("step", running[1])
    return event_dict


def capture_job_line(_logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """Processor: hand a job's line to the sink. Never raises, never changes the event."""
    sink = _state.sink
    if sink is None or "job_id" not in event_dict or getattr(_in_sink, "active", False):
        return event_dict
    _in_sink.active = True
    try:
        job_id = int(event_dict["job_id"])
        step = event_dict.get("step")
        level = str(event_dict.get("level") or method).lower()
        line = (
            job_id,
            None if step is None else str(step),
            level,
            render_job_message(event_dict),
            _event_time(event_dict),
        )
        loop = _state.loop
        if loop is not None and threading.get_ident() != _state.thread:
            loop.call_soon_threadsafe(_deliver, sink, line)  # RuntimeError once it closed
        else:
            sink(*line)
    except Exception:  # a broken sink must not break the caller's log call
        pass
    finally:
        _in_sink.active = False
    return event_dict


def _deliver(sink: JobLogSink, line: tuple[int, str | None, str, str, float]) -> None:
    """Run on the sink's loop for a line logged on another thread; never raises."""
    with contextlib.suppress(Exception):  # as in capture_job_line: a broken sink stays silent
        sink(*line)


def _shared_processors() -> list[Processor]:
    """What every line gets, whether it comes from structlog or from a stdlib logger."""
    return [
        structlog.contextvars.merge_contextvars,
        add_running_step,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        capture_job_line,
    ]


def _use_json(cfg: LoggingConfig, stream: TextIO) -> bool:
    if cfg.format != "auto":
        return cfg.format == "json"
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream: the machine-readable form
        return True


def _formatter(cfg: LoggingConfig, stream: TextIO) -> structlog.stdlib.ProcessorFormatter:
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta]
    if _use_json(cfg, stream):
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=_is_tty(stream)))
    return structlog.stdlib.ProcessorFormatter(
        processors=final, foreign_pre_chain=_shared_processors()
    )


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _install_handler(handler: logging.Handler, level: int) -> None:
    """Replace the handler installed by a previous call; leave others (pytest's) alone."""
    root = logging.getLogger()
    if _state.handler is not None:
        root.removeHandler(_state.handler)
    root.addHandler(handler)
    root.setLevel(level)
    _state.handler = handler
    for name, quiet in _QUIET_LOGGERS.items():
        # Debugging brings them back; otherwise they stay quiet at INFO.
        logger = logging.getLogger(name)
        logger.setLevel(level if level <= logging.DEBUG else max(quiet, level))
        # uvicorn detaches uvicorn.access (handlers cleared, propagate off) when its
        # access log is off; this set-up owns their shape, so they go to the root again.
        logger.handlers.clear()
        logger.propagate = True
    for name, floor in _FLOOR_LOGGERS.items():
        logging.getLogger(name).setLevel(max(floor, level))


def configure_logging(cfg: LoggingConfig, *, stream: TextIO | None = None) -> None:
    """Configure structlog and the stdlib root logger from ``cfg``; safe to call again.

    Daemon lines below ``cfg.level`` are dropped, but a job's lines at INFO and
    above always reach the job log sink, whatever the daemon's level: an
    operator who quiets the journal still gets ``jobd logs ID``.
    Raises ValueError for an unknown level name (config validation catches it first).
    """
    level = level_number(cfg.level)
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(_formatter(cfg, handler.stream))
    _install_handler(handler, level)
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Filtering happens twice: here below the capture floor (cheap no-op calls),
        # then by the stdlib level for the daemon's own output.
        wrapper_class=structlog.make_filtering_bound_logger(min(level, logging.INFO)),
        # Not cached: a reload must reach module-level loggers, and tests'
        # structlog.testing.capture_logs() must too.
        cache_logger_on_first_use=False,
    )
