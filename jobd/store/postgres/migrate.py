"""The PostgreSQL schema: created, and migrated from older versions, at a node's start.

``sql/schema.sql`` is version 1. Every later change is a file of its own,
``sql/migrate-N.sql``, which brings the schema from version ``N - 1`` to ``N``.
:func:`migrate` runs under an advisory lock, in ONE transaction: nodes that start
together create or migrate the schema once, and a migration that fails leaves the
database as it was. A database newer than this jobd is refused (a node of an older
jobd must not write rows it does not understand).
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg

from jobd.core.errors import StoreError
from jobd.store.postgres import queries as q

_MIGRATION = re.compile(r"migrate-(\d+)\.sql")


def migrations() -> dict[int, str]:
    """``{version: sql}`` of every migration file shipped with this jobd."""
    folder = resources.files("jobd.store.postgres").joinpath("sql")
    found = {}
    for entry in folder.iterdir():
        m = _MIGRATION.fullmatch(entry.name)
        if m is not None:
            found[int(m.group(1))] = entry.read_text()
    return dict(sorted(found.items()))


def schema_version() -> int:
    """The version this jobd's schema files bring a database to."""
    return max(migrations(), default=1)


async def migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    """Create the schema when the database has none, else apply the migrations above its
    version; refuse a database whose schema is newer than this jobd's."""
    steps = migrations()
    newest = SCHEMA_VERSION
    async with conn.transaction():
        await conn.execute(q.SCHEMA_LOCK)
        row = await (await conn.execute(q.HAS_SCHEMA)).fetchone()
        if row is None or not row[0]:
            schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql")
            await conn.execute(schema.read_text())  # a trusted file of this package
            await conn.execute(q.INSERT_VERSION, ("1",))
            version = 1
        else:
            found = await (await conn.execute(q.SELECT_VERSION)).fetchone()
            version = int(found[0]) if found else 0
        if version > newest:
            raise StoreError(
                f"the database has jobd schema {version}; this jobd knows up to {newest}: "
                "upgrade jobd"
            )
        for number, sql in steps.items():
            if number > version:
                await conn.execute(sql)  # a trusted file of this package
                await conn.execute(q.UPDATE_VERSION, (str(number),))


#: The version this jobd's schema files bring a database to.
SCHEMA_VERSION = schema_version()
