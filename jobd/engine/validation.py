"""What a submission or an edit must satisfy before anything is held or written: the spec's
bounds, the workflow, the names of resources and pools; the steps it makes (templated)."""

from __future__ import annotations

from jobd.config import Config, WorkflowConfig
from jobd.core.errors import ValidationError
from jobd.core.models import LATEST_TIME, MAX_DURATION, PRIORITY_MAX, PRIORITY_MIN, JobSpec, Step
from jobd.core.templating import render
from jobd.plugin.host import PluginHost


def workflow_of(config: Config, name: str) -> WorkflowConfig:
    workflow = config.workflows.get(name)
    if workflow is None:
        known = ", ".join(sorted(config.workflows)) or "none"
        raise ValidationError(f"unknown workflow {name!r} (configured: {known})", field="workflow")
    return workflow


def validate_spec(spec: JobSpec, config: Config) -> None:
    """Raise ValidationError naming every problem of ``spec`` (then unknown booking names)."""
    problems = [*_shape_problems(spec), *_bound_problems(spec)]
    if problems:
        raise ValidationError(problems)
    if spec.resources or spec.pools:  # (nothing named, nothing to check)
        check_booking_names(spec, config)


def _shape_problems(spec: JobSpec) -> list[str]:
    problems = []
    if not PRIORITY_MIN <= spec.priority <= PRIORITY_MAX:
        problems.append(f"priority {spec.priority} is outside {PRIORITY_MIN}..{PRIORITY_MAX}")
    if spec.end_at is not None and spec.start_at is None:
        problems.append("end_at needs start_at")
    if spec.end_at is not None and spec.start_at is not None and spec.end_at < spec.start_at:
        problems.append("end_at is before start_at")
    if (spec.resources or spec.pools) and spec.start_at is None:
        problems.append("booking resources or pools needs start_at (and end_at)")
    return problems


def _bound_problems(spec: JobSpec) -> list[str]:
    problems = []
    # The values read once each, by name (getattr in a loop was a fifth of a submission's
    # checks); the messages keep the order of the fields.
    for name, value in (("preroll", spec.preroll), ("postroll", spec.postroll)):
        if not 0 <= value <= MAX_DURATION:
            problems.append(f"{name} must be between 0 and {MAX_DURATION:.0f} s, got {value}")
    for name, limit in (("timeout", spec.timeout), ("lock_timeout", spec.lock_timeout)):
        if limit is not None and not 0 < limit <= MAX_DURATION:
            problems.append(f"{name} must be > 0 and at most {MAX_DURATION:.0f} s, got {limit}")
    for name, at in (("start_at", spec.start_at), ("end_at", spec.end_at)):
        if at is not None and not 0 <= at <= LATEST_TIME:
            problems.append(f"{name} must lie between 1970 and 9000")
    for asset in (*spec.assets, *spec.shared_assets):
        if not isinstance(asset, str) or not asset:
            problems.append(f"asset names must be non-empty strings, got {asset!r}")
    return problems


def check_booking_names(spec: JobSpec, config: Config) -> None:
    """Refuse resources and pools the config does not know, in every state (a draft
    books nothing, but naming nothing real is a mistake now, not at confirm time)."""
    for field, names, known in (
        ("resources", spec.resources, config.resources),
        ("pools", spec.pools, config.pools),
    ):
        unknown = [name for name in names if name not in known]
        if unknown:
            kind = field.rstrip("s")
            raise ValidationError(
                [f"unknown {kind} {name!r}" for name in unknown]
                + [f"configured {field}: {', '.join(sorted(known)) or 'none'}"],
                field=field,
            )


def build_steps(
    workflow: WorkflowConfig, spec: JobSpec, config: Config, plugins: PluginHost
) -> list[Step]:
    """The job's steps from its workflow, params templated with the spec's (job id 0)."""
    defaults = config.defaults
    steps = []
    for idx, sc in enumerate(workflow.steps):
        if plugins.action(sc.action) is None:
            raise ValidationError(
                f"workflow {workflow.name!r} step {sc.name!r} uses unknown action "
                f"{sc.action!r} (loaded: {', '.join(sorted(plugins.actions)) or 'none'})",
                field="workflow",
            )
        params = render(sc.params, spec.params, where=f"steps.{sc.name}.params")
        steps.append(
            Step(
                job_id=0,
                idx=idx,
                name=sc.name,
                action=sc.action,
                params=params,
                timeout=sc.timeout if sc.timeout is not None else defaults.timeout,
                retries=sc.retries if sc.retries is not None else defaults.retries,
                retry_backoff=(
                    sc.retry_backoff if sc.retry_backoff is not None else defaults.retry_backoff
                ),
                isolation=sc.isolation,
            )
        )
    return steps
