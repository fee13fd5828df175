"""The store's writer process (jobd.sqlwriter): its life, its death, its lock."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import IO

import pytest

from jobd.core.errors import StoreError
from jobd.core.models import JobSpec, Step
from jobd.core.states import JobState, StepState
from jobd.store import GuardFailed, open_store, spec_from_json, spec_to_json
from jobd.store.sqlite import Unit, sqlwriter
from tests.enginekit import pid_gone, wait_until

ROOT = Path(__file__).parent.parent
INSERT = "INSERT INTO job_log (job_id, at, step, level, message) VALUES (?,?,?,?,?)"


def _log_unit(message: str) -> Unit:
    return Unit().add(INSERT, (1, 0.0, None, "info", message))


def _messages(db: Path) -> list[str]:
    with closing(sqlite3.connect(db)) as conn:
        return [r[0] for r in conn.execute("SELECT message FROM job_log ORDER BY seq")]


def _writer_pids(db: Path) -> list[int]:
    """Live writer processes for ``db``, whoever their parent is."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            any(a.endswith(b"sqlwriter.py") for a in argv)
            and str(db).encode() in argv
            and not pid_gone(int(entry.name))
        ):
            pids.append(int(entry.name))
    return pids


async def test_commits_land_and_a_guard_fails_only_its_unit(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        await store.commit(_log_unit("first"))
        guarded = Unit().add("UPDATE jobs SET state = 'x' WHERE id = ?", (42,), guard=True)
        with pytest.raises(GuardFailed):
            await store.commit(guarded.add(INSERT, (1, 0.0, None, "info", "not written")))
        await store.commit(_log_unit("second"))
    assert _messages(db) == ["first", "second"]
    assert _writer_pids(db) == []  # closing the store ends its writer


async def test_a_dead_writer_fails_every_write_with_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    with pytest.raises(BaseExceptionGroup) as caught:
        async with open_store(db) as store:
            await store.commit(_log_unit("kept"))
            os.kill(store._writer.pid, signal.SIGKILL)
            with pytest.raises(StoreError, match=r"database writer process .* exited"):
                await store.commit(_log_unit("lost"))
            with pytest.raises(StoreError, match="database writer process"):
                await store.commit(_log_unit("refused at once"))
    # The store's own task group ends with the writer's error too (the daemon exits on it).
    assert any(isinstance(e, StoreError) for e in caught.value.exceptions)
    assert _messages(db) == ["kept"]
    async with open_store(db) as store:  # and the next start is clean
        await store.commit(_log_unit("after"))
    assert _messages(db) == ["kept", "after"]


async def test_the_writer_ignores_a_terminals_interrupt(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        os.kill(store._writer.pid, signal.SIGINT)
        os.kill(store._writer.pid, signal.SIGTERM)
        await store.commit(_log_unit("still here"))
    assert _messages(db) == ["still here"]


async def test_a_newer_schema_is_refused_naming_both_versions(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="schema version 99, newer than this jobd"):
        async with open_store(db):
            pass
    assert _writer_pids(db) == []


CHILD = textwrap.dedent("""
    import sys, anyio
    from pathlib import Path
    from jobd.store.sqlite import Unit, open_store
    INSERT = "INSERT INTO job_log (job_id, at, step, level, message) VALUES (?,?,?,?,?)"

    async def main():
        async with open_store(Path(sys.argv[1])) as store:
            await store.commit(Unit().add(INSERT, (1, 0.0, None, "info", "durable")))
            print(store._writer.pid, flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
""")


async def test_kill_9_of_the_daemon_ends_its_writer_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        writer = int(child.stdout.readline())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    await wait_until(lambda: pid_gone(writer), timeout=15)  # end of input: it exits
    assert _messages(db) == ["durable"]
    async with open_store(db) as store:
        await store.commit(_log_unit("restarted"))
    assert _messages(db) == ["durable", "restarted"]


@pytest.fixture
def held_writer_lock(tmp_path: Path) -> Iterator[IO[str]]:
    """The writer lock of ``tmp_path/jobd.db``, held as a live writer would hold it."""
    with open(tmp_path / "jobd.db-writer.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield lock


def _start_writer(db: Path, wait: str) -> subprocess.Popen[bytes]:
    schema = ROOT / "jobd" / "store" / "sqlite" / "sql" / "schema.sql"
    return subprocess.Popen(
        [sys.executable, "-I", "-S", sqlwriter.__file__, str(db), "full", str(schema), "1", wait],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )


def _first_frame(out: bytes) -> tuple[str, str | None]:
    (size,) = sqlwriter.HEADER.unpack(out[: sqlwriter.HEADER.size])
    kind, message = pickle.loads(out[sqlwriter.HEADER.size : sqlwriter.HEADER.size + size])
    return kind, message


def test_a_second_writer_waits_for_the_lock_then_names_it(held_writer_lock: IO[str]) -> None:
    proc = _start_writer(Path(held_writer_lock.name[: -len("-writer.lock")]), "0.2")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    kind, message = _first_frame(out)
    assert kind == "error" and message is not None and "another writer has held" in message
    assert "jobd.db-writer.lock" in message


def _blocked_on(path: Path) -> bool:
    """Someone waits for a lock on ``path`` (``->`` lines of /proc/locks)."""
    inode = f":{path.stat().st_ino} "
    return any(
        "->" in line and inode in line for line in Path("/proc/locks").read_text().splitlines()
    )


async def test_a_writer_waits_for_the_previous_one_to_finish(held_writer_lock: IO[str]) -> None:
    lock = Path(held_writer_lock.name)
    proc = _start_writer(Path(str(lock)[: -len("-writer.lock")]), "30")
    try:
        await wait_until(lambda: _blocked_on(lock), timeout=15)
    finally:
        fcntl.flock(held_writer_lock, fcntl.LOCK_UN)  # the previous writer is done
    out, _ = proc.communicate(input=b"", timeout=30)
    assert proc.returncode == 0
    assert _first_frame(out) == ("ready", None)


@pytest.mark.parametrize(
    "spec",
    [
        JobSpec(workflow="w"),
        JobSpec(
            workflow="w",
            name="n",
            params={"a": [1]},
            assets=("x",),
            shared_assets=("y",),
            resources=("r",),
            pools=("p",),
            start_at=0.0,
            end_at=5.0,
            preroll=1.5,
            postroll=2.0,
            priority=-3,
            timeout=0.0,
            lock_timeout=3.0,
            state=JobState.DRAFT,
            schedule="s",
        ),
    ],
)
def test_a_spec_survives_the_round_trip_through_its_sparse_json(spec: JobSpec) -> None:
    text = spec_to_json(spec)
    assert spec_from_json(text) == spec
    if spec == JobSpec(workflow="w"):  # defaults are left out; 0.0 (a time) is not
        assert text == '{"workflow":"w","state":"confirmed"}'
    else:
        assert '"start_at":0.0' in text and '"timeout":0.0' in text


def test_a_step_copy_has_every_field() -> None:
    values = {
        "job_id": 7,
        "idx": 2,
        "name": "n",
        "action": "a",
        "params": {"p": 1},
        "state": StepState.FAILED,
        "attempts": 3,
        "started_at": 1.0,
        "ended_at": 2.0,
        "outputs": {"o": 2},
        "error": "e",
        "timeout": 9.0,
        "retries": 4,
        "retry_backoff": 0.5,
        "isolation": "process",
        "pgid": 123,
    }
    assert set(values) == {f.name for f in dataclasses.fields(Step)}
    step = Step(**values)  # type: ignore[arg-type]
    copied = step.copy()
    assert copied == step and copied is not step


async def test_a_failing_statement_fails_its_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "jobd.db"
    async with open_store(db) as store:
        await store.commit(_log_unit("before"))
        broken = _log_unit("rolled back with its unit").add("INSERT INTO nowhere VALUES (1)", ())
        with pytest.raises(StoreError, match="no such table: nowhere"):
            await store.commit(broken)
        await store.commit(_log_unit("after"))
    assert _messages(db) == ["before", "after"]
