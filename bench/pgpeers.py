"""jobd's PostgreSQL peers, measured the way ``bench/pg.py`` measures jobd.

Each peer runs in this process on its own fresh database of the same server: N jobs
submitted one at a time by ``submitters`` concurrent tasks while the peer's worker runs,
timed from the first submission until the N-th job's handler returned (for a step of
``step_s`` seconds, the handler sleeps that long). ``locks=10``: each job holds one of 10
keys while it runs (procrastinate's ``lock=``; pgqueuer has no per-key lock).

* **procrastinate** (psycopg 3): ``App(PsycopgConnector)``, one worker with
  ``concurrency`` 16 (its jobs run as asyncio tasks), LISTEN/NOTIFY on, its other options
  at their defaults (``fetch_job_polling_interval`` 5 s: a worker is woken by a new job's
  NOTIFY, not by a lock's release). Each job is one ``defer_async`` (its own transaction)
  and, when done, ``procrastinate_finish_job`` (another).
* **pgqueuer** (asyncpg): one ``QueueManager`` on its own connection, ``batch_size`` 10
  (its default), ``max_concurrent_tasks`` unlimited; each job one ``Queries.enqueue`` over
  an asyncpg pool. pgqueuer deletes a finished job from its queue table and writes its
  log row through a buffer (``JobStatusLogBuffer``): a job is done when the handler has
  returned, and its log row may still be in memory.

Needs ``procrastinate``, ``pgqueuer`` and ``asyncpg`` (``bench/requirements.txt``, i.e.
``bench/.venv``): never jobd's dependencies.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta
from typing import Any

#: procrastinate's worker concurrency (its jobs are asyncio tasks in one process).
CONCURRENCY = 16


class _Done:
    """Counts handler returns; ``event`` is set at the N-th."""

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.event = asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.event.set()


async def _submit(n: int, submitters: int, one: Any, batch: int) -> None:
    """Call ``one(i, count)`` for the batches of ``batch`` jobs (1: one job a call) of
    range(n), from ``submitters`` concurrent tasks."""
    step = max(batch, 1)

    async def submitter(k: int) -> None:
        for i in range(k * step, n, submitters * step):
            await one(i, min(step, n - i))

    await asyncio.gather(*(submitter(k) for k in range(submitters)))


async def _timed(
    n: int, submitters: int, one: Any, done: _Done, limit_s: float, batch: int = 1
) -> float:
    t0 = time.perf_counter()
    await _submit(n, submitters, one, batch)
    try:
        await asyncio.wait_for(done.event.wait(), limit_s)
    except TimeoutError:
        raise RuntimeError(f"{done.count} of {n} jobs done in {limit_s:.0f} s") from None
    return n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- procrastinate


async def procrastinate_run(
    url: str,
    n: int,
    *,
    locks: int = 0,
    step_s: float = 0.0,
    submitters: int = 16,
    limit_s: float = 600.0,
    batch: int = 1,
) -> float:
    """Jobs/s through procrastinate on the (empty) database at ``url``; ``batch`` > 1:
    submitted by ``batch_defer_async`` of that many jobs (no locks then)."""
    import procrastinate

    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    done = _Done(n)
    connector = procrastinate.PsycopgConnector(conninfo=url, min_size=4, max_size=24)
    app = procrastinate.App(connector=connector)

    @app.task(name="bench_noop")
    async def noop() -> None:
        if step_s:
            await asyncio.sleep(step_s)
        done.hit()

    async def one(i: int, count: int) -> None:
        if batch > 1:
            await noop.batch_defer_async(*([{}] * count))
        elif locks:
            await noop.configure(lock=f"asset-{i % locks}").defer_async()
        else:
            await noop.defer_async()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=CONCURRENCY, wait=True, install_signal_handlers=False)
        )
        try:
            return await _timed(n, submitters, one, done, limit_s, batch)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


# ----------------------------------------------------------------------------- pgqueuer


async def pgqueuer_run(
    url: str,
    n: int,
    *,
    step_s: float = 0.0,
    submitters: int = 16,
    limit_s: float = 600.0,
    batch: int = 1,
) -> float:
    """Jobs/s through pgqueuer on the (empty) database at ``url``. No per-key locks.
    ``batch`` > 1: each ``enqueue`` call takes that many jobs (its list form)."""
    import asyncpg
    from pgqueuer.db import AsyncpgDriver, AsyncpgPoolDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    logging.getLogger("pgqueuer").setLevel(logging.WARNING)
    done = _Done(n)
    conn = await asyncpg.connect(url)
    pool = await asyncpg.create_pool(url, min_size=4, max_size=submitters)
    try:
        await Queries(AsyncpgDriver(conn)).install()
        qm = QueueManager(Queries(AsyncpgDriver(conn)))

        @qm.entrypoint("bench_noop")
        async def noop(job: Any) -> None:
            if step_s:
                await asyncio.sleep(step_s)
            done.hit()

        enqueue = Queries(AsyncpgPoolDriver(pool)).enqueue

        async def one(i: int, count: int) -> None:
            if batch > 1:
                await enqueue(["bench_noop"] * count, [None] * count, [0] * count)
            else:
                await enqueue("bench_noop", None)

        worker = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=5)))
        try:
            return await _timed(n, submitters, one, done, limit_s, batch)
        finally:
            qm.shutdown.set()
            await asyncio.wait_for(asyncio.gather(worker, return_exceptions=True), 60)
    finally:
        await pool.close()
        await conn.close()
