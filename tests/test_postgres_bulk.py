"""The set-based batch path of the PostgreSQL store (``jobd_apply_bulk``, ``bulk.group``):
it takes only the batches it may, and writes exactly what ``jobd_apply`` writes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from jobd.core.models import ErrorOverlay, Job, JobSpec, OverlayCode, Step
from jobd.core.states import JobState as S
from jobd.store.contract import GuardFailed
from jobd.store.postgres import open_store
from jobd.store.postgres.bulk import group
from jobd.store.postgres.units import PgUnit
from tests import pgserver


def _job(job_id: int, assets: tuple[str, ...] = ()) -> Job:
    spec = JobSpec(workflow="wf", assets=assets)
    return Job(id=job_id, spec=spec, state=S.QUEUED, created_at=1.0, updated_at=1.0, due_at=1.0)


def _step(job_id: int, idx: int = 0, state: S = S.QUEUED) -> Step:
    return Step(job_id=job_id, idx=idx, name=f"s{idx}", action="noop", params={}, state=state)


def _insert(*job_ids: int, steps: int = 1, state: S = S.QUEUED) -> PgUnit:
    unit = PgUnit()
    for j in job_ids:
        job = _job(j, assets=("a",) if j % 2 else ())
        job.state = state
        unit.insert_job(job)
        for idx in range(steps):
            unit.insert_step(_step(j, idx))
        unit.record_history(j, 1.0, None, state, "submitted", "test")
    return unit


def _change(job_id: int, frm: S, to: S, idx: int | None = 0) -> PgUnit:
    unit = PgUnit().transition(job_id, frm, to, 2.0, "x", "test")
    if idx is not None:
        step = _step(job_id, idx, state=to)
        step.started_at, step.attempts = 2.0, 1
        unit.record_step(step)
    return unit


def test_group_takes_only_the_batches_whose_order_cannot_matter() -> None:
    queued, running = S.QUEUED, S.RUNNING
    assert group([_insert(1, 2), _change(1, queued, running), PgUnit()]) is not None
    assert group([_insert(1), _change(2, queued, running)]) is not None
    # A job changed twice, or changed before its insert, or inserted twice: jobd_apply.
    assert group([_change(1, queued, running), _change(1, running, S.COMPLETED)]) is None
    assert group([_change(1, queued, running), _insert(1)]) is None
    assert group([_insert(1), _insert(1)]) is None
    # Any other statement, a unit about two jobs, a step recorded twice, a lock statement.
    assert group([_insert(1), PgUnit().append_log(1, 1.0, None, "info", "x")]) is None
    two = _change(1, queued, running).record_step(_step(2))
    assert group([two]) is None
    twice = _change(1, queued, running).record_step(_step(1))
    assert group([twice]) is None
    locking = _insert(3)
    locking.locking = (["a"], [3], [])
    assert group([locking]) is None
    grouped = group([_insert(1, 2, steps=2), _change(2, running, queued, idx=1)])
    assert grouped is not None
    assert [len(grouped[k]) for k in "jsthr"] == [2, 4, 1, 3, 1]
    assert grouped["t"][0][0] == 1 and grouped["h"][2][0] == 1


def test_a_transition_of_a_job_inserted_in_its_batch_is_folded_into_the_insert() -> None:
    """Inserted queued, moved on from queued in the same batch: inserted in the target state
    (its time, error and due time), no UPDATE; from another state it stays an UPDATE (whose
    guard fails, as the loop's does); the units' own statements are left as they were."""
    insert, move = _insert(1, 2), _change(1, S.QUEUED, S.RUNNING)
    failing = _change(2, S.RUNNING, S.COMPLETED)
    before = json.dumps([insert.statements, move.statements])
    grouped = group([insert, move, failing])
    assert grouped is not None
    assert [row[1] for row in grouped["t"]] == failing.statements[:1]
    assert [(row[1], row[4], row[13]) for row in grouped["j"]] == [
        (1, "running", 2.0),
        (2, "queued", 1.0),
    ]
    assert [row[1][4] for row in grouped["h"]] == ["queued", "queued", "running", "completed"]
    assert json.dumps([insert.statements, move.statements]) == before
    late = PgUnit().transition(2, S.CONFIRMED, S.PENDING, 3.0, "x", "t", error=None, due_at=9.0)
    confirmed = _insert(2)
    confirmed.statements[0][4] = "confirmed"
    grouped = group([confirmed, late])
    assert grouped is not None and not grouped["t"]
    assert (grouped["j"][0][4], grouped["j"][0][9], grouped["j"][0][10]) == ("pending", 9.0, None)
    # Out of a held state (queued) to one that is not: an UPDATE, which keeps jobs.node.
    grouped = group([_insert(2), _change(2, S.QUEUED, S.PENDING, idx=None)])
    assert grouped is not None and len(grouped["t"]) == 1 and grouped["j"][0][4] == "queued"


def _batches() -> list[list[PgUnit]]:
    """Submissions, runs, outcomes, and guards that fail (a wrong state, an unknown job)."""
    q, r, c = S.QUEUED, S.RUNNING, S.COMPLETED
    hist = PgUnit().record_history(4, 3.0, r, r, "progress", "test")
    return [
        [_insert(1, 2, 3, steps=2), _change(1, q, r), _insert(4), _change(4, q, r, idx=None)],
        [_change(2, r, c), _change(1, r, c, idx=1), _change(3, q, r), _change(99, q, r)],
        [hist, _insert(5), _change(5, q, r), _change(2, q, r), PgUnit()],
        [_change(3, r, c), _change(4, c, r), _change(5, r, S.FAILED, idx=0)],
        # Folded (confirmed to pending; to running), not (out of a held state; a guard).
        [_insert(6, state=S.CONFIRMED), _overlay(6), _insert(7), _change(7, q, r)],
        [_insert(8), _change(8, q, S.PENDING, idx=None), _insert(9), _change(9, r, c)],
    ]


def _overlay(job_id: int) -> PgUnit:
    """A move that sets the job's error overlay and due time too."""
    error = ErrorOverlay(OverlayCode.NOT_CONFIRMED, "late", 3.0)
    return PgUnit().transition(
        job_id, S.CONFIRMED, S.PENDING, 3.0, "x", "t", error=error, due_at=9.0
    )


TABLES = {
    "jobs": "SELECT * FROM jobs ORDER BY id",
    "steps": "SELECT * FROM steps ORDER BY job_id, idx",
    "history": "SELECT job_id, at, from_state, to_state, cause, actor FROM history ORDER BY id",
    "keys": "SELECT * FROM job_keys ORDER BY kind, key, job_id",
}


async def _apply_all(
    url: str, bulk: bool, node: str | None = None
) -> tuple[list[list[int]], dict[str, list[Any]]]:
    async with open_store(url):  # creates and migrates the schema
        pass
    failed = []
    with psycopg.connect(url, autocommit=True) as conn:
        if node is not None:  # the writer of a node: its claims (jobs.node)
            conn.execute("SELECT set_config('jobd.node', %s, false)", (node,))
        for units in _batches():
            if bulk:
                grouped = group(units)
                assert grouped is not None
                sql, payload = "SELECT jobd_apply_bulk(%s::jsonb)", grouped
            else:
                sql, payload = "SELECT jobd_apply(%s::jsonb)", [u.statements for u in units]
            row = conn.execute(sql, (json.dumps(payload),)).fetchone()
            assert row is not None
            failed.append(sorted(row[0]))
        rows = {name: conn.execute(sql).fetchall() for name, sql in TABLES.items()}  # type: ignore[call-overload]
    return failed, rows


@pytest.mark.parametrize("node", [None, "a"])
async def test_bulk_writes_what_the_loop_writes(
    pg_server: str, pg_url: str, node: str | None
) -> None:
    """Also as a node's writer: the bulk insert claims a queued job itself (schema 11), the
    loop's through the claim trigger; the rows, ``jobs.node`` included, are the same."""
    with pgserver.fresh_database(pg_server) as other:
        loop = await _apply_all(pg_url, bulk=False, node=node)
        bulk = await _apply_all(other, bulk=True, node=node)
    assert loop[0] == [[], [0, 3], [], [1], [], [3]]
    assert bulk == loop
    assert len(loop[1]["history"]) == 21 and loop[1]["keys"]
    states = {row[0]: row[3] for row in loop[1]["jobs"]}
    assert [states[j] for j in range(6, 10)] == ["pending", "running", "pending", "queued"]
    holders = {row[0]: row[-1] for row in loop[1]["jobs"]}  # jobs.node: the last column
    assert holders[2] == node and holders[3] == node  # held (2 running), kept (3 completed)


def _as_node(url: str, node: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True)
    conn.execute("SELECT set_config('jobd.node', %s, false)", (node,))
    return conn


def _apply(conn: psycopg.Connection[Any], units: list[PgUnit], bulk: bool) -> list[int]:
    if bulk:
        sql, payload = "SELECT jobd_apply_bulk(%s::jsonb)", json.dumps(group(units))
    else:
        sql, payload = "SELECT jobd_apply(%s::jsonb)", json.dumps([u.statements for u in units])
    row = conn.execute(sql, (payload,)).fetchone()  # type: ignore[call-overload]
    assert row is not None
    return sorted(row[0])


async def test_only_the_node_holding_a_job_moves_it_on_either_path(pg_url: str) -> None:
    """The claim triggers skip a node's own jobs (schema 11); another node's stay refused."""
    async with open_store(pg_url):
        pass
    with _as_node(pg_url, "b") as b, _as_node(pg_url, "a") as a:
        assert _apply(b, [_insert(1), _insert(2)], bulk=True) == []
        for bulk in (True, False):
            assert _apply(a, [_change(1, S.QUEUED, S.RUNNING)], bulk) == [0]
        assert _apply(b, [_change(1, S.QUEUED, S.RUNNING)], bulk=True) == []
        assert _apply(b, [_change(2, S.QUEUED, S.RUNNING)], bulk=False) == []
        assert _apply(b, [_change(1, S.RUNNING, S.COMPLETED)], bulk=True) == []
        rows = a.execute("SELECT id, state, node FROM jobs ORDER BY id").fetchall()
    assert rows == [(1, "completed", "b"), (2, "running", "b")]


@pytest.mark.parametrize("refused", [False, True])
async def test_the_store_takes_the_bulk_path_with_the_same_outcomes(
    pg_url: str, refused: bool
) -> None:
    async with open_store(pg_url) as store:
        await store.commit(_insert(1, 2))
        before = store.bulk_batches
        units = [_change(1, S.QUEUED, S.RUNNING), _change(2, S.RUNNING, S.COMPLETED), _insert(3)]
        if refused:  # a duplicate job: the batch fails, then each unit alone
            units.append(_insert(1))
        results = await asyncio.gather(*(store.commit(u) for u in units), return_exceptions=True)
        assert results[0] is None and isinstance(results[1], GuardFailed) and results[2] is None
        if refused:
            assert not isinstance(results[3], GuardFailed) and isinstance(results[3], Exception)
        assert store.bulk_batches > before
        states = await store.job_states([1, 2, 3])
    assert {k: v[1] for k, v in states.items()} == {1: S.RUNNING, 2: S.QUEUED, 3: S.QUEUED}


async def test_the_write_functions_plan_by_keys_at_any_table_size(pg_url: str) -> None:
    """Their generic plans, made once per connection (maybe over a table still empty), must
    never be scans of a whole table (``sql/migrate-5.sql``)."""
    async with open_store(pg_url):
        pass
    names = [
        "jobd_apply",
        "jobd_apply_bulk",
        "jobd_apply_locked",
        "jobd_apply_split",
        "jobd_locks_release_node",
    ]
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY(%s)", (names,)
        ).fetchall()
    assert sorted({r[0] for r in rows}) == sorted(names)  # each overload checked below
    for name, config in rows:
        assert {"enable_seqscan=off", "enable_hashjoin=off", "enable_mergejoin=off"} <= set(
            config or ()
        ), name
