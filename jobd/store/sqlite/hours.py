"""A page of a time range in id order, read hour by hour (``jobs_by_hour``, ``sql/migrate-4.sql``).

``jobs_by_time`` holds a range in time order: the page's ids (the newest of the range)
are known only once every entry of the range is read and sorted, 70,000 for a day of a
million jobs. ``jobs_by_hour`` holds each hour's jobs in id order, so each hour gives its
newest ids at once; the hours are taken newest id first (the first id of each is one
index probe), and the read stops at the first hour whose newest id is older than the
page's oldest: since ids grow with the time of submission, that is after one or two
hours whatever the range's size. Only the first and the last hour of a range are checked
against the exact times; the hours between match whole. Other conditions of the filter
are checked on each row. Finding the hours costs two index
probes per hour holding jobs in the range (~10 µs each on a loaded 2-core machine), so a
range over more than ``most`` (2,000, some 83 days) is left to the caller.
"""

from __future__ import annotations

import sqlite3
from typing import Any

#: The width of a bucket of ``jobs_by_hour``, in seconds (in the index's expression too).
HOUR = 3600
#: The index's expression on ``j`` (as ``sql/migrate-4.sql`` writes it, for the planner).
_HOUR_SQL = "CAST(coalesce(j.start_at, j.created_at) / 3600 AS INTEGER)"
_TIME = "coalesce(j.start_at, j.created_at)"
_SOURCE = "jobs AS j INDEXED BY jobs_by_hour"
_NO_END = 2**62


def hour_of(t: float) -> int:
    """The bucket of the time ``t``, as SQLite computes the index's expression."""
    return int(t / HOUR)


def _hours(
    conn: sqlite3.Connection,
    lo: int | None,
    hi: int | None,
    cursor: int | None,
    descending: bool,
    most: int,
) -> list[tuple[int, int]] | None:
    """Each hour in ``lo``..``hi`` holding a job past ``cursor``, as (its first id in page
    order, the hour); None when more than ``most`` hours hold jobs there.

    One statement: a recursive query steps from hour to hour in the index (one probe
    each, in SQLite rather than a round trip from Python each), then takes each hour's
    first id past the cursor (one probe each)."""
    way, sign, start_op, end_op = (
        ("DESC", "<", "<=", ">=") if descending else ("ASC", ">", ">=", "<=")
    )
    # An open end as a bound no hour passes, so that the statement is the same text.
    lo, hi = (lo if lo is not None else -_NO_END), (hi if hi is not None else _NO_END)
    start, end = (hi, lo) if descending else (lo, hi)
    bound = f"{_HOUR_SQL} {end_op} :end"
    step = f"SELECT {_HOUR_SQL} FROM {_SOURCE} WHERE {bound} AND {_HOUR_SQL}"
    past = f" AND j.id {sign} :cursor" if cursor is not None else ""
    sql = (
        f"WITH RECURSIVE hrs(h) AS (SELECT ({step} {start_op} :start ORDER BY 1 {way} LIMIT 1)"
        f" UNION ALL SELECT ({step} {sign} hrs.h ORDER BY 1 {way} LIMIT 1)"
        " FROM hrs WHERE hrs.h IS NOT NULL LIMIT :most)"
        f" SELECT (SELECT j.id FROM {_SOURCE} WHERE {_HOUR_SQL} = hrs.h{past}"
        f" ORDER BY j.id {way} LIMIT 1), h FROM hrs WHERE h IS NOT NULL"
    )
    params = {"start": start, "end": end, "cursor": cursor, "most": most + 2}
    rows = conn.execute(sql, params).fetchall()
    if len(rows) > most:
        return None
    return [(row[0], row[1]) for row in rows if row[0] is not None]


def hour_page(
    conn: sqlite3.Connection,
    since: float | None,
    until: float | None,
    limit: int,
    cursor: int | None = None,
    descending: bool = True,
    most: int = 2000,
    rest: tuple[list[str], list[Any]] = ([], []),
) -> list[int] | None:
    """The ids of the jobs whose time (``start_at``, else ``created_at``) is within
    ``since``..``until`` (either may be None) and that meet the conditions ``rest`` (on
    ``j``, with their parameters), ``limit`` at most, by id (newest first when
    ``descending``) after ``cursor``; None when the range spans more than ``most`` hours
    holding jobs (the caller reads it another way)."""
    lo = hour_of(since) if since is not None else None
    hi = hour_of(until) if until is not None else None
    hours = _hours(conn, lo, hi, cursor, descending, most)
    if hours is None:
        return None
    hours.sort(reverse=descending)
    way, sign = ("DESC", "<") if descending else ("ASC", ">")
    found: list[int] = []
    for first, hour in hours:
        if len(found) >= limit and (first < found[-1] if descending else first > found[-1]):
            break  # this hour's jobs (and every later hour's) all come after the page
        where: list[str] = [f"{_HOUR_SQL} = ?", *rest[0]]
        params: list[Any] = [hour, *rest[1]]
        if since is not None and hour == lo:  # an edge: only part of the hour is in range
            where.append(f"{_TIME} >= ?")
            params.append(since)
        if until is not None and hour == hi:
            where.append(f"{_TIME} <= ?")
            params.append(until)
        if cursor is not None:
            where.append(f"j.id {sign} ?")
            params.append(cursor)
        sql = f"SELECT j.id FROM {_SOURCE} WHERE {' AND '.join(where)} ORDER BY j.id {way} LIMIT ?"
        found += [r[0] for r in conn.execute(sql, (*params, limit))]
        found = sorted(found, reverse=descending)[:limit]
    return found
