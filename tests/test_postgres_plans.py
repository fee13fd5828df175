"""The PostgreSQL store's hot reads use their indexes (EXPLAIN on a real server, after ANALYZE).

A fresh table has no statistics, and a ``state = 'confirmed' ORDER BY due_at`` read that
scans and sorts every row makes a queue crawl: these plans are checked, not hoped for.
"""

from __future__ import annotations

import psycopg

from jobd.core.models import Job, JobSpec
from jobd.core.states import JobState
from jobd.store.postgres import open_store
from jobd.store.postgres import queries as q


async def test_due_and_pending_reads_use_their_partial_indexes(pg_url: str) -> None:
    async with open_store(pg_url) as store:
        unit = store.changes()
        for i in range(1, 5001):
            state = JobState.COMPLETED if i % 50 else JobState.CONFIRMED
            if i % 49 == 0:
                state = JobState.PENDING
            job = Job(
                id=i,
                spec=JobSpec(workflow="wf"),
                state=state,
                created_at=1.0,
                updated_at=1.0,
                due_at=float(i),
            )
            unit.insert_job(job)
        await store.commit(unit)
        await store.analyze()
    with psycopg.connect(pg_url) as conn:
        plans = {
            name: "\n".join(
                r[0]
                for r in conn.execute(f"EXPLAIN {sql}", params).fetchall()  # type: ignore[arg-type]
            )
            for name, sql, params in (
                ("due", q.DUE_IDS, (100.0, 10)),
                ("pending", q.PENDING_IDS, (10,)),
                ("next due", q.NEXT_DUE, (100.0,)),
            )
        }
    assert "jobs_due" in plans["due"], plans["due"]
    assert "jobs_pending" in plans["pending"], plans["pending"]
    assert "jobs_due" in plans["next due"], plans["next due"]
