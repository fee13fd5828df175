"""A PostgreSQL database at an older schema, and the writer's way of writing to it: what the
upgrade tests of ``tests/test_postgres_schema*.py`` share."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg

from jobd.store.postgres import queries as q
from jobd.store.postgres.bulk import payload, plan
from jobd.store.postgres.migrate import migrations
from jobd.store.postgres.units import PgUnit

Conn = psycopg.Connection[Any]


def schema_at(url: str, version: int) -> None:
    """Make the empty database ``url`` one of schema ``version``: the package's first schema
    and its migrations up to ``version``, as a daemon of that version left it."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql").read_text()
        conn.execute(schema)  # the package's own file
        conn.execute(q.INSERT_VERSION, ("1",))
        for number, sql in migrations().items():
            if number <= version:
                conn.execute(sql)
        conn.execute(q.UPDATE_VERSION, (str(version),))


@contextmanager
def node(url: str, name: str) -> Iterator[Conn]:
    """A writer's session of node ``name`` (its jobs are that node's: the claim trigger)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(q.SET_NODE, (name,))
        yield conn


def apply(conn: Conn, *units: PgUnit) -> list[int]:
    """``units`` as the writer sends them (bulk.plan picks the statement); failed units."""
    sql, params, _ = plan(units, payload)
    row = conn.execute(sql, params).fetchone()  # our own statements
    assert row is not None
    return list(row[0])
