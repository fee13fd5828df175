"""Filtered reads of jobs on PostgreSQL (``GET /v1/jobs``, the batch routes): the driving index.

PostgreSQL's planner chooses among indexes from statistics that take a condition's
matches to be spread evenly over the ids; they are not: a time range is a run of ids (a
day two weeks back is the oldest 7 %), and walking the primary key from the newest job
"until 100 match" then reads nearly every row. So this store chooses the index that
drives a read itself, as the SQLite store does (:mod:`jobd.store.sqlite.filters`):

* one condition with an index in id order (a workflow, an asset, a resource, states):
  that index, walked in id order until the page is full (one arm per state, merged);
* otherwise every candidate index counts, up to :data:`_SMALL`, the entries its own
  condition holds (one statement, index entries only), and the smallest, when under
  the bound, is read whole (materialised, then joined and sorted);
* otherwise a time range is read hour by hour (:mod:`.hours`), the rest checked on each
  row; otherwise an index in id order is walked, the rest checked on each row.

The tables and indexes are those of ``sql/schema.sql``, ``sql/migrate-12.sql`` and
``sql/migrate-20.sql``: ``jobs_by_state``, ``job_keys``, and on ``job_names`` (written once
per job, not at each state change) ``job_names_by_workflow``, ``job_names_by_hour`` and the
trigram index (for a search with three letters or digits in a row: with fewer,
pg_trgm has no trigram to look up and would read its whole index).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

from jobd.store.postgres import queries as q
from jobd.store.postgres.hours import hour_of, hour_page, keyed
from jobd.store.reads import JobFilter

#: An index whose condition holds fewer entries than this is read whole and sorted.
_SMALL = 2000
#: A search alone is tried first on the newest jobs: at most this many, walked by primary
#: key, each name checked; a page filled there needs no count of the search (which, for a
#: common text, reads job_names from its start until 2,000 names match).
_PROBE = 1000
#: A text pg_trgm can look up: three letters or digits in a row (one trigram at least).
_TRIGRAM = re.compile(r"[^\W_]{3}")
_SEARCH = "ILIKE %s ESCAPE '\\'"


@dataclass(frozen=True, slots=True)
class _Arm:
    """One index's condition on ``table`` (ids in ``id_column``): ``lead = value`` for an
    index on ``(lead, id)`` (after the equalities ``fixed``), else the conditions ``own``
    (a search, a time range), which no index gives in id order."""

    kind: str
    table: str
    id_column: str
    lead: str | None = None
    value: Any = None
    fixed: tuple[tuple[str, Any], ...] = ()
    own: tuple[tuple[str, Any], ...] = ()
    #: What a count of the arm checks (the time arm: its hours alone, index entries only)
    #: and in which order (the index's, so that the planner reads that index).
    counted: tuple[tuple[str, Any], ...] | None = None
    count_order: str = ""

    @property
    def ordered(self) -> bool:
        """Whether a walk of the arm's index gives the ids in id order."""
        return self.lead is not None or self.kind == "table"

    @property
    def source(self) -> str:
        if self.table == "jobs j":
            return "jobs j"
        return f"{self.table} JOIN jobs j ON j.id = {self.id_column}"

    def order(self, descending: bool) -> str:
        way = "DESC" if descending else "ASC"
        if self.lead is None:
            return f"{self.id_column} {way}"
        return f"{self.lead} {way}, {self.id_column} {way}"

    def where(
        self, cursor: int | None, descending: bool, count: bool = False
    ) -> tuple[list[str], list[Any]]:
        """The arm's conditions past ``cursor`` (a count's, with ``count``)."""
        terms = self.counted if count and self.counted is not None else self.own
        conds = [c for c, _ in (*self.fixed, *terms)]
        params = [p for _, p in (*self.fixed, *terms)]
        if self.lead is not None:
            more, more_params = keyed(self.lead, self.value, self.id_column, cursor, descending)
            return conds + more, params + more_params
        if cursor is not None:
            conds.append(f"{self.id_column} {'<' if descending else '>'} %s")
            params.append(cursor)
        return conds, params


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _time_conditions(f: JobFilter, time: str = q.FILTER_TIME) -> tuple[list[str], list[Any]]:
    """``f``'s since/until on the time expression ``time`` (the job row's, by default)."""
    conds: list[str] = []
    params: list[Any] = []
    if f.since is not None:
        conds.append(f"{time} >= %s")
        params.append(f.since)
    if f.until is not None:
        conds.append(f"{time} <= %s")
        params.append(f.until)
    return conds, params


