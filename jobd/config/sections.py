"""Validation section by section: each section's checkers (one per field of its record,
:func:`jobd.config.checks.checkers_for`) and :func:`build`, the merged tree → :class:`Config`.

A new key goes in two places: its field in :mod:`jobd.config.records` and its checker
in the section's table here (the import-time assertion of ``checkers_for`` fails if
one is missing). Rules across keys or sections are :mod:`jobd.config.crosscheck`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from jobd.config import checks
from jobd.config.provenance import Context
from jobd.config.records import (
    ApiConfig,
    Config,
    DaemonConfig,
    Defaults,
    KeyPath,
    LoggingConfig,
    PoolConfig,
    ResourceConfig,
    ScheduleConfig,
    StepConfig,
    TokenConfig,
    WorkflowConfig,
)

T = TypeVar("T")

_DAEMON = checks.checkers_for(
    DaemonConfig,
    state_dir=checks.path,
    run_queue_size=checks.integer(1),
    workers=checks.integer(1),
    shutdown_grace=checks.seconds(allow_zero=True),
    kill_grace=checks.seconds(allow_zero=True),
    plugin_dirs=checks.paths,
    file_roots=checks.paths,
    synchronous=checks.choice("full", "normal"),
    database=checks.database,
    node=checks.name,
    lease=checks.lease,
    tags=checks.names(),
)
_TOKEN = checks.checkers_for(
    TokenConfig,
    name=checks.name,
    file=checks.path,
    role=checks.choice("viewer", "operator", "admin"),
)


def _tokens(value: Any, base: Path) -> tuple[TokenConfig, ...]:
    """``[[api.tokens]]``: each with ``name``, ``file`` and ``role``; names unique."""
    if not isinstance(value, list):
        raise checks.Bad(f"expected an array of tables ([[api.tokens]]), got {checks.show(value)}")
    built: list[TokenConfig] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise checks.Bad(f"expected a table, got {checks.show(item)}", (index,))
        for key in item:
            if key not in _TOKEN:
                raise checks.Bad(f"unknown key {key!r}{checks.suggest(key, _TOKEN)}", (index, key))
        for key in _TOKEN:
            if key not in item:
                raise checks.Bad(f"missing required key {key!r}", (index, key))
        values = {}
        for key, check in _TOKEN.items():
            try:
                values[key] = check(item[key], base)
            except checks.Bad as bad:
                raise checks.Bad(bad.problem, (index, key, *bad.at)) from None
        if any(t.name == values["name"] for t in built):
            raise checks.Bad(f"duplicate token name {values['name']!r}", (index, "name"))
        built.append(TokenConfig(**values))
    return tuple(built)


def _principals(value: Any, base: Path) -> tuple[str, ...]:
    """``[api] viewers/operators/admins``: user names and ``@group``s."""
    if not isinstance(value, list):
        raise checks.Bad(f'expected an array of user names and "@group"s, got {checks.show(value)}')
    items: list[str] = []
    for index, item in enumerate(value):
        try:
            text = checks.name(item, base)
            if text.startswith("@"):
                checks.name(text[1:] or " ", base)
        except checks.Bad:
            raise checks.Bad(
                f'expected a user name or "@group" (no blanks or commas), got {checks.show(item)}',
                (index,),
            ) from None
        items.append(text)
    return tuple(items)


_API = checks.checkers_for(
    ApiConfig,
    socket=checks.path,
    socket_mode=checks.octal_mode,
    listen=checks.listen,
    token_file=checks.path,
    tokens=_tokens,
    viewers=_principals,
    operators=_principals,
    admins=_principals,
)
_LOGGING = checks.checkers_for(
    LoggingConfig,
    format=checks.choice("json", "console", "auto"),
    level=checks.choice("debug", "info", "warning", "error", fold_case=True),
)
_DEFAULTS = checks.checkers_for(
    Defaults,
    timeout=checks.seconds(),
    retries=checks.integer(0),
    retry_backoff=checks.seconds(allow_zero=True),
    script_timeout=checks.seconds(),
)
_RESOURCE = checks.checkers_for(ResourceConfig, capacity=checks.integer(1))
_POOL = checks.checkers_for(PoolConfig, members=checks.names(non_empty=True))
_STEP = checks.checkers_for(
    StepConfig,
    name=checks.name,
    action=checks.text,
    params=checks.params,
    timeout=checks.seconds(),
    retries=checks.integer(0),
    retry_backoff=checks.seconds(allow_zero=True),
    isolation=checks.choice("inline", "process"),
)
_WORKFLOW = checks.checkers_for(
    WorkflowConfig,
    steps=lambda value, _base: value,  # checked item by item in _workflow
    start_script=checks.path,
    end_script=checks.path,
    script_timeout=checks.seconds(),
    requires=checks.names(),
)
_SCHEDULE = checks.checkers_for(
    ScheduleConfig,
    name=checks.name,
    workflow=checks.text,
    cron=checks.text,
    interval=checks.seconds(),
    timezone=checks.timezone,
    params=checks.params,
    assets=checks.names(),
    shared_assets=checks.names(),
    resources=checks.names(),
    pools=checks.names(),
    priority=checks.integer(-1000, 1000),
    timeout=checks.seconds(),
    overlap=checks.choice("skip", "queue", "allow"),
    misfire=checks.choice("skip", "once", "all"),
    misfire_grace=checks.seconds(allow_zero=True),
    enabled=checks.boolean,
)
_ROOT_KEYS = (
    "daemon",
    "api",
    "logging",
    "defaults",
    "resources",
    "pools",
    "workflows",
    "schedules",
)


def build(ctx: Context, merged: dict[str, Any], sources: tuple[Path, ...]) -> Config:
    """Validate each section of the merged tree into its dataclass."""
    checks.Table(ctx, (), merged, dict.fromkeys(_ROOT_KEYS, lambda v, _b: v))

    def section(key: str, allowed: Mapping[str, checks.Checker]) -> dict[str, Any]:
        return checks.Table(ctx, (key,), merged.get(key, {}), allowed).values()

    return Config(
        daemon=DaemonConfig(**section("daemon", _DAEMON)),
        api=ApiConfig(**section("api", _API)),
        logging=LoggingConfig(**section("logging", _LOGGING)),
        defaults=Defaults(**section("defaults", _DEFAULTS)),
        resources=_named(
            ctx, merged, "resources", lambda t, n: ResourceConfig(name=n, **t.values())
        ),
        pools=_named(ctx, merged, "pools", _pool),
        workflows=_named(ctx, merged, "workflows", _workflow),
        schedules=_schedules(ctx, merged.get("schedules", [])),
        sources=sources,
    )


_SECTION_CHECKERS: dict[str, Mapping[str, checks.Checker]] = {
    "resources": _RESOURCE,
    "pools": _POOL,
    "workflows": _WORKFLOW,
}


def _named(
    ctx: Context,
    merged: dict[str, Any],
    key: str,
    make: Callable[[checks.Table, str], T],
) -> dict[str, T]:
    """A table of named tables (``[resources.X]``, ``[pools.X]``, ``[workflows.X]``)."""
    container = merged.get(key, {})
    if not isinstance(container, dict):
        raise ctx.error((key,), f"expected a table, got {checks.show(container)}")
    built: dict[str, T] = {}
    for name, data in container.items():
        path = (key, name)
        try:
            checks.name(name, Path())
        except checks.Bad as bad:
            raise ctx.error(path, bad.problem) from None
        built[name] = make(checks.Table(ctx, path, data, _SECTION_CHECKERS[key]), name)
    return built


def _pool(table: checks.Table, name: str) -> PoolConfig:
    return PoolConfig(name=name, **table.values(required=["members"]))


def _workflow(table: checks.Table, name: str) -> WorkflowConfig:
    """A workflow: at least one step (SPEC §4; a booking's job that only holds its
    resources can run a ``sleep`` of 0 s)."""
    values = table.values(required=["steps"])
    raw_steps = values.pop("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise table.ctx.error(
            (*table.path, "steps"),
            f"expected a non-empty array of step tables, got {checks.show(raw_steps)}",
        )
    steps: list[StepConfig] = []
    for index, raw in enumerate(raw_steps):
        path = (*table.path, "steps", index)
        step = StepConfig(**checks.Table(table.ctx, path, raw, _STEP).values(["name", "action"]))
        if any(s.name == step.name for s in steps):
            raise table.ctx.error(
                (*path, "name"), f"duplicate step name {step.name!r} in workflow {name!r}"
            )
        steps.append(step)
    return WorkflowConfig(name=name, steps=tuple(steps), **values)


def _schedules(ctx: Context, raw: Any) -> tuple[ScheduleConfig, ...]:
    """``[[schedules]]`` entries; names are unique across all files."""
    if not isinstance(raw, list):
        raise ctx.error(
            ("schedules",), f"expected an array of tables ([[schedules]]), got {checks.show(raw)}"
        )
    built: list[ScheduleConfig] = []
    for index, data in enumerate(raw):
        path: KeyPath = ("schedules", index)
        values = checks.Table(ctx, path, data, _SCHEDULE).values(required=["name", "workflow"])
        for earlier, other in enumerate(built):
            if other.name == values["name"]:
                raise ctx.error(
                    (*path, "name"),
                    (
                        f"duplicate schedule name {other.name!r} (first defined in "
                        f"{ctx.file_of(('schedules', earlier))} as schedules[{earlier}])"
                    ),
                )
        built.append(ScheduleConfig(**values))
    return tuple(built)
