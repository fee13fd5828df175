"""The request bodies (pydantic models) and what the engine gets from them: a
:class:`~jobd.core.models.JobSpec`, a PATCH's changes, a list filter.

The bodies' fields come from the one definition of the JobSpec's
(:data:`~jobd.core.models.SPEC_FIELDS`, as tests/test_spec_fields.py checks).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobd.core.errors import ValidationError
from jobd.core.models import PRIORITY_MAX, PRIORITY_MIN, SPEC_FIELDS, JobSpec
from jobd.core.states import JobState
from jobd.core.timefmt import parse_time
from jobd.service.api.limits import MAX_ID
from jobd.store import JobFilter

_Name = Annotated[str, Field(min_length=1, max_length=200)]
_Key = Annotated[str, Field(min_length=1, max_length=1000)]
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_Priority = Annotated[int, Field(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
_Time = Annotated[str, Field(min_length=1, max_length=100)]


class _Body(BaseModel):
    """Shared rules: unknown fields refused, no type coercion ("5" is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("params", check_fields=False)
    @classmethod
    def _storable(cls, value: Any) -> Any:
        problem = _unstorable(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class SubmitBody(_Body):
    """``POST /v1/jobs``: a new job. Only ``workflow`` is required."""

    workflow: _Name
    name: _Name | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    assets: list[_Key] = Field(default_factory=list)
    shared_assets: list[_Key] = Field(default_factory=list)
    resources: list[_Key] = Field(default_factory=list)
    pools: list[_Key] = Field(default_factory=list)
    start_at: _Time | None = None
    end_at: _Time | None = None
    preroll: _Seconds = 0.0
    postroll: _Seconds = 0.0
    priority: _Priority = 0
    timeout: _Seconds | None = None
    lock_timeout: _Seconds | None = None
    state: Literal["draft", "tentative", "confirmed"] = "confirmed"


class EditBody(_Body):
    """``PATCH /v1/jobs/{id}``: only the fields sent change; ``null`` clears a nullable one."""

    name: _Name | None = None
    params: dict[str, Any] | None = None
    assets: list[_Key] | None = None
    shared_assets: list[_Key] | None = None
    resources: list[_Key] | None = None
    pools: list[_Key] | None = None
    start_at: _Time | None = None
    end_at: _Time | None = None
    preroll: _Seconds | None = None
    postroll: _Seconds | None = None
    priority: _Priority | None = None
    timeout: _Seconds | None = None
    lock_timeout: _Seconds | None = None


class BatchJobsBody(_Body):
    """``POST /v1/batch/jobs``: up to :data:`MAX_BATCH` submit bodies, stored all or none."""

    jobs: list[SubmitBody]


_Search = Annotated[str, Field(min_length=1, max_length=200)]


class FilterBody(_Body):
    """The list filters of ``GET /v1/jobs`` as an object (``POST /v1/batch/{operation}``)."""

    state: list[str] | None = None
    workflow: _Name | None = None
    asset: _Key | None = None
    resource: _Key | None = None
    since: _Time | None = None
    until: _Time | None = None
    search: _Search | None = None


class BatchOperationBody(_Body):
    """``POST /v1/batch/{operation}``: the jobs by ``ids`` (up to 10,000) or by ``filter``."""

    ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] | None = None
    filter: FilterBody | None = None


#: The bodies' fields by kind, from the one definition of the JobSpec's (``SubmitBody``
#: has every spec field but ``schedule``, ``EditBody`` the editable ones, as
#: tests/test_spec_fields.py checks). PATCH fields that may be
#: set to null are those whose JobSpec default is None.
_NULLABLE = SPEC_FIELDS.nullable & SPEC_FIELDS.editable
_TIME_FIELDS = SPEC_FIELDS.times
_LIST_FIELDS = SPEC_FIELDS.lists


def _unstorable(value: Any) -> str | None:
    """Why ``value`` could not be stored and sent back as JSON, or None.

    ``json.loads`` accepts NaN/Infinity and lone surrogates (``"\\ud800"``),
    which SQLite's UTF-8 and strict JSON output then choke on, far from the
    request. Iterative, so deep nesting cannot overflow the stack here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return "NaN and Infinity are not JSON numbers"
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "text contains an unpaired surrogate (invalid UTF-8)"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def field_time(field: str, text: str | None) -> float | None:
    """Parse one time field, naming the field in the error."""
    if text is None:
        return None
    try:
        return parse_time(text)
    except ValidationError as exc:
        raise ValidationError(f"{field}: {exc.message}", field=field) from None


#: Submit-body fields copied as they are (the others are parsed: times, lists, state).
_PLAIN_FIELDS = tuple(
    f for f in SubmitBody.model_fields if f not in (*_TIME_FIELDS, *_LIST_FIELDS, "state")
)


def spec_from(body: SubmitBody) -> JobSpec:
    """The JobSpec of a submit body: every body field, times parsed, lists as tuples."""
    values = body.__dict__  # pydantic keeps a model's field values here
    spec: dict[str, Any] = {field: values[field] for field in _PLAIN_FIELDS}
    for field in _LIST_FIELDS:
        spec[field] = tuple(values[field])
    for field in _TIME_FIELDS:
        spec[field] = field_time(field, values[field])
    return JobSpec(state=JobState(body.state), **spec)


def changes_from(body: EditBody) -> dict[str, Any]:
    """The JobSpec fields a PATCH sets, with times as POSIX floats and lists as tuples."""
    changes: dict[str, Any] = {}
    for field in sorted(body.model_fields_set):
        value = getattr(body, field)
        if value is None and field not in _NULLABLE:
            raise ValidationError(f"{field}: may not be null", field=field)
        if field in _TIME_FIELDS:
            value = field_time(field, value)
        elif field in _LIST_FIELDS:
            value = tuple(value)
        changes[field] = value
    return changes


def _parse_states(values: list[str] | None) -> list[JobState] | None:
    """``?state=a&state=b`` or ``?state=a,b``; an unknown state is a 400 listing the valid ones."""
    if not values:
        return None
    states: list[JobState] = []
    for value in (v.strip() for raw in values for v in raw.split(",")):
        if not value:
            continue
        try:
            states.append(JobState(value))
        except ValueError:
            valid = ", ".join(s.value for s in JobState)
            raise ValidationError(
                f"state: unknown state {value!r} (one of: {valid})", field="state"
            ) from None
    return states or None


def job_filter(
    state: list[str] | None = None,
    workflow: str | None = None,
    asset: str | None = None,
    resource: str | None = None,
    since: str | None = None,
    until: str | None = None,
    search: str | None = None,
    *,
    where: str = "",
) -> JobFilter:
    """The one reading of the list filters, from the query or a batch body (``where``
    prefixes the names in errors: ``filter.``). Raises ValidationError naming the field."""
    try:
        states = _parse_states(state)
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc.message}", field=f"{where}state") from None
    lo = field_time(f"{where}since", since)
    hi = field_time(f"{where}until", until)
    if lo is not None and hi is not None and hi < lo:
        raise ValidationError(f"{where}until: must not be before since", field=f"{where}until")
    return JobFilter(tuple(states or ()), workflow, asset, resource, lo, hi, search)
