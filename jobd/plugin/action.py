"""What a plugin author writes against: :class:`Action` and :class:`ActionContext`.

An action is ``async def run(ctx: ActionContext, **params) -> dict | None``.
It returns its outputs (a dict that must be JSON-serialisable) or ``None``;
raising any exception fails the attempt (raise :class:`jobd.core.errors.ActionError`
for a clean one-line message). Blocking code belongs in ``anyio.to_thread``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from jobd.core.templating import placeholders

if TYPE_CHECKING:
    from jobd.plugin.processes import ProcessResult

ActionFunc = Callable[..., Awaitable[Mapping[str, Any] | None]]

#: The types a :class:`Param` may declare (see :meth:`Param.problem`).
ParamType = Literal["string", "number", "integer", "boolean", "list", "list[string]", "map", "any"]
PARAM_TYPES: tuple[str, ...] = get_args(ParamType)
#: A string that is one placeholder and nothing else (it takes the job param's value as is).
_WHOLE_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.-]*\}")
_CONTAINERS = ("list", "list[string]", "map")


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter an :class:`Action` declares: ``jobd check-config`` and every reload
    check each step's ``params`` against the declarations of its action.

    ``type`` is one of :data:`PARAM_TYPES`; ``required`` params must be given;
    ``choices``, when set, lists the allowed values (strings compared without
    regard to case); ``description`` shows in ``jobd plugins``.
    """

    name: str
    type: ParamType = "any"
    required: bool = False
    choices: tuple[Any, ...] = ()
    description: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this param in a step's ``params``, or ``None``.

        A ``"{placeholder}"`` is filled from the job's params at submission, so
        its final value is not known here: a string holding a placeholder passes
        for ``number``, ``integer`` and ``boolean`` (and for ``choices``), and
        a string that is exactly one placeholder (which takes the job param's
        value as it is, a list included) passes for ``list``, ``list[string]``
        and ``map``. The action checks the filled-in value when the step runs.
        """
        if isinstance(value, str) and placeholders(value):
            whole = _WHOLE_PLACEHOLDER.fullmatch(value) is not None
            if self.type not in _CONTAINERS or whole:
                return None
        if not _is_type(value, self.type):
            return f"expected {_TYPE_WORDS[self.type]}, got {_show(value)}"
        if self.choices and not _is_choice(value, self.choices):
            listed = ", ".join(repr(c) for c in self.choices)
            return f"expected one of {listed}, got {_show(value)}"
        return None


_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "list": "an array",
    "list[string]": "an array of strings",
    "map": "a table",
    "any": "any value",
}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if kind == "map":
        return isinstance(value, dict)
    if not isinstance(value, list):
        return False
    return kind == "list" or all(isinstance(item, str) for item in value)


def _is_choice(value: Any, choices: tuple[Any, ...]) -> bool:
    if isinstance(value, str):
        return value.lower() in {c.lower() for c in choices if isinstance(c, str)}
    return value in choices


def _show(value: Any) -> str:
    """A value as a config error shows it (TOML spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


@dataclass(frozen=True, slots=True)
class Action:
    """An action a plugin contributes through ``jobd_actions()``.

    ``name`` is what workflow steps refer to in ``action = "..."``;
    ``run`` is the coroutine function; ``description`` shows in ``jobd plugins``.
    ``params``: the parameters ``run`` takes, as :class:`Param` declarations;
    when given, a step's ``params`` are checked against them (unknown names,
    missing required ones, wrong types) by ``jobd check-config`` and every
    reload. ``None`` (the default) declares nothing and checks nothing.
    """

    name: str
    run: ActionFunc
    description: str = ""
    params: tuple[Param, ...] | None = None


ProgressCallback = Callable[[float, str | None], Awaitable[None]]
PgidCallback = Callable[[int | None], Awaitable[None]]


class ActionContext:
    """Everything an action may know and do while it runs one attempt of one step."""

    def __init__(
        self,
        *,
        job_id: int,
        job: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        step: str,
        attempt: int,
        params: Mapping[str, Any],
        outputs: Mapping[str, Mapping[str, Any] | None],
        assets: Sequence[str],
        resources: Sequence[str],
        workdir: Path | Callable[[], Path],
        log: Any | Callable[[], Any],
        kill_grace: float,
        file_roots: Sequence[Path] = (),
        progress_cb: ProgressCallback | None = None,
        pgid_cb: PgidCallback | None = None,
    ) -> None:
        self.job_id = job_id
        # Built on first use: most actions never look at the whole job or log a line.
        self._job_source = job
        self._job: Mapping[str, Any] | None = None
        self._log_source = log
        self._log: Any = None
        self.step = step
        self.attempt = attempt
        self.params: Mapping[str, Any] = MappingProxyType(dict(params))
        self.outputs: Mapping[str, Mapping[str, Any] | None] = MappingProxyType(dict(outputs))
        self.assets = tuple(assets)
        self.resources = tuple(resources)
        self._workdir = workdir
        self.kill_grace = kill_grace
        self.file_roots = tuple(file_roots)
        self._progress_cb = progress_cb
        self._pgid_cb = pgid_cb

    @property
    def job(self) -> Mapping[str, Any]:
        """The job as the API shows it (read-only)."""
        if self._job is None:
            source = self._job_source
            self._job = MappingProxyType(dict(source() if callable(source) else source))
        return self._job

    @property
    def log(self) -> Any:
        """A structlog logger bound to the job and step; its lines go to the job's log."""
        if self._log is None:
            source = self._log_source
            self._log = source() if callable(source) and not hasattr(source, "info") else source
        return self._log

    @property
    def workdir(self) -> Path:
        """A per-job directory, created on first use (most steps never need one)."""
        if callable(self._workdir):
            self._workdir = self._workdir()
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir

    async def progress(self, pct: float, message: str | None = None) -> None:
        """Record progress (0–100) on the job; visible in ``jobd show`` and the API."""
        if self._progress_cb is not None:
            await self._progress_cb(max(0.0, min(100.0, float(pct))), message)

    async def run_process(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: bytes | None = None,
        check: bool = True,
    ) -> ProcessResult:
        """Run ``argv`` (no shell) in its own process group.

        The step's timeout or a cancel sends SIGTERM to the whole group, then
        SIGKILL after ``kill_grace`` seconds, so no grandchild survives. Output
        lines go to the job's log. With ``check`` a non-zero exit raises
        :class:`jobd.core.errors.ActionError`.
        """
        from jobd.plugin.processes import run_process

        return await run_process(
            argv,
            env=env,
            cwd=cwd if cwd is not None else self.workdir,
            stdin=stdin,
            kill_grace=self.kill_grace,
            log=self.log,
            on_pgid=self._pgid_cb,
            check=check,
        )
