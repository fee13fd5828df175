"""Names not indexed yet (``job_names_stale``): the writer indexes new jobs' names once
``index_at`` wait, after ``index_idle`` seconds idle, or at the end of its input, and the
search finds every job meanwhile, exactly as the index would.

Real SQLite files, the real store and its writer process, read through the store and with
a plain ``sqlite3`` connection; crashes are SIGKILLs of real processes.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from jobd.core.errors import StoreError
from jobd.core.models import Job
from jobd.store import JobFilter
from jobd.store.sqlite import SqliteStore, Unit, job_insert, open_store, spec_to_json
from tests.test_filters import FILTERS, expected, make_jobs
from tests.test_names_index import _indexed, _job, _stale

#: Never reached by a test's own writes: the names wait until the test says.
NEVER = 10**9
ROOT = Path(__file__).resolve().parent.parent


def _renamed(job: Job) -> Job:
    return dataclasses.replace(job, spec=dataclasses.replace(job.spec, name=f"Renamed-{job.id}"))


async def _page_through(store: SqliteStore, f: JobFilter) -> tuple[list[int], list[int]]:
    """Every match by pages of 700 newest first, and at once oldest first."""
    got: list[int] = []
    cursor = None
    while True:
        page = [job.id for job in await store.list_jobs(f, 700, cursor)]
        got += page
        if len(page) < 700:
            break
        cursor = page[-1]
    return got, await store.match_ids(f, 10**6)


@pytest.mark.parametrize(("stale", "index_at"), [("none", 1), ("half", 3001), ("all", NEVER)])
async def test_every_filter_matches_the_reference_with_names_waiting(
    tmp_path: Path, stale: str, index_at: int
) -> None:
    """6,000 jobs stored in two transactions (3,001 then 2,999): with ``index_at`` 3,001
    the first's names are indexed and the second's wait. Then, with names waiting, a
    twelfth of the jobs renamed and a seventeenth deleted, indexed or not."""
    db = tmp_path / "jobd.db"
    jobs = make_jobs()
    renamed = {job.id for job in jobs if job.id % 12 == 5}
    deleted = {job.id for job in jobs if job.id % 17 == 3}
    async with open_store(db, synchronous="off", index_at=index_at, index_idle=3600) as store:
        for part in (jobs[:3001], jobs[3001:]):
            unit = Unit()
            for job in part:
                unit.add(*job_insert(job))
            await store.commit(unit)
        edits = Unit()
        for job in jobs:
            if job.id in renamed:
                spec = spec_to_json(_renamed(job).spec)
                name = f"Renamed-{job.id}"
                edits.add("UPDATE jobs SET spec = ?, name = ? WHERE id = ?", (spec, name, job.id))
            if job.id in deleted:
                edits.add("DELETE FROM jobs WHERE id = ?", (job.id,))
        await store.commit(edits)
        waiting = {"none": 0, "half": 2999, "all": 6000}[stale]
        assert _stale(db) == waiting - len([i for i in deleted if i > 6000 - waiting])
        now = [_renamed(j) if j.id in renamed else j for j in jobs if j.id not in deleted]
        wrong = {}
        for f in [*FILTERS, JobFilter(search="renamed-"), JobFilter(search="renamed-4")]:
            want = expected(now, f, {})
            newest_first, oldest_first = await _page_through(store, f)
            if newest_first != want or oldest_first != want[::-1]:
                wrong[repr(f)] = (len(newest_first), len(oldest_first), len(want))
        # Still waiting while the store is open: the reads above saw them unindexed.
        assert _stale(db) == waiting - len([i for i in deleted if i > 6000 - waiting])
    assert wrong == {}
    assert _stale(db) == 0  # the clean close indexed them
    # Indexed as each is now: job 5 by its new name only, job 3 (deleted) not at all.
    assert 5 in _indexed(db, "Renamed-5") and 5 not in _indexed(db, "ingest-5")
    assert 3 in deleted and _indexed(db, "Clip-00003") == []


async def test_names_are_indexed_once_index_at_wait(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db, index_at=10, index_idle=3600) as store:
        for i in range(1, 10):
            await store.commit(Unit().add(*job_insert(_job(i, f"tenfold-{i}"))))
        assert (_stale(db), _indexed(db, "tenfold")) == (9, [])
        found = await store.list_jobs(JobFilter(search="tenfold"), 100, None)
        assert [job.id for job in found] == list(range(9, 0, -1))
        # The tenth is indexed with the nine, in the transaction that stores it.
        await store.commit(Unit().add(*job_insert(_job(10, "tenfold-10"))))
        assert (_stale(db), _indexed(db, "tenfold")) == (0, list(range(1, 11)))


async def test_names_are_indexed_when_the_writer_is_idle(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db, index_at=NEVER, index_idle=0.05) as store:
        await store.commit(Unit().add(*job_insert(_job(1, "idlename"))))
        deadline = time.monotonic() + 30
        while _indexed(db, "idlename") != [1]:
            assert time.monotonic() < deadline, "the idle writer did not index the name"
            await anyio.sleep(0.01)
        assert _stale(db) == 0


async def test_a_clean_close_indexes_the_waiting_names(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db, index_at=NEVER, index_idle=3600) as store:
        unit = Unit()
        for i in range(1, 6):
            unit.add(*job_insert(_job(i, f"closing-{i}")))
        await store.commit(unit)
        assert _stale(db) == 5
    assert _stale(db) == 0 and _indexed(db, "closing") == [1, 2, 3, 4, 5]


async def test_a_writer_killed_with_names_waiting_loses_none(tmp_path: Path) -> None:
    """SIGKILL of the writer itself: the names stay committed in ``job_names_stale``; the
    next writer indexes them before it answers anything."""
    db = tmp_path / "jobd.db"
    broken = []
    try:
        async with open_store(db, index_at=NEVER, index_idle=3600) as store:
            await store.commit(Unit().add(*job_insert(_job(1, "survivor"))))
            os.kill(store._writer.pid, signal.SIGKILL)
            await store._writer.wait_gone()
            with pytest.raises(StoreError):
                await store.commit(Unit().add(*job_insert(_job(2, "toolate"))))
    except* StoreError as group:  # the store ends with its writer's end, as the daemon does
        broken.append(group)
    assert broken
    assert (_stale(db), _indexed(db, "survivor")) == (1, [])
    async with open_store(db, index_at=NEVER, index_idle=3600) as store:
        assert (_stale(db), _indexed(db, "survivor")) == (0, [1])
        found = await store.list_jobs(JobFilter(search="survivor"), 10, None)
        assert [job.id for job in found] == [1]
        assert await store.load_job(2) is None


#: A process that holds the store, its names waiting, until it is killed.
HOLDER = """
import sys, anyio
from pathlib import Path
from jobd.store.sqlite import Unit, job_insert, open_store
from tests.test_names_index import _job

