"""The store layer: the contract (:mod:`.contract`) and its backends (:mod:`.sqlite`).

Above this package nothing builds a statement: the engine speaks in the
contract's intents, and :func:`open_store` picks the backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from jobd.store.codec import spec_from_json, spec_to_json
from jobd.store.contract import KEEP, Changes, DuePlan, GuardFailed, JobFilter, Store

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
async def open_store(path: Path, *, synchronous: str = "full") -> AsyncIterator[Store]:
    """Open the job database at ``path`` (SQLite, created and migrated as needed)."""
    from jobd.store.sqlite import open_store as open_sqlite

    async with open_sqlite(path, synchronous=synchronous) as store:
        yield store
