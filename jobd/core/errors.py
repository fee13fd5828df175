"""Every error jobd raises on purpose derives from :class:`JobdError`.

Each carries a stable ``code`` (what the API puts in ``error.code``), an HTTP
``status`` and ``details``; its message is built once, in ``__init__``, so a
log line, an API answer and a CLI message say the same thing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# Annotations only: the CLI imports this module, and typing costs its start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class JobdError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}

    def in_batch(self, index: int) -> JobdError:
        """This error made the refusal of job ``index`` of a batch (``POST /v1/batch/jobs``):
        the message prefixed ``jobs[index]: ``, ``details.index`` set and ``details.field``
        given its path in the body; class, code and status stay. Returns ``self``."""
        self.details["index"] = index
        if self.details.get("field"):
            self.details["field"] = f"jobs.{index}.{self.details['field']}"
        self.message = f"jobs[{index}]: {self.message}"
        self.args = (self.message,)
        return self


class ConfigError(JobdError):
    """A configuration file is wrong; names the file, the key path and the problem."""

    code = "config-error"

    def __init__(self, file: str | None, key: str | None, problem: str) -> None:
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(
            f"{where}: {problem}" if where else problem,
            {"file": file, "key": key, "problem": problem},
        )
        self.file, self.key, self.problem = file, key, problem


class ConfigErrors(ConfigError):
    """Several configuration problems found at once (``check-config``, start, reload).

    Its message is one problem per line; ``errors`` holds each :class:`ConfigError`;
    ``file``/``key``/``problem`` are the first one's.
    """

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = list(errors)
        first = self.errors[0]
        JobdError.__init__(
            self,
            "\n".join(error.message for error in self.errors),
            {**first.details, "problems": [error.details for error in self.errors]},
        )
        self.file, self.key, self.problem = first.file, first.key, first.problem


class ValidationError(JobdError):
    """A job spec or request body is wrong (HTTP 400)."""

    code = "invalid"

    def __init__(self, problems: str | Iterable[str], field: str | None = None) -> None:
        items = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(items), {"problems": items, "field": field})
        self.problems = items


class NotFound(JobdError):
    code = "not-found"
    status = 404

    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} not found", {"what": what, "id": ident})


class InvalidTransition(JobdError):
    """An operation is not allowed in the job's current state (HTTP 409, CLI exit 1)."""

    code = "invalid-transition"
    status = 409

    def __init__(
        self,
        operation: str,
        state: str,
        allowed: list[str],
        *,
        target: str | None = None,
        unknown: bool = False,
        job_id: int | None = None,
    ) -> None:
        allowed_text = ", ".join(allowed) if allowed else "none"
        if unknown:
            message = f"unknown operation {operation!r}"
        elif target is not None:
            message = f"{operation} cannot lead from {state} to {target}"
        else:
            message = f"cannot {operation} a job in state {state}"
        if job_id is not None:
            message = f"job {job_id}: {message}"
        message += f" (allowed in {state}: {allowed_text})"
        super().__init__(
            message,
            {"operation": operation, "state": str(state), "allowed": allowed, "job_id": job_id},
        )
        self.operation, self.state, self.allowed = operation, state, allowed


class NotApplicable(JobdError):
    """The operation is allowed in this state but means nothing for this job (HTTP 409)."""

    code = "not-applicable"
    status = 409


class BookingConflict(JobdError):
    """A reservation overlaps others beyond a resource's capacity (HTTP 409)."""

    code = "booking-conflict"
    status = 409

    def __init__(self, resource: str, start: str, end: str, job_ids: list[int]) -> None:
        jobs = ", ".join(str(j) for j in job_ids) or "none"
        super().__init__(
            f"resource {resource} is fully booked between {start} and {end} (by jobs {jobs})",
            {"resource": resource, "start": start, "end": end, "conflicting_jobs": job_ids},
        )
        self.resource, self.job_ids = resource, job_ids


class PluginError(JobdError):
    """A plugin could not be loaded or is misbehaving; names the plugin and its file."""

    code = "plugin-error"

    def __init__(self, plugin: str, file: str | None, problem: str) -> None:
        where = f"{plugin} ({file})" if file else plugin
        super().__init__(
            f"plugin {where}: {problem}", {"plugin": plugin, "file": file, "problem": problem}
        )


class ActionError(JobdError):
    """An action failed its attempt (raised by actions to fail cleanly with a message)."""

    code = "action-failed"


class StoreError(JobdError):
    """The database is unusable (locked by another daemon, newer schema, corrupt)."""

    code = "store-error"
    status = 500


class ShuttingDown(JobdError):
    code = "shutting-down"
    status = 503

    def __init__(self) -> None:
        super().__init__("jobd is shutting down")