async def main(db):
    async with open_store(db, index_at=10**9, index_idle=3600) as store:
        await store.commit(Unit().add(*job_insert(_job(1, "orphaned"))))
        print(store._writer.pid, flush=True)
        await anyio.sleep_forever()

anyio.run(main, Path(sys.argv[1]))
"""


def _holder(db: Path) -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone too (the killed holder was its parent: init reaps it soon).
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.parametrize("who", ["the daemon", "the daemon and its writer"])
def test_a_daemon_killed_with_names_waiting_loses_none(tmp_path: Path, who: str) -> None:
    """The daemon's process killed: its writer reads the end of its input and indexes the
    waiting names before it exits. Both killed at once: the next writer indexes them."""
    db = tmp_path / "jobd.db"
    proc, writer = _holder(db)
    try:
        assert _stale(db) == 1
    finally:
        if who == "the daemon":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    deadline = time.monotonic() + 30
    while not _gone(writer):
        assert time.monotonic() < deadline, "the writer did not exit"
        time.sleep(0.01)
    if who == "the daemon":
        assert (_stale(db), _indexed(db, "orphaned")) == (0, [1])
        return
    assert (_stale(db), _indexed(db, "orphaned")) == (1, [])

    async def reopen() -> list[int]:
        async with open_store(db) as store:
            assert (_stale(db), _indexed(db, "orphaned")) == (0, [1])
            return [job.id for job in await store.list_jobs(JobFilter(search="orphan"), 9, None)]

    assert anyio.run(reopen) == [1]
