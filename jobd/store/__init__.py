"""The store layer: the contract (:mod:`.contract`) and its backends (:mod:`.sqlite`,
:mod:`.postgres`).

Above this package nothing builds a statement: the engine speaks in the
contract's intents, and :func:`open_store` picks the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jobd.store.codec import spec_from_json, spec_to_json
from jobd.store.contract import KEEP, Changes, GuardFailed, Store
from jobd.store.reads import DuePlan, JobFilter

__all__ = [
    "KEEP",
    "Changes",
    "DuePlan",
    "GuardFailed",
    "JobFilter",
    "Store",
    "open_store",
    "spec_from_json",
    "spec_to_json",
]


@asynccontextmanager
async def open_store(
    path: Path, *, synchronous: str = "full", database: str | None = None, node: str = "jobd"
) -> AsyncIterator[Store]:
    """Open the job database: the PostgreSQL one at the URL ``database`` when given (as the
    cluster node named ``node``), else
    SQLite at ``path`` (created and migrated as needed). Each backend is imported only
    when chosen: a daemon on SQLite never loads the PostgreSQL driver."""
    if database is not None:
        from jobd.store.postgres import open_store as open_postgres

        async with open_postgres(database, node=node) as pg:
            yield pg
        return
    from jobd.store.sqlite import open_store as open_sqlite

    async with open_sqlite(path, synchronous=synchronous) as store:
        yield store
