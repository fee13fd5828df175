"""Filtered reads of jobs (``GET /v1/jobs``, the batch routes): which index drives a read.

A :class:`~jobd.store.contract.JobFilter` becomes one or more *arms*: queries over
the index that holds the fewest rows for its own condition, with the rest of
the filter checked on each row. The tables and triggers they read are those of
``sql/migrate-2.sql``.

A search of three characters or more reads two arms: the trigram index ``job_names``, and
the jobs whose names the writer has not indexed yet (``job_names_stale``: it indexes them
once 1,000 wait or when idle, ``sqlwriter.Names``), each row checked with the same
``LIKE`` on the name as shown (case-insensitive for ASCII, ``%`` and ``_`` escaped) that
every search checks, so the two give the same matches; a page reads both in one read
transaction, so a job indexed in between is seen once, in one of them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field, replace
from typing import Any

from jobd.store.reads import JobFilter
from jobd.store.sqlite import queries as q
from jobd.store.sqlite.hours import hour_page

#: A driver whose candidates number fewer than this is read whole and sorted; above it,
#: drivers that read in id order stop at the page's end.
_SMALL = 2000
#: A filter on times alone whose index holds fewer rows than this reads the index whole.
_SORTABLE = 300_000
#: What ``?search=`` looks in (the name as shown).
_NAME = "coalesce(j.name, j.workflow || '-' || j.id)"
_TIME = "coalesce(j.start_at, j.created_at)"
_KEY_SQL = "EXISTS (SELECT 1 FROM job_keys WHERE kind = ? AND key = ? AND job_id = j.id)"
#: The trigram index, less the names waiting to be indexed (never in it: the insert
#: trigger queues a new id; kept out all the same, so that no job is read twice) ...
_INDEXED = "job_names.rowid NOT IN (SELECT id FROM job_names_stale)"
#: ... and those names, read from the jobs (``LIKE`` in the arm's ``rest``).
_STALE_SOURCE = "job_names_stale AS s CROSS JOIN jobs AS j ON j.id = s.id"


@dataclass(slots=True)
class _Arm:
    """One query of a filtered read: the rows one index holds for the driving condition
    (``own``), in id order, and the rest of the filter (``rest``) checked on each."""

    source: str
    id_column: str
    own: list[str]
    own_params: list[Any]
    ordered: bool = True  # False: the index is not in id order (its rows are sorted)
    rest: list[str] = field(default_factory=list)
    rest_params: list[Any] = field(default_factory=list)
    hourly: bool = False  # True: a time range, read hour by hour (hours.py)

    def sql(
        self, columns: str, descending: bool, cursor: int | None, limit: int, rest: bool = True
    ) -> tuple[str, tuple[Any, ...]]:
        where, params = [*self.own], [*self.own_params]
        if rest:
            where += self.rest
            params += self.rest_params
        if cursor is not None:
            where.append(f"{self.id_column} {'<' if descending else '>'} ?")
            params.append(cursor)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        # A count (``rest`` left out) needs no order: ordering an index that is not in id
        # order would sort every row it holds before the limit.
        order = f" ORDER BY {self.id_column} {'DESC' if descending else 'ASC'}" if rest else ""
        return (
            f"SELECT {columns} FROM {self.source if rest else self.counted}{clause}{order} LIMIT ?",
            (*params, limit),
        )

    @property
    def counted(self) -> str:
        """What a count of the arm reads: its own condition and id are on the first table of
        ``source``, so a count leaves out the join to ``jobs`` (a read of a row per entry:
        10 ms for 2,000 entries of a pool, against 0.5 ms for the index alone)."""
        return self.source.split(" CROSS JOIN ")[0]


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _residual(f: JobFilter, skip: str) -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` other than the driver ``skip``, on the row ``j``."""
    where: list[str] = []
    params: list[Any] = []
    if f.states and skip != "state":
        where.append(f"j.state IN ({','.join('?' * len(f.states))})")
        params += [str(s) for s in f.states]
    if f.workflow is not None and skip != "workflow":
        where.append("j.workflow = ?")
        params.append(f.workflow)
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None and skip != kind:
            where.append(_KEY_SQL)
            params += [kind, value]
    if f.search is not None:  # checked on every row, even behind the trigram index
        where.append(f"{_NAME} LIKE ? ESCAPE '\\'")
        params.append(_like_pattern(f.search))
    if skip != "time":
        where, params = where + _time_conditions(f)[0], params + _time_conditions(f)[1]
    return where, params


def _time_conditions(f: JobFilter) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        where.append(f"{_TIME} >= ?")
        params.append(f.since)
    if f.until is not None:
        where.append(f"{_TIME} <= ?")
        params.append(f.until)
    return where, params


def _arm(
    name: str,
    f: JobFilter,
    source: str,
    id_column: str,
    own: list[str],
    own_params: list[Any],
    ordered: bool = True,
) -> _Arm:
    rest, rest_params = _residual(f, name)
    return _Arm(source, id_column, own, own_params, ordered, rest, rest_params)


