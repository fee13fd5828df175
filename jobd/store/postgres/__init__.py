"""The PostgreSQL store: one database shared by the nodes of a cluster (SPEC §10).

Imported only when ``[daemon] database`` names a PostgreSQL URL, so that a daemon on
SQLite needs no driver. Statements are in :mod:`.queries`, the schema in ``sql/``.
The driver is psycopg 3: its pipeline mode sends a whole group-commit batch of
different statements, in order, in one round trip (the README's design notes).
"""

from __future__ import annotations

from jobd.store.postgres.migrate import SCHEMA_VERSION
from jobd.store.postgres.opening import open_store
from jobd.store.postgres.store import PostgresStore, safe_url
from jobd.store.postgres.units import PgUnit

__all__ = ["SCHEMA_VERSION", "PgUnit", "PostgresStore", "open_store", "safe_url"]
