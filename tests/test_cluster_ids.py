"""Job ids from the database (SPEC §10): unique across the nodes of a cluster, taken in
blocks ahead of need, never below an id already used, and a refusal uses none.

A real PostgreSQL server (tests/pgserver.py), a fresh database per test; the "other
node" is a second connection taking ids through the same function a node uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psycopg
import pytest

from jobd.core.errors import ValidationError
from jobd.engine import Engine
from jobd.engine.ids import BLOCK
from jobd.plugin.host import PluginHost
from jobd.store.postgres import open_store
from tests.enginekit import make_config, spec, step, workflow

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def pg_engine(tmp: Path, url: str) -> AsyncIterator[Engine]:
    config = make_config(tmp, [workflow("w", step("a", "t-noop"))], database=url)
    plugins = PluginHost(config.daemon.plugin_dirs)
    plugins.load()
    async with open_store(url) as store:
        engine = Engine(config, store, plugins)
        async with anyio.create_task_group() as tg:
            await tg.start(engine.run)
            try:
                yield engine
            finally:
                tg.cancel_scope.cancel()


def _take(url: str, n: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT jobd_take_ids(%s)", (n,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_blocks_of_ids_never_overlap_between_takers(pg_url: str) -> None:
    async with open_store(pg_url) as store:
        first = await store.take_ids(5)
        other = _take(pg_url, 10)  # another node
        again = await store.take_ids(1)
        blocks = [range(first, first + 5), range(other, other + 10), range(again, again + 1)]
        results: list[range] = []

        async def one(n: int) -> None:
            start = await store.take_ids(n)
            results.append(range(start, start + n))

        async with anyio.create_task_group() as tg:
            for n in range(1, 30):
                tg.start_soon(one, n)
    taken = [i for block in blocks + results for i in block]
    assert len(taken) == len(set(taken)) == 5 + 10 + 1 + sum(range(1, 30))
    assert min(taken) == 1


async def test_ids_go_on_after_the_highest_id_already_used(tmp_path: Path, pg_url: str) -> None:
    async with pg_engine(tmp_path, pg_url) as engine:
        job = await engine.submit(spec("w"))
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as `jobd db copy` leaves it
        conn.execute("UPDATE jobs SET id = 7000 WHERE id = %s", (job.id,))
        conn.execute("INSERT INTO history (job_id, at, cause, actor) VALUES (9000, 0, 'x', 'y')")
    assert _take(pg_url, 1) == 9001


async def test_a_node_s_jobs_take_ids_from_its_blocks_and_a_refusal_uses_none(
    tmp_path: Path, pg_url: str
) -> None:
    async with pg_engine(tmp_path, pg_url) as engine:
        first = await engine.submit(spec("w"))
        other = _take(pg_url, 3)  # another node took the next ids of the sequence
        with pytest.raises(ValidationError):
            await engine.submit(spec("nope"))
        second = await engine.submit(spec("w"))
        assert second.id == first.id + 1  # from the node's block: no gap, no wait
        assert not other <= second.id < other + 3
        # More than a block at once: the node takes what it needs first, then checks.
        many = await engine.submit_many([spec("w") for _ in range(BLOCK + 10)])
        ids = [job.id for job in many] + [first.id, second.id]
        assert len(set(ids)) == len(ids) and not set(ids) & set(range(other, other + 3))
        later = [(await engine.submit(spec("w"))).id for _ in range(BLOCK)]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT count(*), count(DISTINCT id) FROM jobs").fetchone()
    assert rows == (len(ids) + len(later),) * 2


async def test_a_schema_1_database_is_migrated_and_its_ids_go_on(pg_empty_url: str) -> None:
    pg_url = pg_empty_url
    from importlib import resources

    from jobd.store.postgres import SCHEMA_VERSION

    schema = resources.files("jobd.store.postgres").joinpath("sql/schema.sql").read_text()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(schema)  # type: ignore[call-overload]  # a trusted file of the package
        conn.execute("INSERT INTO jobd_meta VALUES ('schema_version', '1')")
        conn.execute(
            "INSERT INTO jobs (id, workflow, state, spec, created_at, updated_at)"
            " VALUES (42, 'w', 'completed', %s, 0, 0)",
            ('{"workflow": "w"}',),
        )
    async with open_store(pg_url) as store:
        assert await store.take_ids(2) == 43
        assert [j.id for j in await store.load_jobs([42])] == [42]
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT value FROM jobd_meta WHERE key = 'schema_version'").fetchone()
    assert row == (str(SCHEMA_VERSION),) and SCHEMA_VERSION >= 2
