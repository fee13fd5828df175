"""Tables and lines for the CLI: API JSON in, renderables out.

The renderables are :mod:`jobd.client.textui`'s (shown as whole plain lines when
stdout is not a terminal, as rich tables when it is; rich is imported only
then). Every function takes the JSON the API returns and tolerates missing keys,
so an older or newer daemon still gets a readable table. Times are shown in
the local zone of the terminal (``--json`` gives the API's ISO UTC).
"""

from __future__ import annotations

from jobd.client.jsonio import dumps
from jobd.client.textui import Group, Renderable, Table, Text

# Annotations only: importing typing costs the CLI's start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

_STATE_STYLES = {
    "draft": "dim",
    "tentative": "magenta",
    "confirmed": "blue",
    "pending": "yellow",
    "queued": "yellow",
    "waiting-for-lock": "yellow",
    "running": "bold cyan",
    "cancel-requested": "bold yellow",
    "paused": "magenta",
    "completed": "green",
    "failed": "bold red",
    "timed-out": "bold red",
    "canceled": "dim",
    "ready-for-invoice": "green",
    "invoiced": "dim green",
    "soft-failed": "yellow",
}


def _done(table: Table) -> Table:
    """A table with no rows says so, rather than showing bare headers."""
    if not table.rows:
        table.caption = "(none)"
    return table


def local_time(iso: str | None) -> str:
    """``2026-01-01 11:00:00`` in the terminal's zone; ``-`` for none; the text if unparseable."""
    if not iso:
        return "-"
    seconds = _utc_seconds(iso)
    if seconds is not None:
        import time  # built in: no import cost

        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
    try:
        # Imported here: a table without times does not pay for it.
        from datetime import datetime

        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _utc_seconds(iso: str) -> int | None:
    """POSIX seconds of a time as the API writes it (``2026-01-01T10:00:00[.ffffff]+00:00``,
    :func:`jobd.core.timefmt.format_time`), read without :mod:`datetime` (~6 million
    instructions to import); None for any other shape (then :mod:`datetime` reads it)."""
    if len(iso) not in (25, 32) or not iso.endswith("+00:00") or iso[4:17:3] != "--T::":
        return None
    fields = (iso[0:4], iso[5:7], iso[8:10], iso[11:13], iso[14:16], iso[17:19])
    if not all(f.isdigit() and f.isascii() for f in fields) or (
        len(iso) == 32 and (iso[19] != "." or not iso[20:26].isdigit())
    ):
        return None
    year, month, day, hour, minute, second = map(int, fields)
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not (1 <= month <= 12 and hour < 24 and minute < 60 and second < 60):
        return None
    if not 1 <= day <= (29 if leap and month == 2 else _MONTH_DAYS[month]):
        return None
    # Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return ((days * 24 + hour) * 60 + minute) * 60 + second


def state_text(state: str | None) -> Text:
    return Text(state or "-", style=_STATE_STYLES.get(state or "", ""))


def _error_text(error: Mapping[str, Any] | None) -> Text:
    if not error:
        return Text("")
    return Text(f"{error.get('code', 'error')}: {error.get('message', '')}", style="red")


def _progress(job: Mapping[str, Any]) -> str:
    pct = job.get("progress")
    return "-" if pct is None else f"{float(pct):.0f}%"


def _join(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in values) or "-"


def _count(value: Any) -> int:
    if isinstance(value, list | tuple):
        return len(value)
    return int(value or 0)


