"""Set-wise transitions on the PostgreSQL store (``Store.transition_many``, ``many.py``): one
statement in one transaction for the whole set, each job still guarded on its own (its
state, its node's claim), in its place among the units queued, behind the fencing token.

tests/test_store_contract.py holds both stores to the contract's outcomes; these tests hold
what is PostgreSQL's own: one unit through the writer whatever the number of ids, the
claims of a cluster's nodes, and the fence."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from jobd.core.errors import StoreError
from jobd.core.models import Job, JobSpec, Reservation
from jobd.core.states import JobState as S
from jobd.store.postgres import open_store

N = 3000


def _job(job_id: int, state: S = S.QUEUED) -> Job:
    return Job(job_id, JobSpec("wf"), state, created_at=1.0, updated_at=1.0, due_at=1.0)


async def test_a_set_of_thousands_is_one_unit_in_its_place_among_the_others(
    pg_url: str,
) -> None:
    async with open_store(pg_url) as store:
        unit = store.changes()
        for i in range(1, N + 1):
            unit.insert_job(_job(i)).record_history(i, 1.0, None, S.QUEUED, "submitted", "t")
        for i in (2, 3):
            unit.reserve(Reservation(i, "r", 10.0 * i, 10.0 * i + 5))
        await store.commit(unit)
        units = store.units
        paused = store.changes().transition(1, S.QUEUED, S.PAUSED, 5.0, "paused", "t")
        done, moved = await asyncio.gather(
            store.commit(paused),  # queued first: applied first
            store.transition_many(
                list(range(1, N + 1)), S.QUEUED, S.CANCELED, 6.0, "canceled", "t", release=True
            ),
        )
        assert done is None
        # One unit for the set (the contract's default made one per job: N of them).
        assert store.units - units == 2
        assert sorted(moved) == list(range(2, N + 1))
        one, two = await store.load_job(1), await store.load_job(2)
    assert one is not None and two is not None
    assert [h.to_state for h in one.history] == [S.QUEUED, S.PAUSED]
    assert [(h.at, h.from_state, h.to_state, h.cause) for h in two.history[1:]] == [
        (6.0, S.QUEUED, S.CANCELED, "canceled")
    ]
    assert (two.state, two.updated_at, two.reservations) == (S.CANCELED, 6.0, [])
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute(
            "SELECT count(*), min(job_id), max(job_id) FROM history WHERE cause = 'canceled'"
        ).fetchone()
        assert rows == (N - 1, 2, N)
        assert conn.execute("SELECT count(*) FROM reservations").fetchone() == (0,)


async def test_only_the_node_holding_a_job_moves_it_set_wise(pg_url: str) -> None:
    """Queued jobs are held by the node that queued them (the claim trigger): another
    node's set-wise cancel skips them, row by row, and moves its own."""
    async with open_store(pg_url, node="a") as a, open_store(pg_url, node="b") as b:
        held_by_b = b.changes()
        for i in (1, 2, 3):
            held_by_b.insert_job(_job(i))
        await b.commit(held_by_b)
        held_by_a = a.changes()
        for i in (4, 5):
            held_by_a.insert_job(_job(i))
        await a.commit(held_by_a.insert_job(_job(6, S.CONFIRMED)))
        ids = [1, 2, 3, 4, 5, 6]
        assert sorted(await a.transition_many(ids, S.QUEUED, S.CANCELED, 2.0, "c", "t")) == [4, 5]
        assert sorted(await b.transition_many(ids, S.QUEUED, S.CANCELED, 3.0, "c", "t")) == [
            1,
            2,
            3,
        ]
        states = await a.job_states(ids)
        histories = {i: len(await a.load_history(i)) for i in ids}
    assert {i: s for i, (_, s) in states.items()} == {
        **dict.fromkeys((1, 2, 3, 4, 5), S.CANCELED),
        6: S.CONFIRMED,
    }
    assert histories == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 0}


async def test_a_fenced_node_moves_none_of_the_set(pg_url: str) -> None:
    """A token the node table does not hold (an epoch it never had): the set is refused
    whole, and the store takes no more writes (its task group ends with the refusal)."""
    refused: list[BaseException] = []
    with pytest.raises(BaseExceptionGroup):
        async with open_store(pg_url, node="a") as store:
            unit = store.changes()
            for i in range(1, 11):
                unit.insert_job(_job(i))
            await store.commit(unit)
            store.fence("a", 41)
            try:
                await store.transition_many(list(range(1, 11)), S.QUEUED, S.CANCELED, 2, "c", "t")
            except StoreError as exc:
                refused.append(exc)
    assert len(refused) == 1 and "is fenced" in str(refused[0])
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT DISTINCT state FROM jobs").fetchall() == [("queued",)]
        assert conn.execute("SELECT count(*) FROM history").fetchone() == (0,)
