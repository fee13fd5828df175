"""The SQLite store: group commit through a writer process, reads on a connection of its own.

Its statements are in :mod:`.queries`, the schema in ``schema.sql``, the writer
process in :mod:`.sqlwriter` (standard library only)."""

from __future__ import annotations

from jobd.store.sqlite.store import SCHEMA_VERSION, SEND_AT, SqliteStore, open_store
from jobd.store.sqlite.units import Unit

__all__ = ["SCHEMA_VERSION", "SEND_AT", "SqliteStore", "Unit", "open_store"]