def residual(f: JobFilter, skip: str = "") -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` but those of the driver ``skip``, on the job row ``j``."""
    conds: list[str] = []
    params: list[Any] = []
    if f.states and skip != "state":
        conds.append("j.state = ANY(%s)")
        params.append([str(s) for s in f.states])
    if f.workflow is not None and skip != "workflow":
        conds.append("j.workflow = %s")
        params.append(f.workflow)
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None and skip != kind:
            conds.append(q.FILTER_KEY)
            params += [kind, value]
    if f.search is not None and skip != "search":
        # ILIKE: ignoring case as SQLite's LIKE does (which folds ASCII only).
        conds.append(f"{q.FILTER_NAME} {_SEARCH}")
        params.append(_like_pattern(f.search))
    if skip != "time":
        times = _time_conditions(f)
        conds, params = conds + times[0], params + times[1]
    return conds, params


def _time_arm(f: JobFilter) -> _Arm:
    """The hours of the range (an index range of ``job_names_by_hour``) and its exact times,
    on ``job_names n``."""
    hours: list[tuple[str, Any]] = []
    if f.since is not None:
        hours.append((f"{q.HOUR} >= %s", hour_of(f.since)))
    if f.until is not None:
        hours.append((f"{q.HOUR} <= %s", hour_of(f.until)))
    times = _time_conditions(f, q.NAMES_TIME)
    own = (*hours, *zip(times[0], times[1], strict=True))
    return _Arm(
        "time", "job_names n", "n.job_id", own=own, counted=tuple(hours), count_order=q.HOUR
    )


def drivers(f: JobFilter) -> dict[str, list[_Arm]]:
    """Every index that can drive a read of ``f``, as arms (one per state for ``state``)."""
    out: dict[str, list[_Arm]] = {}
    if f.search is not None and _TRIGRAM.search(f.search):
        own = ((f"n.name {_SEARCH}", _like_pattern(f.search)),)
        out["search"] = [_Arm("search", "job_names n", "n.job_id", own=own)]
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None:
            fixed = (("k.kind = %s", kind),)
            arm = _Arm(kind, "job_keys k", "k.job_id", "k.key", value, fixed)
            out[kind] = [arm]
    if f.workflow is not None:
        arm = _Arm("workflow", "job_names n", "n.job_id", "n.workflow", f.workflow)
        out["workflow"] = [arm]
    if f.states:
        out["state"] = [
            _Arm("state", "jobs j", "j.id", "j.state", str(s)) for s in dict.fromkeys(f.states)
        ]
    if f.since is not None or f.until is not None:
        out["time"] = [_time_arm(f)]
    return out


def _count_sql(arms: list[_Arm], cursor: int | None, descending: bool) -> tuple[str, list[Any]]:
    """A sum of counts of the arms' entries, each up to :data:`_SMALL` (its index alone)."""
    parts, params = [], []
    for arm in arms:
        conds, arm_params = arm.where(cursor, descending, count=True)
        # In the index's order: the planner reads that index, not the table from its start
        # (a condition's rows may all be at the table's end: the newest hours, say).
        order = arm.count_order or (arm.order(descending) if arm.lead else "")
        by = f" ORDER BY {order}" if order else ""
        parts.append(
            f"(SELECT count(*) FROM (SELECT FROM {arm.table} WHERE {' AND '.join(conds)}{by}"
            f" LIMIT {_SMALL}) AS c)"
        )
        params += arm_params
    return " + ".join(parts), params


async def _counts(
    conn: psycopg.AsyncConnection[Any],
    found: dict[str, list[_Arm]],
    cursor: int | None,
    descending: bool,
) -> dict[str, int]:
    """How many entries each driver's index holds for its own condition, up to
    :data:`_SMALL` an arm: one statement for all of them."""
    sums, params = [], []
    for arms in found.values():
        sql, sum_params = _count_sql(arms, cursor, descending)
        sums.append(sql)
        params += sum_params
    sql = f"SELECT {', '.join(sums)}"
    row = await (await conn.execute(sql, params, prepare=False)).fetchone()
    assert row is not None  # a SELECT of expressions has its one row
    return dict(zip(found, row, strict=True))


def _walk(
    f: JobFilter, arms: list[_Arm], columns: str, limit: int, cursor: int | None, descending: bool
) -> tuple[str, list[Any]]:
    """The page read by walking each arm's index in id order, the rest checked on each row;
    several arms (states) merged by id (a Merge Append of index scans)."""
    rest, rest_params = residual(f, arms[0].kind)
    order = "DESC" if descending else "ASC"
    selects, params = [], []
    for arm in arms:
        conds, arm_params = arm.where(cursor, descending)
        clause = f" WHERE {' AND '.join(conds + rest)}" if conds or rest else ""
        selects.append(
            f"SELECT {columns} FROM {arm.source}{clause} ORDER BY {arm.order(descending)} LIMIT %s"
        )
        params += [*arm_params, *rest_params, limit]
    if len(selects) == 1:
        return selects[0], params
    union = " UNION ALL ".join(f"({s})" for s in selects)
    return f"SELECT * FROM ({union}) AS arms ORDER BY 1 {order} LIMIT %s", [*params, limit]


def _whole(
    f: JobFilter, arms: list[_Arm], columns: str, limit: int, cursor: int | None, descending: bool
) -> tuple[str, list[Any]]:
    """The page read from the arms' ids, every one of them (fewer than :data:`_SMALL` each):
    gathered first into an array (the planner cannot trade them for a walk of another
    index, its estimate of a condition may be far off), then the jobs read by primary key
    and sorted."""
    rest, rest_params = residual(f, arms[0].kind)
    ids, params = [], []
    for arm in arms:
        conds, arm_params = arm.where(cursor, descending)
        order = arm.count_order or (arm.order(descending) if arm.lead else "")
        by = f" ORDER BY {order}" if order else ""
        ids.append(f"SELECT {arm.id_column} FROM {arm.table} WHERE {' AND '.join(conds)}{by}")
        params += arm_params
    union = " UNION ALL ".join(f"({s})" for s in ids)
    clause = " AND ".join([f"j.id = ANY(ARRAY({union}))", *rest])
    way = "DESC" if descending else "ASC"
    sql = f"SELECT {columns} FROM jobs j WHERE {clause} ORDER BY j.id {way} LIMIT %s"
    return sql, [*params, *rest_params, limit]


def _table(
    f: JobFilter, columns: str, limit: int, cursor: int | None, descending: bool
) -> tuple[str, list[Any]]:
    """The page read by walking the primary key, every condition checked on each row."""
    return _walk(f, [_Arm("table", "jobs j", "j.id")], columns, limit, cursor, descending)


async def read_filtered(
    conn: psycopg.AsyncConnection[Any],
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None = None,
    descending: bool = True,
) -> list[tuple[Any, ...]]:
    """Rows of ``columns`` (on ``j``, the first being ``j.id``) of the jobs matching ``f``,
    ``limit`` at most, by id (newest first when ``descending``), after ``cursor``."""
    if limit <= _PROBE and list(drivers(f)) == ["search"]:  # (a batch's 10,001: never)
        probed = await _probe(conn, f, columns, limit, cursor, descending)
        if len(probed) == limit:
            return probed
    sql, params = await plan(conn, f, columns, limit, cursor, descending)
    if not sql:  # a time range read hour by hour
        rows = await hour_page(
            conn, f.since, f.until, columns, limit, cursor, descending, rest=residual(f, "time")
        )
        if rows is not None:
            return rows
        sql, params = _fallback(f, columns, limit, cursor, descending)
    # Never prepared: a prepared statement's plan may become the generic one (after five
    # runs), which plans a search without its text and a key without its count, and the
    # right index for ``name ILIKE '%clip%'`` is not that for ``'%promo-77%'``.
    return await (await conn.execute(sql, params, prepare=False)).fetchall()


async def plan(
    conn: psycopg.AsyncConnection[Any],
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None,
    descending: bool,
) -> tuple[str, list[Any]]:
    """The statement that reads the page (see the module's docstring); ``("", [])`` when
    the page is a time range to read hour by hour."""
    found = drivers(f)
    if not found:
        return _table(f, columns, limit, cursor, descending)
    if len(found) == 1:
        (arms,) = found.values()
        if all(arm.ordered for arm in arms):
            return _walk(f, arms, columns, limit, cursor, descending)
    if "search" in found and len(found) > 1:
        # The other drivers first: a search's count is a scan of its matches' names (the
        # planner reads job_names from its start for a common text), and a small other
        # driver is walked in id order, the name checked on each row, stopping at the page:
        # its rows read follow the page and the two conditions' density, not the matches of
        # either one alone (search + a rare state read 1,003 failed jobs by primary key).
        others = {kind: arms for kind, arms in found.items() if kind != "search"}
        counts = await _counts(conn, others, cursor, descending)
        smallest = min(counts, key=lambda kind: counts[kind])
        if counts[smallest] < _SMALL and all(arm.ordered for arm in others[smallest]):
            return _walk(f, others[smallest], columns, limit, cursor, descending)
        if counts[smallest] >= _SMALL:
            counts |= await _counts(conn, {"search": found["search"]}, cursor, descending)
    else:
        counts = await _counts(conn, found, cursor, descending)
    smallest = min(counts, key=lambda kind: counts[kind])
    if counts[smallest] < _SMALL:
        return _whole(f, found[smallest], columns, limit, cursor, descending)
    if "time" in found:
        return "", []
    return _fallback(f, columns, limit, cursor, descending)


async def _probe(
    conn: psycopg.AsyncConnection[Any],
    f: JobFilter,
    columns: str,
    limit: int,
    cursor: int | None,
    descending: bool,
) -> list[tuple[Any, ...]]:
    """The primary-key walk of :func:`_table` over the :data:`_PROBE` jobs next after
    ``cursor`` only: their last id read first (from the primary key alone), so that the
    planner plans a range of that many rows (a bound it cannot see, a subquery's, it took
    for a third of the table: a parallel scan, 30 ms to start its workers)."""
    way, past = ("DESC", "<") if descending else ("ASC", ">")
    conds: list[str] = []
    params: list[Any] = []
    if cursor is not None:
        conds.append(f"j.id {past} %s")
        params.append(cursor)
    where = f" WHERE {' AND '.join(conds)}" if conds else ""
    edge = (
        f"SELECT {'min' if descending else 'max'}(b.id) FROM"
        f" (SELECT j.id FROM jobs j{where} ORDER BY j.id {way} LIMIT {_PROBE}) AS b"
    )
    row = await (await conn.execute(edge, params, prepare=False)).fetchone()
    if row is None or row[0] is None:
        return []
    conds.append(f"j.id {'>=' if descending else '<='} %s")
    rest, rest_params = residual(f)
    clause = " AND ".join([*conds, *rest])
    sql = f"SELECT {columns} FROM jobs j WHERE {clause} ORDER BY j.id {way} LIMIT %s"
    cur = await conn.execute(sql, [*params, row[0], *rest_params, limit], prepare=False)
    return await cur.fetchall()


def _fallback(
    f: JobFilter, columns: str, limit: int, cursor: int | None, descending: bool
) -> tuple[str, list[Any]]:
    """No index small and no time range read by hours: the first index in id order walked,
    else the primary key."""
    for kind, arms in drivers(f).items():
        if kind != "time" and all(arm.ordered for arm in arms):
            return _walk(f, arms, columns, limit, cursor, descending)
    return _table(f, columns, limit, cursor, descending)
