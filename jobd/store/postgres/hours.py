"""A page of a time range in id order, read hour by hour (``job_names_by_hour``, schema 20).

The PostgreSQL twin of :mod:`jobd.store.sqlite.hours`. A range's page is the newest ids
of the range (in id order); the planner has no index in that order for a range of times,
so it either sorts the whole range or walks the primary key from the newest job, which
for a range of old jobs is nearly every row. ``job_names_by_hour`` holds each hour's jobs
in id order (on ``job_names``, written once per job, since schema 20; each job read by
primary key): one statement lists the hours of the range holding jobs past the cursor, each
with its first id in page order (two index probes an hour); the hours are then read in
the order of those ids, ``limit`` rows each, and the read stops at the first hour whose
first id comes after the page's last: since ids grow with the time of submission, that is
after an hour or two whatever the range's size. Only the first and last hours are checked
against the exact times. Other conditions of the filter are checked on each row. A range
over more than ``most`` (2,000) hours holding jobs is left to the caller.
"""

from __future__ import annotations

import math
from typing import Any

import psycopg

from jobd.store.postgres import queries as q

#: The width of a bucket of ``job_names_by_hour``, in seconds (in the index's expression too).
HOUR = 3600
#: Bounds no hour and no id passes: an open end keeps the statement's text (and plan).
_NO_END = 2**62
#: The widest range (in hours, three weeks) whose every hour is probed.
_SPAN = 500


def hour_of(t: float) -> int:
    """The bucket of the time ``t``, as the index's expression computes it."""
    return math.floor(t / HOUR)


async def _hours(
    conn: psycopg.AsyncConnection[Any],
    lo: int | None,
    hi: int | None,
    cursor: int | None,
    descending: bool,
    most: int,
    span: int = _SPAN,
) -> list[tuple[int, int]] | None:
    """Each hour in ``lo``..``hi`` holding a job past ``cursor``, as (its first id in page
    order, the hour); None when more than ``most`` hours hold jobs there.

    A range of at most ``span`` hours probes each of its hours; a wider one steps
    from populated hour to populated hour (a probe more each, but none for empty hours)."""
    if cursor is None:
        cursor = _NO_END if descending else -_NO_END
    if lo is None or hi is None or hi - lo <= span:
        params = {"low": lo, "high": hi, "cursor": cursor, "span": span}
        sql = q.HOURS_SPAN_NEWEST_FIRST if descending else q.HOURS_SPAN_OLDEST_FIRST
        rows = await (await conn.execute(sql, params)).fetchall()
        if not rows or rows[0][0] <= span:
            found = [(row[2], row[1]) for row in rows if row[2] is not None]
            return found if len(found) <= most else None
    low = lo if lo is not None else -_NO_END
    high = hi if hi is not None else _NO_END
    params = {"low": low, "high": high, "cursor": cursor, "most": most + 1}
    sql = q.HOURS_NEWEST_FIRST if descending else q.HOURS_OLDEST_FIRST
    rows = await (await conn.execute(sql, params)).fetchall()
    if len(rows) > most:
        return None
    return [(row[1], row[0]) for row in rows if row[1] is not None]


def keyed(
    lead: str, value: Any, id_column: str, cursor: int | None, descending: bool
) -> tuple[list[str], list[Any]]:
    """``lead = value`` (and the cursor) for an index on ``(lead, id_column)``, written so
    that only that index can give the rows in ``ORDER BY lead, id_column`` order.

    With ``lead = value`` the planner knows ``lead`` constant, drops it from the order, and
    may walk the primary key instead "until enough match", reading every row of another
    state, workflow or hour first (they are not spread evenly over the ids). As a range of
    one value it stays in the order, which only this index gives; with a cursor the range's
    near end is a row comparison, which positions the scan at ``(value, cursor)`` at once."""
    if cursor is None:
        return [f"{lead} >= %s", f"{lead} <= %s"], [value, value]
    if descending:
        return [f"({lead}, {id_column}) < (%s, %s)", f"{lead} >= %s"], [value, cursor, value]
    return [f"({lead}, {id_column}) > (%s, %s)", f"{lead} <= %s"], [value, cursor, value]


