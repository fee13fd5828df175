"""Rules that span keys or sections (pool members are declared resources, a schedule
names a declared workflow, TCP needs a token, ...), checked on the built :class:`Config`;
each error points at the key to fix, in the file that set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jobd.config import checks
from jobd.config.provenance import Context
from jobd.config.records import Config, KeyPath, ScheduleConfig
from jobd.core.errors import ConfigError


def cross_check(ctx: Context, config: Config) -> None:
    """Rules that span keys or sections; each error points at the key to fix."""
    api = config.api
    if api.listen is not None and api.token_file is None and not api.tokens:
        # Blame the file that turned TCP on: that is where the fix belongs.
        raise ConfigError(
            str(ctx.file_of(("api", "listen"))),
            "api.token_file",
            f"required when api.listen is set (listen = {api.listen!r}), "
            "unless [[api.tokens]] are given",
        )
    if api.token_file is not None and any(t.name == "default" for t in api.tokens):
        raise ctx.error(("api", "tokens"), "the token name 'default' is taken by api.token_file")
    for pool in config.pools.values():
        if pool.name in config.resources:
            raise ctx.error(
                ("pools", pool.name), f"name {pool.name!r} is used by both a resource and a pool"
            )
        _check_refs(
            ctx, ("pools", pool.name, "members"), pool.members, config.resources, "resource"
        )
    for index, schedule in enumerate(config.schedules):
        _check_schedule(ctx, ("schedules", index), schedule, config)


def _check_schedule(ctx: Context, path: KeyPath, schedule: ScheduleConfig, config: Config) -> None:
    _check_refs(ctx, (*path, "workflow"), schedule.workflow, config.workflows, "workflow")
    _check_refs(ctx, (*path, "resources"), schedule.resources, config.resources, "resource")
    _check_refs(ctx, (*path, "pools"), schedule.pools, config.pools, "pool")
    if (schedule.cron is None) == (schedule.interval is None):
        both = "has both" if schedule.cron is not None else "needs one of"
        raise ctx.error(
            path, f"schedule {schedule.name!r} {both} 'cron' and 'interval'; give exactly one"
        )
    # The cron expression itself is parsed by jobd.service.configcheck with the timers' own
    # parser (the one that will run it), not here: one parser, and no APScheduler
    # import for the CLI commands that only read the socket path from this file.


def _check_refs(
    ctx: Context,
    path: KeyPath,
    names: str | tuple[str, ...],
    declared: Mapping[str, Any],
    kind: str,
) -> None:
    """Every name in ``names`` is a key of ``declared``; else an error at that item."""
    items = (
        [(path, names)]
        if isinstance(names, str)
        else [((*path, i), n) for i, n in enumerate(names)]
    )
    for where, name in items:
        if name not in declared:
            known = ", ".join(declared) or "none"
            hint = checks.suggest(name, declared)
            raise ctx.error(where, f"{name!r} is not a declared {kind}{hint} (declared: {known})")
