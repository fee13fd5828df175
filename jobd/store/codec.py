"""How records become text in a database, the same for every backend.

A job's spec is stored as compact JSON that leaves out the fields at their
defaults; the field lists come from :data:`jobd.core.models.SPEC_FIELDS`, so a
field added to :class:`~jobd.core.models.JobSpec` is stored without a change here.
"""

from __future__ import annotations

import json
from typing import Any

from jobd.core.jsontext import dumps_text
from jobd.core.models import SPEC_FIELDS, ErrorOverlay, Job, JobSpec, Step
from jobd.core.states import JobState

#: Built once: json.dumps with any option builds a new encoder on every call.
_COMPACT = json.JSONEncoder(separators=(",", ":"), default=str)

#: JobSpec fields written only when set: those whose default is None (0.0 is a value) ...
_NONE_DEFAULT = tuple(n for n in SPEC_FIELDS.names if n in SPEC_FIELDS.nullable)
#: ... and those whose default is empty or zero (``workflow`` and ``state`` always go in).
_EMPTY_DEFAULT = tuple(
    n for n in SPEC_FIELDS.names if n not in SPEC_FIELDS.nullable and n not in ("workflow", "state")
)
_LISTS = frozenset(SPEC_FIELDS.lists)


def dumps(value: Any) -> str | None:
    """Compact JSON, ``None`` for ``None``."""
    return None if value is None else _COMPACT.encode(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def error_to_json(error: ErrorOverlay | None) -> str | None:
    return None if error is None else _COMPACT.encode(error.to_dict())


def error_from_json(text: str | None) -> ErrorOverlay | None:
    if text is None:
        return None
    err = json.loads(text)
    return ErrorOverlay(err["code"], err["message"], err["at"])


def spec_to_json(spec: JobSpec) -> str:
    """The spec without the fields left at their defaults (``spec_from_json`` puts them
    back): a third of the JSON to build for a typical job, on the path of every submit;
    encoded by orjson (:func:`~jobd.core.jsontext.dumps_text`)."""
    data: dict[str, Any] = {"workflow": spec.workflow, "state": str(spec.state)}
    for key in _NONE_DEFAULT:
        if (value := getattr(spec, key)) is not None:
            data[key] = value
    for key in _EMPTY_DEFAULT:
        if value := getattr(spec, key):
            data[key] = list(value) if type(value) is tuple else value
    return dumps_text(data)


def spec_from_json(text: str) -> JobSpec:
    """The spec ``spec_to_json`` wrote (or an older, complete one: nulls and lists)."""
    d = json.loads(text)
    for key in _LISTS:
        if key in d:
            d[key] = tuple(d[key] or ())
    d["state"] = JobState(d.get("state") or "confirmed")
    if d.get("params") is None:
        d.pop("params", None)
    return JobSpec(**d)


def job_row(job: Job) -> tuple[Any, ...]:
    """A job as the ``jobs`` table's columns, in the order both stores' ``insert_job``
    statements name them: id, name, workflow, state, spec, priority, start_at, end_at,
    due_at, error, schedule, created_at, updated_at."""
    s = job.spec
    return (
        job.id,
        s.name,
        s.workflow,
        str(job.state),
        spec_to_json(s),
        s.priority,
        s.start_at,
        s.end_at,
        job.due_at,
        error_to_json(job.error),
        s.schedule,
        job.created_at,
        job.updated_at,
    )


def redefine_row(job_id: int, spec: JobSpec, due_at: float) -> tuple[Any, ...]:
    """An edited job's new definition, in the order both stores' ``redefine_job``
    statements name it: spec, name, priority, start_at, end_at, due_at, then the id."""
    s = spec
    return (spec_to_json(s), s.name, s.priority, s.start_at, s.end_at, due_at, job_id)


def step_row(step: Step) -> tuple[Any, ...]:
    """A step as the ``steps`` table's columns, in the order both stores' ``insert_step``
    statements name them: job_id, idx, name, action, params, state, attempts, started_at,
    ended_at, outputs, error, timeout, retries, retry_backoff, isolation, pgid."""
    return (
        step.job_id,
        step.idx,
        step.name,
        step.action,
        dumps_text(step.params),
        str(step.state),
        step.attempts,
        step.started_at,
        step.ended_at,
        dumps(step.outputs),
        step.error,
        step.timeout,
        step.retries,
        step.retry_backoff,
        step.isolation,
        step.pgid,
    )


def step_record_row(step: Step) -> tuple[Any, ...]:
    """A step's run so far, in the order both stores' ``record_step`` statements name it:
    state, attempts, started_at, ended_at, outputs, error, pgid, then job_id and idx."""
    return (
        str(step.state),
        step.attempts,
        step.started_at,
        step.ended_at,
        dumps(step.outputs),
        step.error,
        step.pgid,
        step.job_id,
        step.idx,
    )
