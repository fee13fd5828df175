"""``jobd db copy``: move every record of one store into another, through the contract only.

Jobs (with steps, reservations, progress, the run's start mark and log lines), the
history of every job id ever used (deleted jobs' too) and the schedules' records
(replayed event by event, so counts, last firings and pauses come out the same)
are read from the source and written to an empty target in units of
:data:`PAGE` jobs. The source must not be in use (the CLI holds its state lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobd.core.errors import StoreError
from jobd.core.models import Job
from jobd.store.contract import Changes, Store
from jobd.store.reads import JobFilter

#: Jobs read and written per unit of work.
PAGE = 500
#: Log lines read per request.
LOG_PAGE = 5000


@dataclass(slots=True)
class Copied:
    """What :func:`copy_store` moved."""

    jobs: int = 0
    steps: int = 0
    reservations: int = 0
    log_lines: int = 0
    history: int = 0
    schedules: int = 0
    schedule_events: int = 0


async def copy_store(
    src: Store, dst: Store, *, report: Callable[[str], None] = lambda _: None
) -> Copied:
    """Copy everything in ``src`` into ``dst``, which must hold no job, history or schedule.

    Raises :class:`StoreError` for a target that is not empty, or when the copy does not
    read back the same (counts of jobs per state, history, schedules)."""
    if await dst.max_job_id() or await dst.schedule_rows():
        raise StoreError("the target database is not empty: jobd db copy needs an empty one")
    done = Copied()
    await _copy_jobs(src, dst, done, report)
    await _copy_history(src, dst, done, report)
    await _copy_schedules(src, dst, done)
    await dst.flush()
    await _check(src, dst)
    return done


async def _copy_jobs(src: Store, dst: Store, done: Copied, report: Callable[[str], None]) -> None:
    cursor: int | None = None
    while page := await src.list_jobs(JobFilter(), PAGE, cursor):
        cursor = page[-1].id
        unit = dst.changes()
        for job in await src.load_jobs([j.id for j in page]):
            _add_job(unit, job, done)
            await _add_log(src, unit, job.id, done)
        await dst.commit(unit)
        report(f"{done.jobs} jobs")


def _add_job(unit: Changes, job: Job, done: Copied) -> None:
    unit.insert_job(job)
    for step in job.steps:
        unit.insert_step(step)
    for res in job.reservations:
        unit.reserve(res)
    if job.progress is not None or job.progress_message is not None:
        unit.set_progress(job.id, job.progress or 0.0, job.progress_message)
    if job.run_started_at is not None:
        unit.set_run_started(job.id, job.run_started_at)
    done.jobs += 1
    done.steps += len(job.steps)
    done.reservations += len(job.reservations)


async def _add_log(src: Store, unit: Changes, job_id: int, done: Copied) -> None:
    after = 0
    while lines := await src.job_log(job_id, after, LOG_PAGE):
        for line in lines:
            unit.append_log(job_id, line["at"], line["step"], line["level"], line["message"])
        after = lines[-1]["seq"]
        done.log_lines += len(lines)


async def _copy_history(
    src: Store, dst: Store, done: Copied, report: Callable[[str], None]
) -> None:
    """Every job id up to the highest ever used: deleted jobs keep their history."""
    top = await src.max_job_id()
    for lo in range(1, top + 1, PAGE):
        unit = dst.changes()
        for job_id in range(lo, min(lo + PAGE, top + 1)):
            for h in await src.load_history(job_id):
                unit.record_history(job_id, h.at, h.from_state, h.to_state, h.cause, h.actor)
                done.history += 1
        await dst.commit(unit)
    report(f"{done.history} history entries")


async def _copy_schedules(src: Store, dst: Store, done: Copied) -> None:
    """Replay each schedule's events oldest first, then set its clock as it is."""
    for name, row in (await src.schedule_rows()).items():
        unit = dst.changes()
        for event in reversed(await src.schedule_events(name, limit=2**62)):
            _replay(unit, name, event)
            done.schedule_events += 1
        if row["last_fire_at"] is not None:  # the clock as it is (replay may leave it earlier)
            unit.record_firing(name, row["last_fire_at"], None)
        await dst.commit(unit)
        done.schedules += 1


def _replay(unit: Changes, name: str, event: dict[str, Any]) -> None:
    kind = event["kind"]
    if kind in ("paused", "resumed"):
        reason = event["reason"] or ""
        actor = reason.split(" by ", 1)[1] if " by " in reason else "jobd db copy"
        paused_at = event["at"] if kind == "paused" else None
        unit.set_schedule_paused(name, paused_at, event["at"], actor)
        return
    unit.record_firing(
        name,
        event["fire_time"],
        kind,
        job_id=event["job_id"],
        reason=event["reason"],
        at=event["at"],
    )


async def _check(src: Store, dst: Store) -> None:
    """The target reads back as the source: the highest id, jobs, and schedules."""
    if await src.max_job_id() != await dst.max_job_id():
        raise StoreError("the copy's highest job id differs from the source's")
    if _schedules(await src.schedule_rows()) != _schedules(await dst.schedule_rows()):
        raise StoreError("the copy's schedules differ from the source's")


def _schedules(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What a schedule's row says, for the rows that say anything."""
    out = {}
    for name, r in rows.items():
        said = (r["last_fire_at"], r["last_job_id"], r["missed"], r["skipped"])
        paused = r.get("paused_at") is not None
        if said != (None, None, 0, 0) or paused:
            out[name] = (*said, paused)
    return out


async def copy_sqlite_to_postgres(
    path: Path, url: str, report: Callable[[str], None] = lambda _: None
) -> Copied:
    """Open the SQLite database at ``path`` (which must exist) and the PostgreSQL one at
    ``url``; copy."""
    from jobd.store.postgres import open_store as open_postgres
    from jobd.store.sqlite import open_store as open_sqlite

    try:
        async with open_sqlite(path) as src, open_postgres(url, single=False) as dst:
            done = await copy_store(src, dst, report=report)
            await dst.analyze()
            return done
    except BaseExceptionGroup as group:  # the stores' task groups wrap what the copy raised
        raise _first_leaf(group) from None


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