def _arm(
    hour: int,
    edges: tuple[float | None, float | None, int | None, int | None],
    rest: tuple[list[str], list[Any]],
    columns: str,
    cursor: int | None,
    descending: bool,
) -> tuple[str, list[Any]]:
    """The SELECT of one hour's rows past ``cursor`` that meet ``rest``, in page order."""
    since, until, lo, hi = edges
    where, params = keyed(q.HOUR, hour, "n.job_id", cursor, descending)
    where, params = where + rest[0], params + rest[1]
    if since is not None and hour == lo:  # an edge: only part of the hour is in range
        where.append(f"{q.NAMES_TIME} >= %s")
        params.append(since)
    if until is not None and hour == hi:
        where.append(f"{q.NAMES_TIME} <= %s")
        params.append(until)
    way = "DESC" if descending else "ASC"
    return (
        f"(SELECT {columns} FROM job_names n JOIN jobs j ON j.id = n.job_id"
        f" WHERE {' AND '.join(where)} ORDER BY {q.HOUR} {way}, n.job_id {way} LIMIT %s)",
        params,
    )


def _read(
    group: list[int],
    edges: tuple[float | None, float | None, int | None, int | None],
    rest: tuple[list[str], list[Any]],
    columns: str,
    limit: int,
    cursor: int | None,
    descending: bool,
) -> tuple[str, list[Any]]:
    """One statement reading the hours ``group``: each hour's rows in id order from the
    index (``limit`` at most), then the page's ``limit`` of them all."""
    arms, params = [], []
    for hour in group:
        sql, arm_params = _arm(hour, edges, rest, columns, cursor, descending)
        arms.append(sql)
        params += [*arm_params, limit]
    order = "DESC" if descending else "ASC"
    union = " UNION ALL ".join(arms)
    return f"SELECT * FROM ({union}) AS hours ORDER BY 1 {order} LIMIT %s", [*params, limit]


#: The most hours one statement reads (a statement's planning grows with its arms).
_GROUP = 32


async def hour_page(
    conn: psycopg.AsyncConnection[Any],
    since: float | None,
    until: float | None,
    columns: str,
    limit: int,
    cursor: int | None = None,
    descending: bool = True,
    most: int = 2000,
    rest: tuple[list[str], list[Any]] = ([], []),
    span: int = _SPAN,
) -> list[tuple[Any, ...]] | None:
    """The rows of ``columns`` (on ``j``, the first being ``j.id``) of the jobs whose time
    (``start_at``, else ``created_at``) is within ``since``..``until`` (either may be None)
    and that meet ``rest`` (conditions on ``j`` with their parameters), ``limit`` at most,
    by id (newest first when ``descending``) after ``cursor``; None when the range spans
    more than ``most`` hours holding jobs (the caller reads it another way). ``span``: see
    :func:`_hours`.

    The hours are read in groups of 1, 2, 4 ... :data:`_GROUP` (one statement each): the
    first hour usually fills the page, and a range whose hours hold few jobs each still
    takes a few statements, not one per hour."""
    lo = hour_of(since) if since is not None else None
    hi = hour_of(until) if until is not None else None
    hours = await _hours(conn, lo, hi, cursor, descending, most, span)
    if hours is None:
        return None
    hours.sort(reverse=descending)
    found: list[tuple[Any, ...]] = []
    at, size = 0, 1
    while at < len(hours):
        first = hours[at][0]
        if len(found) >= limit and (first < found[-1][0] if descending else first > found[-1][0]):
            break  # this hour's jobs (and every later hour's) all come after the page
        group = [hour for _, hour in hours[at : at + size]]
        sql, params = _read(group, (since, until, lo, hi), rest, columns, limit, cursor, descending)
        found += await (await conn.execute(sql, params)).fetchall()
        found = sorted(found, key=lambda row: row[0], reverse=descending)[:limit]
        at, size = at + size, min(2 * size, _GROUP)
    return found
