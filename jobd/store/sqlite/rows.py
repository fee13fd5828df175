"""Rows of the SQLite store back into records (the reverse of :mod:`units`)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from jobd.core.models import HistoryEntry, Job, Reservation, Step
from jobd.core.states import JobState, StepState
from jobd.store.codec import error_from_json, loads, spec_from_json
from jobd.store.sqlite import queries as q

Row = sqlite3.Row | tuple[Any, ...]


def job_from_row(row: Row) -> Job:
    """A row of :data:`queries.JOB_COLUMNS`, without steps, reservations or history."""
    return Job(
        id=row[0],
        spec=spec_from_json(row[2]),
        state=JobState(row[1]),
        created_at=row[3],
        updated_at=row[4],
        error=error_from_json(row[5]),
        progress=row[6],
        progress_message=row[7],
        due_at=row[8],
        run_started_at=row[9],
    )


def step_from_row(r: Row) -> Step:
    """A row of :data:`queries.STEP_COLUMNS`."""
    return Step(
        job_id=r[0],
        idx=r[1],
        name=r[2],
        action=r[3],
        params=json.loads(r[4]),
        state=StepState(r[5]),
        attempts=r[6],
        started_at=r[7],
        ended_at=r[8],
        outputs=loads(r[9]),
        error=r[10],
        timeout=r[11],
        retries=r[12],
        retry_backoff=r[13],
        isolation=r[14],
        pgid=r[15],
    )


def reservation_from_row(r: Row) -> Reservation:
    return Reservation(r[0], r[1], r[2], r[3], r[4])


def history_from_row(r: Row) -> HistoryEntry:
    """A row of :data:`queries.SELECT_HISTORY`."""
    return HistoryEntry(
        r[0],
        None if r[1] is None else JobState(r[1]),
        None if r[2] is None else JobState(r[2]),
        r[3],
        r[4],
    )


def read_job(conn: sqlite3.Connection, job_id: int, full: bool) -> Job | None:
    """One job with its steps and reservations, and its history when ``full`` (in the
    reader's thread), read in one transaction so that the parts agree."""
    conn.execute(q.BEGIN_READ)
    try:
        row = conn.execute(q.SELECT_JOB, (job_id,)).fetchone()
        if row is None:
            return None
        job = job_from_row(row)
        job.steps = [step_from_row(r) for r in conn.execute(q.SELECT_STEPS, (job_id,))]
        rows = conn.execute(q.SELECT_RESERVATIONS, (job_id,))
        job.reservations = [reservation_from_row(r) for r in rows]
        if full:
            job.history = [history_from_row(r) for r in conn.execute(q.SELECT_HISTORY, (job_id,))]
        return job
    finally:
        conn.execute(q.END_READ)


def read_jobs(conn: sqlite3.Connection, job_ids: list[int]) -> list[Job]:
    """Jobs with steps and reservations, in the order of ``job_ids`` (in the reader's
    thread): three queries per :data:`queries.MAX_IDS` ids."""
    jobs: dict[int, Job] = {}
    for start in range(0, len(job_ids), q.MAX_IDS):
        chunk = job_ids[start : start + q.MAX_IDS]
        if not chunk:
            continue
        n = len(chunk)
        part = {row[0]: job_from_row(row) for row in conn.execute(q.select_jobs_by_id(n), chunk)}
        for r in conn.execute(q.select_steps_by_job(n), chunk):
            part[r[0]].steps.append(step_from_row(r))
        for r in conn.execute(q.select_reservations_by_job(n), chunk):
            part[r[0]].reservations.append(reservation_from_row(r))
        jobs.update(part)
    return [jobs[i] for i in job_ids if i in jobs]