def jobs_table(jobs: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    """``jobd list``: one row per job, newest first as the API returns them."""
    table = Table(title=title, expand=False)
    for column in ("ID", "NAME", "WORKFLOW", "STATE", "PRI", "START", "END", "PROG", "ERROR"):
        table.add_column(column, justify="right" if column in {"ID", "PRI", "PROG"} else "left")
    for job in jobs:
        table.add_row(
            str(job.get("id", "?")),
            str(job.get("name", "")),
            str(job.get("workflow", "")),
            state_text(job.get("state")),
            str(job.get("priority", 0)),
            local_time(job.get("start_at")),
            local_time(job.get("end_at")),
            _progress(job),
            _error_text(job.get("error")),
        )
    return _done(table)


def job_detail(job: Mapping[str, Any]) -> Group:
    """``jobd show``: the job's fields, then its steps, reservations and history."""
    return Group(
        _job_fields(job),
        _steps_table(job.get("steps") or []),
        _reservations_table(job.get("reservations") or []),
        _history_table(job.get("history") or []),
    )


def _job_fields(job: Mapping[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    progress = _progress(job)
    if job.get("progress_message"):
        progress += f" ({job['progress_message']})"
    rows: list[tuple[str, Any]] = [
        ("job", f"{job.get('id')} {job.get('name', '')}"),
        ("workflow", job.get("workflow", "")),
        ("state", state_text(job.get("state"))),
        ("error", _error_text(job.get("error")) if job.get("error") else "-"),
        ("priority", str(job.get("priority", 0))),
        ("start / end", f"{local_time(job.get('start_at'))} / {local_time(job.get('end_at'))}"),
        ("preroll / postroll", f"{job.get('preroll', 0)} s / {job.get('postroll', 0)} s"),
        (
            "timeout / lock timeout",
            f"{job.get('timeout') or '-'} / {job.get('lock_timeout') or '-'}",
        ),
        ("assets", _join(job.get("assets") or [])),
        ("shared assets", _join(job.get("shared_assets") or [])),
        (
            "resources / pools",
            f"{_join(job.get('resources') or [])} / {_join(job.get('pools') or [])}",
        ),
        ("params", dumps(job.get("params") or {}, ensure_ascii=False)),
        ("progress", progress),
        ("schedule", job.get("schedule") or "-"),
        (
            "created / updated",
            f"{local_time(job.get('created_at'))} / {local_time(job.get('updated_at'))}",
        ),
    ]
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else str(value))
    return grid


def _steps_table(steps: list[Mapping[str, Any]]) -> Table:
    table = Table(title="steps", title_justify="left")
    for column in ("#", "STEP", "ACTION", "STATE", "TRIES", "STARTED", "ENDED", "ERROR"):
        table.add_column(column)
    for idx, step in enumerate(steps, start=1):
        table.add_row(
            str(idx),
            str(step.get("name", "")),
            str(step.get("action", "")),
            state_text(step.get("state")),
            str(step.get("attempts", 0)),
            local_time(step.get("started_at")),
            local_time(step.get("ended_at")),
            Text(str(step.get("error") or ""), style="red"),
        )
    return _done(table)


def _reservations_table(reservations: list[Mapping[str, Any]]) -> Table:
    table = Table(title="reservations", title_justify="left")
    for column in ("RESOURCE", "POOL", "START", "END"):
        table.add_column(column)
    for res in reservations:
        table.add_row(
            str(res.get("resource", "")),
            str(res.get("pool") or "-"),
            local_time(res.get("start")),
            local_time(res.get("end")),
        )
    return _done(table)


def _history_table(history: list[Mapping[str, Any]]) -> Table:
    table = Table(title="history", title_justify="left")
    for column in ("AT", "FROM", "TO", "CAUSE", "ACTOR"):
        table.add_column(column)
    for entry in history:
        table.add_row(
            local_time(entry.get("at")),
            state_text(entry.get("from")),
            state_text(entry.get("to")),
            str(entry.get("cause", "")),
            str(entry.get("actor", "")),
        )
    return _done(table)


def queue_view(info: Mapping[str, Any]) -> Table:
    """``jobd queue``: capacity, workers and which jobs are where."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    queued = info.get("queued") or []
    grid.add_row("run queue", f"{_count(queued)} / {info.get('capacity', '?')}")
    grid.add_row("workers busy", f"{info.get('busy_workers', 0)} / {info.get('workers', '?')}")
    grid.add_row("pending", str(_count(info.get("pending"))))
    grid.add_row("running", _join(info.get("running") or []))
    grid.add_row("waiting for lock", _join(info.get("waiting_for_lock") or []))
    grid.add_row("queued (in order)", _join(queued if isinstance(queued, list) else []))
    return grid


def nodes_table(items: Iterable[Mapping[str, Any]]) -> Table:
    """``jobd nodes``: the cluster's nodes (a daemon on SQLite: itself)."""
    table = Table()
    for column in ("NODE", "TAGS", "STATE", "LAST RENEWAL", "RUNNING JOBS", "WORKERS"):
        table.add_column(column)
    for node in items:
        table.add_row(
            str(node.get("name", "")),
            _join(node.get("tags") or []),
            str(node.get("state", "")),
            local_time(node.get("renewed_at")),
            _join(node.get("running_jobs") or []),
            str(node.get("workers", "-")),
        )
    return _done(table)


def locks_table(items: Iterable[Mapping[str, Any]]) -> Table:
    table = Table()
    for column in ("ASSET", "HOLDERS", "WAITERS (FIFO)"):
        table.add_column(column)
    for lock in items:
        holders = [
            f"{h.get('job_id')}:{h.get('mode', 'exclusive')}{_on_node(h)}"
            for h in lock.get("holders") or []
        ]
        waiters = [
            f"{w.get('job_id')}:{w.get('mode', 'exclusive')}{_on_node(w)}"
            f" since {local_time(w.get('since'))}"
            for w in lock.get("waiters") or []
        ]
        table.add_row(str(lock.get("asset", "")), _join(holders), "\n".join(waiters) or "-")
    return _done(table)


def _on_node(entry: Mapping[str, Any]) -> str:
    """`` on NODE`` for a cluster's lock entry (SPEC §10), nothing on one node."""
    node = entry.get("node")
    return f" on {node}" if node else ""


def resources_table(items: Iterable[Mapping[str, Any]]) -> Table:
    table = Table()
    for column in ("RESOURCE", "CAPACITY", "POOLS", "IN USE BY", "UPCOMING"):
        table.add_column(column)
    for res in items:
        table.add_row(
            str(res.get("name", "")),
            str(res.get("capacity", 1)),
            _join(res.get("pools") or []),
            _join(res.get("current") or []),
            str(res.get("upcoming", 0)),
        )
    return _done(table)


def bookings_table(items: Iterable[Mapping[str, Any]]) -> Table:
    table = Table()
    for column in ("RESOURCE", "START", "END", "JOB", "NAME", "STATE"):
        table.add_column(column)
    for booking in items:
        table.add_row(
            str(booking.get("resource", "")),
            local_time(booking.get("start")),
            local_time(booking.get("end")),
            str(booking.get("job_id", "")),
            str(booking.get("job_name", "")),
            state_text(booking.get("state")),
        )
    return _done(table)


def schedules_table(items: Iterable[Mapping[str, Any]]) -> Table:
    table = Table()
    for column in (
        "NAME",
        "WORKFLOW",
        "WHEN",
        "NEXT",
        "LAST",
        "JOB",
        "MISSED",
        "SKIPPED",
        "POLICY",
    ):
        table.add_column(column)
    for sched in items:
        if sched.get("cron"):
            when = f"cron {sched['cron']} ({sched.get('timezone', 'UTC')})"
        else:
            from jobd.core.timefmt import format_duration

            when = f"every {format_duration(sched.get('interval'))}"
        table.add_row(
            str(sched.get("name", "")),
            str(sched.get("workflow", "")),
            when,
            Text("paused", style="magenta")
            if sched.get("paused")
            else local_time(sched.get("next_fire_at")),
            local_time(sched.get("last_fire_at")),
            str(sched.get("last_job_id") or "-"),
            str(_count(sched.get("missed"))),
            str(_count(sched.get("skipped"))),
            f"{sched.get('overlap', '-')}/{sched.get('misfire', '-')}",
        )
    return _done(table)


def plugins_view(info: Mapping[str, Any]) -> Group:
    """``jobd plugins``: loaded plugins (with load errors) and the actions they offer."""
    plugins = Table(title="plugins", title_justify="left")
    for column in ("PLUGIN", "FILE", "ACTIONS", "ERROR"):
        plugins.add_column(column)
    for plugin in info.get("plugins") or []:
        plugins.add_row(
            str(plugin.get("name", "")),
            str(plugin.get("file") or "-"),
            _join(plugin.get("actions") or []),
            Text(str(plugin.get("error") or ""), style="red"),
        )
    actions = Table(title="actions", title_justify="left")
    for column in ("ACTION", "PLUGIN", "DESCRIPTION"):
        actions.add_column(column)
    for action in info.get("actions") or []:
        actions.add_row(
            str(action.get("name", "")),
            str(action.get("plugin", "")),
            str(action.get("description", "")),
        )
    return Group(plugins, actions)


def log_line(line: Mapping[str, Any]) -> Text:
    """One ``jobd logs`` line: ``time [step] level message``."""
    level = str(line.get("level", "info"))
    style = {"error": "red", "warning": "yellow", "debug": "dim"}.get(level, "")
    step = f"[{line['step']}] " if line.get("step") else ""
    text = Text(f"{local_time(line.get('at'))} {step}")
    text.append(f"{level:<7} ", style=style)
    text.append(str(line.get("message", "")))
    return text


def event_line(event: Mapping[str, Any]) -> Text:
    """One event as a short line, for ``submit --wait`` and ``watch``."""
    kind = event.get("kind")
    prefix = f"{local_time(event.get('at'))} job {event.get('job_id')}: "
    data = event.get("data") or {}
    if kind == "state":
        text = Text(prefix)
        text.append_text(state_text(event.get("from") or "new"))
        text.append(" -> ")
        text.append_text(state_text(event.get("to")))
        if event.get("cause"):
            text.append(f" ({event['cause']})", style="dim")
        return text
    if kind == "step":
        text = Text(f"{prefix}step {event.get('step')} ")
        text.append_text(state_text(data.get("state")))
        if data.get("error"):
            text.append(f": {data['error']}", style="red")
        return text
    if kind == "progress":
        message = f" {data['message']}" if data.get("message") else ""
        return Text(
            f"{prefix}progress {float(data.get('progress', data.get('pct', 0))):.0f}%{message}"
        )
    return Text(f"{prefix}{kind}: {event.get('cause') or dumps(data)}")


def watch_view(
    queue: Mapping[str, Any],
    jobs: Sequence[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]],
    problem: str | None,
) -> Renderable:
    """``jobd watch``: the queue, the latest jobs and the latest events."""
    parts: list[Renderable] = [queue_view(queue), jobs_table(jobs, title="latest jobs")]
    recent = list(events)
    if recent:
        parts.append(Text("recent events", style="bold"))
        parts.extend(event_line(event) for event in recent)
    if problem:
        parts.append(Text(problem, style="bold red"))
    return Group(*parts)
