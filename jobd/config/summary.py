"""The human summary of a configuration that ``jobd check-config`` prints."""

from __future__ import annotations

from collections.abc import Iterable

from jobd.config.records import ApiConfig, Config, ScheduleConfig, WorkflowConfig


def summarize(config: Config) -> str:
    """A human summary for ``jobd check-config``: files read, where state and the API
    live, capacity, and the named resources, pools, workflows and schedules."""
    daemon, api = config.daemon, config.api
    tcp = f"{api.listen} (tokens: {_describe_tokens(api)})" if api.listen else "off"
    lines = [
        "files read: " + (", ".join(map(str, config.sources)) or "(none)"),
        f"state_dir: {daemon.state_dir} (database {daemon.db_path})",
        f"socket: {api.socket} (mode {api.socket_mode:04o}); tcp: {tcp}",
        "socket roles: " + _describe_roles(api),
        f"workers: {daemon.workers}; run queue size: {daemon.run_queue_size}",
        "plugin dirs: " + _join(map(str, daemon.plugin_dirs)),
        "file roots: " + _join(map(str, daemon.file_roots)),
        f"logging: {config.logging.format}, level {config.logging.level}",
        _counted(
            "resources", [f"{r.name} (capacity {r.capacity})" for r in config.resources.values()]
        ),
        _counted("pools", [f"{p.name} = [{', '.join(p.members)}]" for p in config.pools.values()]),
        _counted("workflows", [_describe_workflow(w) for w in config.workflows.values()]),
        _counted("schedules", [_describe_schedule(s) for s in config.schedules]),
    ]
    return "\n".join(lines + _requires_notes(config))


def _describe_workflow(w: WorkflowConfig) -> str:
    needs = f"; requires {', '.join(w.requires)}" if w.requires else ""
    return f"{w.name} ({_plural(len(w.steps), 'step')}{needs})"


def _requires_notes(config: Config) -> list[str]:
    """A note per workflow whose ``requires`` this node's ``[daemon] tags`` do not meet."""
    daemon = config.daemon
    where = (
        "its jobs run on the other nodes that have them"
        if daemon.database is not None
        else "its jobs wait in pending (one node: add the tags, or run a cluster)"
    )
    notes = []
    for w in config.workflows.values():
        missing = [t for t in w.requires if t not in daemon.tags]
        if missing:
            notes.append(
                f"note: workflow {w.name} requires tags {', '.join(missing)} that this node "
                f"(tags: {_join(daemon.tags)}) lacks: {where}"
            )
    return notes


def _join(items: Iterable[str]) -> str:
    return ", ".join(items) or "(none)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counted(kind: str, names: list[str]) -> str:
    return f"{kind} ({len(names)}): {_join(names)}"


def _describe_tokens(api: ApiConfig) -> str:
    named = [("default", api.token_file, "admin")] if api.token_file is not None else []
    named += [(t.name, t.file, t.role) for t in api.tokens]
    return _join(f"{name} ({role}, {file})" for name, file, role in named)


def _describe_roles(api: ApiConfig) -> str:
    lists = {"viewers": api.viewers, "operators": api.operators, "admins": api.admins}
    if all(value is None for value in lists.values()):
        return "not set: whoever can open the socket is admin"
    shown = [f"{key} = [{', '.join(value or ())}]" for key, value in lists.items()]
    return "; ".join(shown) + " (root and the daemon's own user are admins)"


def _describe_schedule(schedule: ScheduleConfig) -> str:
    when = (
        f"cron {schedule.cron!r} {schedule.timezone}"
        if schedule.cron is not None
        else f"every {schedule.interval:g} s"
    )
    off = "" if schedule.enabled else ", disabled"
    return f"{schedule.name} ({when} -> {schedule.workflow}{off})"
