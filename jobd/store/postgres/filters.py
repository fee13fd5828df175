"""Filtered reads of jobs on PostgreSQL (``GET /v1/jobs``, the batch routes).

One statement per filter: PostgreSQL's planner chooses among the indexes of
``sql/schema.sql`` (by state, workflow, time, the ``job_keys`` of assets and
resources) from its statistics, which the SQLite store has to do by hand.
"""

from __future__ import annotations

from typing import Any

from jobd.store.postgres import queries as q
from jobd.store.reads import JobFilter


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where(f: JobFilter) -> tuple[list[str], list[Any]]:
    """The conditions of ``f`` on the row ``j``, with their parameters."""
    conds: list[str] = []
    params: list[Any] = []
    if f.states:
        conds.append("j.state = ANY(%s)")
        params.append([str(s) for s in f.states])
    if f.workflow is not None:
        conds.append("j.workflow = %s")
        params.append(f.workflow)
    for kind in ("asset", "resource"):
        value = getattr(f, kind)
        if value is not None:
            conds.append(q.FILTER_KEY)
            params += [kind, value]
    if f.search is not None:
        # ILIKE: ignoring case as SQLite's LIKE does (which folds ASCII only).
        conds.append(f"{q.FILTER_NAME} ILIKE %s ESCAPE '\\'")
        params.append(_like_pattern(f.search))
    if f.since is not None:
        conds.append(f"{q.FILTER_TIME} >= %s")
        params.append(f.since)
    if f.until is not None:
        conds.append(f"{q.FILTER_TIME} <= %s")
        params.append(f.until)
    return conds, params


def filtered(
    f: JobFilter, columns: str, limit: int, cursor: int | None, descending: bool
) -> tuple[str, list[Any]]:
    """The SELECT of ``columns`` of the jobs matching ``f``, by id, after ``cursor``."""
    conds, params = where(f)
    if cursor is not None:
        conds.append(f"j.id {'<' if descending else '>'} %s")
        params.append(cursor)
    clause = f" WHERE {' AND '.join(conds)}" if conds else ""
    order = "DESC" if descending else "ASC"
    params.append(limit)
    return f"SELECT {columns} FROM jobs j{clause} ORDER BY j.id {order} LIMIT %s", params
