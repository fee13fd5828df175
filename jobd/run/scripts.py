"""Workflow start and end scripts (SPEC §3, "Scripts are executables ...").

A script is an executable run without a shell: argv ``[script]``, the job as
JSON on stdin, ``JOBD_*`` variables in its environment, its output lines in
the job's log, a timeout after which its whole process group is stopped.
:func:`run_script` never raises for a script that is missing, cannot run,
fails or times out: it reports that in a :class:`ScriptResult`, because the
caller decides what a failure means (a failed start script fails the job; a
failed end script only sets the error overlay). Cancellation still propagates.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from jobd.plugin.processes import ProcessResult, ProcessStartError, run_process

__all__ = ["ScriptResult", "run_script", "script_env"]

ScriptEvent = Literal["start", "end"]

# How much output a ScriptResult keeps: enough to explain a failure in
# ``jobd show``; the whole output is in the job's log anyway.
_OUTPUT_TAIL_CHARS = 4096


@dataclass(frozen=True, slots=True)
class ScriptResult:
    """How a script run ended.

    ``exit_code`` is ``None`` when the script never ran (then ``error`` says
    why); negative when a signal ended it. ``output_tail`` is the end of its
    stdout followed by the end of its stderr (at most a few KiB).
    """

    exit_code: int | None
    timed_out: bool
    output_tail: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    @property
    def problem(self) -> str | None:
        """One line for an error overlay or a log: ``None`` when :attr:`ok`."""
        if self.ok:
            return None
        if self.error is not None:
            return self.error
        if self.timed_out:
            return "timed out"
        last = _last_line(self.output_tail)
        return f"exited with {self.exit_code}" + (f": {last}" if last else "")


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def _iso(value: Any) -> str:
    """POSIX seconds, a datetime or an ISO string -> ISO 8601 UTC; None -> ''.

    A time without a zone is taken as UTC: the API refuses those on input, and
    formatting an environment variable is no reason to fail a job's script.
    """
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    else:
        moment = datetime.fromtimestamp(float(value), UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def _joined(items: Iterable[Any] | None) -> str:
    # Keep the first occurrence only: two reservations on one resource
    # (preroll and window) still name it once.
    return ",".join(dict.fromkeys(str(item) for item in items or ()))


def _resources(job: Mapping[str, Any]) -> str:
    reservations = job.get("reservations") or []
    if reservations:
        return _joined(r["resource"] for r in reservations if r.get("resource"))
    return _joined(job.get("resources"))


def script_env(job: Mapping[str, Any], event: ScriptEvent, outcome: str | None) -> dict[str, str]:
    """The ``JOBD_*`` variables a script gets (on top of jobd's own environment).

    ``JOBD_START_AT``/``JOBD_END_AT`` are ISO 8601 in UTC (``+00:00``), empty
    when the job has none; ``JOBD_ASSETS``, ``JOBD_SHARED_ASSETS`` and
    ``JOBD_RESOURCES`` are comma-separated. ``JOBD_OUTCOME`` (the job's final
    state) is set for the end script only.
    """
    env = {
        "JOBD_JOB_ID": str(job.get("id", "")),
        "JOBD_JOB_NAME": str(job.get("name") or ""),
        "JOBD_WORKFLOW": str(job.get("workflow") or ""),
        "JOBD_EVENT": event,
        "JOBD_START_AT": _iso(job.get("start_at")),
        "JOBD_END_AT": _iso(job.get("end_at")),
        "JOBD_ASSETS": _joined(job.get("assets")),
        "JOBD_SHARED_ASSETS": _joined(job.get("shared_assets")),
        "JOBD_RESOURCES": _resources(job),
    }
    if event == "end":
        env["JOBD_OUTCOME"] = outcome or ""
    return env


def _unrunnable(path: Path) -> str | None:
    """Why ``path`` cannot be executed, or ``None`` if it looks runnable."""
    if not path.exists():
        return f"script {path} not found"
    if not path.is_file():
        return f"script {path} is not a regular file"
    if not os.access(path, os.X_OK):
        return f"script {path} is not executable"
    return None


def _tail(stdout: str, stderr: str) -> str:
    both = "\n".join(part.rstrip("\n") for part in (stdout, stderr) if part)
    return both[-_OUTPUT_TAIL_CHARS:]


async def run_script(
    path: Path,
    *,
    event: ScriptEvent,
    job: Mapping[str, Any],
    outcome: str | None,
    timeout: float,  # noqa: ASYNC109 - a timeout is a reported result, not a cancel
    kill_grace: float,
    log: Any,
    cwd: Path | None = None,
) -> ScriptResult:
    """Run the workflow's ``event`` script for ``job`` and report how it went.

    ``job`` is the job as the API returns it (JSON-able); it is written to the
    script's stdin as JSON. The environment is jobd's plus :func:`script_env`.
    Each output line is logged as ``log.info("script output", script=...,
    script_event=..., stream=..., line=...)`` (``script_event`` rather than
    ``event``, which structlog reserves for the message). After ``timeout``
    seconds the script's process group gets SIGTERM, then SIGKILL after
    ``kill_grace``. A relative ``path`` is taken relative to ``cwd`` (or
    jobd's working directory), never looked up in ``PATH``.

    Never raises for a missing, unrunnable, failing or timed-out script;
    cancellation propagates (after the script's group is stopped).
    """
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    fields = {"script": str(path), "script_event": event}
    problem = _unrunnable(path)
    if problem is None:
        try:
            result = await run_process(
                [str(path)],
                env=script_env(job, event, outcome),
                cwd=cwd,
                stdin=json.dumps(job, default=str).encode(),
                kill_grace=kill_grace,
                log=log,
                check=False,
                timeout=timeout,
                log_event="script output",
                log_fields=fields,
            )
        except ProcessStartError as exc:
            problem = f"script {path} cannot be run: {exc.details['reason']}"
    if problem is not None:
        log.warning("script not run", **fields, error=problem)
        return ScriptResult(exit_code=None, timed_out=False, output_tail="", error=problem)
    return _finished(result, fields, log)


def _finished(result: ProcessResult, fields: Mapping[str, str], log: Any) -> ScriptResult:
    """How a script that ran went, logged as ``script finished``."""
    outcome_of_run = ScriptResult(
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        output_tail=_tail(result.stdout, result.stderr),
        error=None,
    )
    log.info(
        "script finished",
        **fields,
        exit_code=result.exit_code,
        timed_out=result.timed_out,
        ok=outcome_of_run.ok,
    )
    return outcome_of_run