def _drivers(f: JobFilter) -> dict[str, list[_Arm]]:
    """Every index that can drive a read of ``f``, as arms (one per state for ``state``)."""
    out: dict[str, list[_Arm]] = {}
    if f.search is not None and len(f.search) >= 3:  # the trigram index needs 3 characters
        phrase = '"' + f.search.replace('"', '""') + '"'
        source = "job_names CROSS JOIN jobs AS j ON j.id = job_names.rowid"
        out["search"] = [
            _arm("search", f, source, "job_names.rowid", ["job_names MATCH ?", _INDEXED], [phrase]),
            _arm("search", f, _STALE_SOURCE, "s.id", [], []),
        ]
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None:
            source = "job_keys AS k CROSS JOIN jobs AS j ON j.id = k.job_id"
            own = ["k.kind = ?", "k.key = ?"]
            out[kind] = [_arm(kind, f, source, "k.job_id", own, [kind, value])]
    if f.workflow is not None:
        source = "jobs AS j INDEXED BY jobs_by_workflow"
        out["workflow"] = [_arm("workflow", f, source, "j.id", ["j.workflow = ?"], [f.workflow])]
    if f.states:
        source = "jobs AS j INDEXED BY jobs_by_state"
        out["state"] = [
            _arm("state", f, source, "j.id", ["j.state = ?"], [str(s)])
            for s in dict.fromkeys(f.states)
        ]
    if f.since is not None or f.until is not None:
        own, params = _time_conditions(f)
        source = "jobs AS j INDEXED BY jobs_by_time"
        out["time"] = [_arm("time", f, source, "j.id", own, params, ordered=False)]
    return out


def _count(
    conn: sqlite3.Connection,
    arms: list[_Arm],
    cursor: int | None,
    descending: bool,
    cap: int = _SMALL,
) -> int:
    """How many rows the arms' indexes hold for their own condition, up to ``cap``."""
    total = 0
    for arm in arms:
        sql, params = arm.sql("1", descending, cursor, cap, rest=False)
        total += conn.execute(f"SELECT count(*) FROM ({sql})", params).fetchone()[0]
    return total


def plan_filter(
    conn: sqlite3.Connection, f: JobFilter, cursor: int | None, descending: bool = True
) -> list[_Arm]:
    """The arms to read ``f`` with: the index holding the fewest rows for its condition when
    one holds fewer than :data:`_SMALL` (read whole), else the first of those that read in
    id order (they stop at the end of the page), else the table in id order."""
    drivers = _drivers(f)
    counts = {name: _count(conn, arms, cursor, descending) for name, arms in drivers.items()}
    small = [name for name in counts if counts[name] < _SMALL]
    if small:
        return drivers[min(small, key=lambda name: counts[name])]
    time_arm = drivers.get("time", [None])[0]
    if time_arm is not None:
        # A time range: read hour by hour in id order (hours.py), the rest checked on each
        # row; walking another index (or the table) in id order instead reads every newer
        # job first (a day a fortnight ago: 900,000 rows).
        return [replace(time_arm, hourly=True)]
    for arms in drivers.values():
        if all(arm.ordered for arm in arms):
            return arms
    return [_table(f)]


def _table(f: JobFilter) -> _Arm:
    where, params = _residual(f, "")
    return _Arm("jobs AS j", "j.id", where, params)


def _wide_range(
    conn: sqlite3.Connection, f: JobFilter, time_arm: _Arm, cursor: int | None, descending: bool
) -> list[_Arm]:
    """How to read a time range over too many hours to read one by one: another index in
    id order if the filter has one; else the time index, which holds (time, id), so up to
    _SORTABLE of its entries are read and the page's ids kept without touching the table;
    else (a bigger range is most of the table) the table in id order."""
    for name, arms in _drivers(f).items():
        if name != "time" and all(arm.ordered for arm in arms):
            return arms
    if not time_arm.rest and _count(conn, [time_arm], cursor, descending, _SORTABLE) < _SORTABLE:
        return [replace(time_arm, hourly=False)]
    return [_table(f)]


def _by_ids(
    conn: sqlite3.Connection, ids: list[int], columns: str, descending: bool
) -> list[tuple[Any, ...]]:
    """The rows of ``columns`` of the jobs ``ids`` (in id order), read by id."""
    if not ids or columns == "j.id":
        return [(i,) for i in ids]
    marks = ",".join("?" * len(ids))
    found = conn.execute(f"SELECT {columns} FROM jobs AS j WHERE j.id IN ({marks})", ids)
    return sorted(found.fetchall(), key=lambda row: row[0], reverse=descending)


def read_filtered(
    conn: sqlite3.Connection,
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None = None,
    descending: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows of ``columns`` (on ``j``, the first being ``j.id``) of the jobs matching ``f``,
    ``limit`` at most, by id (newest first when ``descending``), after ``cursor``. The
    plan's counts and the page in one read transaction (a snapshot), unless the caller's
    own is open: the names the writer indexes between two statements would otherwise be
    in neither of the search's arms."""
    if conn.in_transaction:
        return _read(conn, f, columns, limit, cursor, descending)
    conn.execute(q.BEGIN_READ)
    try:
        return _read(conn, f, columns, limit, cursor, descending)
    finally:
        conn.execute(q.END_READ)


def _read(
    conn: sqlite3.Connection,
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None,
    descending: bool,
) -> list[tuple[Any, ...]]:
    arms = plan_filter(conn, f, cursor, descending)
    if len(arms) == 1 and arms[0].hourly:
        rest = (arms[0].rest, arms[0].rest_params)
        ids = hour_page(conn, f.since, f.until, limit, cursor, descending, rest=rest)
        if ids is not None:
            return _by_ids(conn, ids, columns, descending)
        arms = _wide_range(conn, f, arms[0], cursor, descending)
    if len(arms) == 1 and not arms[0].ordered:
        # The page's ids from the index alone (it holds the time and the id), then the rows.
        sql, params = arms[0].sql("j.id", descending, cursor, limit)
        return _by_ids(conn, [r[0] for r in conn.execute(sql, params)], columns, descending)
    rows: list[tuple[Any, ...]] = []
    for arm in arms:
        sql, params = arm.sql(columns, descending, cursor, limit)
        rows += conn.execute(sql, params).fetchall()
    if len(arms) > 1:  # one arm per state, or the search's two: merge them
        rows.sort(key=lambda row: row[0], reverse=descending)
    return rows[:limit]
