"""The SQLite store: group commit through a writer process, reads on a connection of its own.

Its statements are in :mod:`.queries`, the schema and its migrations in ``sql/``, the writer
process in :mod:`.sqlwriter` (standard library only)."""

from __future__ import annotations

from jobd.store.codec import spec_to_json
from jobd.store.sqlite.filters import plan_filter, read_filtered
from jobd.store.sqlite.store import SCHEMA_VERSION, SEND_AT, SqliteStore, open_store
from jobd.store.sqlite.units import Unit, job_insert, step_insert

__all__ = [
    "SCHEMA_VERSION",
    "SEND_AT",
    "SqliteStore",
    "Unit",
    "job_insert",
    "open_store",
    "plan_filter",
    "read_filtered",
    "spec_to_json",
    "step_insert",
]
