"""The search index of names (``job_names``) is filled once per transaction (schema 5),
and the history rows once per transaction: both must stay exactly as true as when
triggers and single statements wrote them.

Real SQLite files written by the real writer process, read back with a plain ``sqlite3``
connection; the real daemon over HTTP, killed with SIGKILL and started again.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.store import JobFilter
from jobd.store.sqlite import SCHEMA_VERSION, Unit, job_insert, open_store, sqlwriter
from tests import e2e

S = JobState


def _job(job_id: int, name: str | None) -> Job:
    return Job(job_id, JobSpec("ingest", name=name), S.CONFIRMED, 1.0e9, 1.0e9)


def _indexed(db: Path, text: str) -> list[int]:
    """The ids the trigram index itself holds for ``text`` (no check against ``jobs``)."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT rowid FROM job_names WHERE job_names MATCH ? ORDER BY rowid", (f'"{text}"',)
        )
        return [r[0] for r in rows]


def _stale(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM job_names_stale").fetchone()[0])


async def test_inserts_renames_and_deletes_in_one_transaction_keep_the_index_true(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        before = Unit()
        for job in (_job(1, "keepsake"), _job(2, "oldtitle"), _job(3, "doomed")):
            before.add(*job_insert(job))
        await store.commit(before)
        # One unit, one transaction: names not yet indexed are renamed and deleted too.
        unit = Unit().add(*job_insert(_job(4, None)))  # shown as ingest-4
        unit.add(*job_insert(_job(5, "firsttitle"))).add(
            "UPDATE jobs SET name = 'later' WHERE id = 5", ()
        )
        unit.add(*job_insert(_job(6, "fleeting"))).add("DELETE FROM jobs WHERE id = 6", ())
        unit.add("UPDATE jobs SET name = 'newtitle' WHERE id = 2", ())
        unit.add("DELETE FROM jobs WHERE id = 3", ())
        await store.commit(unit)
        searched = {
            text: [job.id for job in await store.list_jobs(JobFilter(search=text), 10, None)]
            for text in ("keepsake", "ingest-4", "later", "newtitle", "title")
        }
    assert searched == {
        "keepsake": [1],
        "ingest-4": [4],
        "later": [5],
        "newtitle": [2],
        "title": [2],
    }
    # The index holds each name as shown now, and nothing of an old name or a deleted job.
    assert [_indexed(db, t) for t in ("keepsake", "ingest-4", "later", "newtitle")] == [
        [1],
        [4],
        [5],
        [2],
    ]
    assert [_indexed(db, t) for t in ("oldtitle", "firsttitle", "doomed", "fleeting")] == [
        [],
        [],
        [],
        [],
    ]
    assert _stale(db) == 0
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("INSERT INTO job_names (job_names) VALUES ('integrity-check')")


async def test_a_refused_unit_leaves_no_job_name_or_history(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        # A guard after the insert (a savepoint rolls the unit back) ...
        late_guard = Unit().add(*job_insert(_job(7, "refusedjob")))
        late_guard.record_history(7, 1.0, None, S.CONFIRMED, "submitted", "test")
        late_guard.add("UPDATE jobs SET state = 'queued' WHERE id = 999", (), guard=True)
        # ... and a transition's guard, first, on a job in another state.
        await store.commit(Unit().add(*job_insert(_job(8, "keptjob"))))
        wrong_state = Unit().transition(8, S.QUEUED, S.RUNNING, 2.0, "picked", "test")
        results = await asyncio.gather(
            store.commit(late_guard), store.commit(wrong_state), return_exceptions=True
        )
        assert [type(r).__name__ for r in results] == ["GuardFailed", "GuardFailed"]
        assert await store.load_job(7) is None
        kept = await store.load_job(8)
        assert kept is not None and kept.history == []
        found = await store.list_jobs(JobFilter(search="job"), 10, None)
    assert [job.id for job in found] == [8]
    assert _indexed(db, "refusedjob") == [] and _stale(db) == 0


async def test_history_rows_of_one_transaction_keep_their_order(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        first = Unit().add(*job_insert(_job(9, "ordered")))
        first.record_history(9, 1.0, None, S.CONFIRMED, "submitted", "test")
        moves = [(S.CONFIRMED, S.QUEUED), (S.QUEUED, S.RUNNING), (S.RUNNING, S.COMPLETED)]
        units = [first] + [
            Unit().transition(9, frm, to, 2.0 + i, f"move {i}", "test")
            for i, (frm, to) in enumerate(moves)
        ]
        # Committed in the same turn of the loop: one batch, one transaction.
        await asyncio.gather(*(store.commit(u) for u in units))
        assert store.batches == 1
        job = await store.load_job(9)
    assert job is not None and job.state == S.COMPLETED
    assert [(h.from_state, h.to_state, h.cause) for h in job.history] == [
        (None, S.CONFIRMED, "submitted"),
        (S.CONFIRMED, S.QUEUED, "move 0"),
        (S.QUEUED, S.RUNNING, "move 1"),
        (S.RUNNING, S.COMPLETED, "move 2"),
    ]


#: A one-step workflow that needs no parameters.
PLAIN = """
[workflows.plain]
steps = [ { name = "e", action = "e2e_echo", params = {} } ]
"""


def _names(client: httpx.Client, search: str) -> list[str]:
    response = client.get("/v1/jobs", params={"search": search, "limit": 1000})
    assert response.status_code == 200, response.text
    return sorted(job["name"] for job in response.json()["items"])


def _client(daemon: e2e.Daemon) -> httpx.Client:
    transport = httpx.HTTPTransport(uds=str(daemon.layout.socket))
    return httpx.Client(transport=transport, base_url="http://jobd", timeout=60)


def _acknowledged_jobs_are_found(client: httpx.Client) -> list[str]:
    """Submit, and search for each job right after its submission is answered."""
    names = []
    for round_ in range(3):
        batch = [{"workflow": "plain", "name": f"quasar-{round_}-{i}"} for i in range(40)]
        response = client.post("/v1/batch/jobs", json={"jobs": batch})
        assert response.status_code == 201, response.text
        names += [job["name"] for job in batch]
        assert _names(client, f"quasar-{round_}-") == sorted(j["name"] for j in batch)
        single = client.post("/v1/jobs", json={"workflow": "plain", "name": f"pulsar-{round_}"})
        assert single.status_code == 201, single.text
        names.append(f"pulsar-{round_}")
        assert _names(client, f"pulsar-{round_}") == [f"pulsar-{round_}"]
    return sorted(names)


def _load_behind_the_daemon(db: Path, job_id: int, name: str) -> None:
    """A bulk loader's write (stdlib sqlite3, the schema's triggers), as bench/ fills do,
    without :func:`sqlwriter.index_names`: the next writer indexes it when it starts."""
    with closing(sqlite3.connect(db, isolation_level=None, timeout=30)) as conn:
        conn.execute(*job_insert(Job(job_id, JobSpec("plain", name=name), S.DRAFT, 1e9, 1e9)))


def test_search_finds_each_job_once_acknowledged_and_after_kill_9_and_restart() -> None:
    base = e2e.short_dir()
    layout = e2e.write_layout(base, workflows=PLAIN)
    db = layout.state / "jobd.db"
    daemon = e2e.start_daemon(layout)
    try:
        with _client(daemon) as client:
            names = _acknowledged_jobs_are_found(client)
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.proc.wait()
        daemon.notify.close()
        _load_behind_the_daemon(db, 900_000, "nebula-loaded")
        daemon = e2e.start_daemon(layout)
        with _client(daemon) as client:
            assert sorted(_names(client, "quasar-") + _names(client, "pulsar-")) == names
            assert _names(client, "nebula") == ["nebula-loaded"]
        assert _stale(db) == 0
        assert daemon.stop() == 0
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()
        shutil.rmtree(base, ignore_errors=True)


def test_a_bulk_loader_indexes_its_names_in_its_own_transaction(tmp_path: Path) -> None:
    """What bench/ fills do: the loader's own connection, :func:`sqlwriter.index_names`
    before its COMMIT, and the names are searchable with nothing left waiting."""
    db = tmp_path / "jobd.db"
    schema = Path(sqlwriter.__file__).parent / "sql" / "schema.sql"
    with closing(sqlite3.connect(db, isolation_level=None)) as conn:
        sqlwriter.migrate(conn, str(db), str(schema), SCHEMA_VERSION)
        conn.execute("BEGIN")
        conn.executemany(job_insert(_job(1, "x"))[0], [job_insert(_job(1, "solo"))[1]])
        sqlwriter.index_names(conn)
        conn.execute("COMMIT")
    assert _indexed(db, "solo") == [1] and _stale(db) == 0


async def test_a_set_based_transition_writes_its_history_after_the_rows_before_it(
    tmp_path: Path,
) -> None:
    """Its ``INSERT ... SELECT`` of history runs among the statements, not at the end: the
    rows that earlier units of the transaction appended are written before it."""
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        insert = Unit().add(*job_insert(_job(10, "setwise")))
        insert.record_history(10, 1.0, None, S.CONFIRMED, "submitted", "test")
        _, moved = await asyncio.gather(
            store.commit(insert),
            store.transition_many([10], S.CONFIRMED, S.CANCELED, 2.0, "canceled", "test"),
        )
        assert moved == [10] and store.batches == 1
        job = await store.load_job(10)
    assert job is not None
    assert [(h.from_state, h.to_state) for h in job.history] == [
        (None, S.CONFIRMED),
        (S.CONFIRMED, S.CANCELED),
    ]
