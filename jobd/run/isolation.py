"""Run an action in a worker process (a step with ``isolation = "process"``).

An inline action that blocks (``time.sleep``, a C extension, a busy loop)
freezes the whole daemon and cannot be cancelled. In a worker process it can:
cancelling :func:`run_isolated` (the step's timeout, a cancel or pause of the
job) kills the worker with SIGKILL, whatever the plugin code is doing.

The worker comes from anyio's process pool (idle workers are kept for a few
minutes and reused). It imports the plugin again, by file for drop-ins and
builtins (under the same stable module name as in the daemon) or by module
name for entry points, asks its module-level ``jobd_actions()`` for the action
and runs it with ``asyncio.run``.

Limits: the context in the worker has no progress callback (``ctx.progress``
does nothing) and records no process group for ``ctx.run_process`` (a
subprocess it starts is not killed with the worker: use inline isolation for
subprocess work, ``ctx.run_process`` already kills its group on timeout).
Log lines are sent back and replayed into the caller's logger when the action
ends; those of a killed worker are lost.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio.to_process
import structlog
from anyio.lowlevel import RunVar

from jobd.core.errors import ActionError, JobdError
from jobd.plugin.action import Action, ActionContext
from jobd.plugin.actioncheck import checked_actions
from jobd.plugin.discovery import describe_exception, load_module_from_file

__all__ = ["context_data", "run_isolated"]

# (method name, event dict) of each log call made in the worker.
LogRecord = tuple[str, dict[str, Any]]
Outcome = tuple[dict[str, Any] | None, BaseException | None, list[LogRecord]]

# anyio's default process limiter allows one worker per CPU, so on a small
# machine isolated steps would queue for a slot inside their own timeout. The
# number of steps running at once is already bounded by the daemon's workers.
_MAX_PROCESSES = 64
_limiter: RunVar[anyio.CapacityLimiter] = RunVar("jobd_isolation_limiter")

# Worker side: the (mtime, size) each plugin file had when it was loaded, so
# that a long-lived worker notices a drop-in edited since.
_loaded_files: dict[str, tuple[int, int]] = {}


def context_data(ctx: ActionContext) -> dict[str, Any]:
    """The picklable part of ``ctx`` that :func:`run_isolated` needs as ``ctx_data``."""
    return {
        "job_id": ctx.job_id,
        "job": dict(ctx.job),
        "step": ctx.step,
        "attempt": ctx.attempt,
        "outputs": {name: None if out is None else dict(out) for name, out in ctx.outputs.items()},
        "assets": list(ctx.assets),
        "resources": list(ctx.resources),
        "workdir": str(ctx.workdir),
        "kill_grace": ctx.kill_grace,
        "file_roots": [str(root) for root in ctx.file_roots],
    }


async def run_isolated(
    action_name: str,
    plugin_file: str | None,
    module_name: str,
    params: dict[str, Any],
    ctx_data: dict[str, Any],
    *,
    log: Any = None,
) -> dict[str, Any] | None:
    """Run action ``action_name`` in a worker process and return its outputs.

    ``plugin_file``/``module_name`` say where the worker finds the plugin
    (see :meth:`jobd.plugin.host.PluginHost.isolation_target`); ``ctx_data`` is
    what :func:`context_data` returns (missing keys get empty defaults).
    ``params`` and ``ctx_data`` must be picklable. The action's log lines are
    replayed into ``log`` (default: the ``jobd.run.isolation`` logger).

    Returns the action's outputs (``dict`` or ``None``). Raises what the action
    raised (an exception that cannot cross the process boundary becomes an
    :class:`~jobd.core.errors.ActionError` with its type and message); a missing
    plugin or action raises too; a worker that dies (a crash, ``os._exit``)
    raises ``anyio.BrokenWorkerProcess``. Cancellation kills the worker process.
    """
    outputs, error, records = await anyio.to_process.run_sync(
        _entry,
        action_name,
        plugin_file,
        module_name,
        params,
        ctx_data,
        cancellable=True,
        limiter=_process_limiter(),
    )
    _replay(records, log if log is not None else structlog.get_logger("jobd.isolation"))
    if error is not None:
        raise error
    return outputs


def _process_limiter() -> anyio.CapacityLimiter:
    try:
        return _limiter.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(_MAX_PROCESSES)
        _limiter.set(limiter)
        return limiter


def _replay(records: list[LogRecord], log: Any) -> None:
    for method, event_dict in records:
        event = event_dict.pop("event", "")
        getattr(log, method, log.info)(event, **event_dict)


# --------------------------------------------------------------------------- worker side


def _entry(
    action_name: str,
    plugin_file: str | None,
    module_name: str,
    params: dict[str, Any],
    ctx_data: dict[str, Any],
) -> Outcome:
    """Runs in the worker: never raises, so that log records come back with a failure."""
    records: list[LogRecord] = []
    try:
        action = _find_action(_import_plugin(plugin_file, module_name), action_name)
        ctx = _context(ctx_data, params, _recording_logger(records))
        outputs = _checked_outputs(action_name, asyncio.run(_run(action, ctx, params)))
        return outputs, None, records
    except (Exception, SystemExit) as exc:  # SystemExit would end the pool worker itself
        return None, _portable(exc), records


async def _run(action: Action, ctx: ActionContext, params: dict[str, Any]) -> Any:
    return await action.run(ctx, **params)


def _import_plugin(plugin_file: str | None, module_name: str) -> ModuleType:
    if plugin_file is None:
        return importlib.import_module(module_name)
    stat = os.stat(plugin_file)
    stamp = (stat.st_mtime_ns, stat.st_size)
    module = sys.modules.get(module_name)
    if module is None or _loaded_files.get(plugin_file) != stamp:
        module = load_module_from_file(Path(plugin_file), module_name)
        _loaded_files[plugin_file] = stamp
    return module


def _find_action(module: ModuleType, name: str) -> Action:
    offer = getattr(module, "jobd_actions", None)
    if not callable(offer):
        raise LookupError(f"{module.__name__} has no module-level jobd_actions()")
    for action in checked_actions(offer()):
        if action.name == name:
            return action
    raise LookupError(f"{module.__name__} offers no action {name!r}")


def _context(ctx_data: Mapping[str, Any], params: dict[str, Any], log: Any) -> ActionContext:
    return ActionContext(
        job_id=ctx_data.get("job_id", 0),
        job=ctx_data.get("job", {}),
        step=ctx_data.get("step", ""),
        attempt=ctx_data.get("attempt", 1),
        params=params,
        outputs=ctx_data.get("outputs", {}),
        assets=ctx_data.get("assets", ()),
        resources=ctx_data.get("resources", ()),
        workdir=Path(ctx_data.get("workdir", ".")),
        log=log,
        kill_grace=ctx_data.get("kill_grace", 10.0),
        file_roots=[Path(root) for root in ctx_data.get("file_roots", ())],
    )


def _recording_logger(records: list[LogRecord]) -> Any:
    """A structlog logger that keeps each event (with plain values) in ``records``."""

    def record(_logger: Any, method: str, event_dict: Any) -> Any:
        records.append((method, {key: _plain(value) for key, value in event_dict.items()}))
        raise structlog.DropEvent

    return structlog.wrap_logger(
        structlog.ReturnLogger(), processors=[structlog.processors.format_exc_info, record]
    )


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def _checked_outputs(action_name: str, outputs: object) -> dict[str, Any] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, Mapping):
        raise ActionError(
            f"action {action_name!r} returned {type(outputs).__name__}, not a dict or None"
        )
    result = dict(outputs)
    try:
        pickle.dumps(result)  # fail here with a clear message rather than inside anyio
    except Exception as exc:
        raise ActionError(
            f"action {action_name!r} returned outputs that cannot be sent "
            f"back from the worker: {describe_exception(exc)}"
        ) from exc
    return result


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling both ways, else an ActionError saying what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        pass
    else:
        return exc
    if isinstance(exc, JobdError):
        try:
            return ActionError(exc.message, pickle.loads(pickle.dumps(exc.details)))
        except Exception:
            return ActionError(exc.message)
    return ActionError(describe_exception(exc))
