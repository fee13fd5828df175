"""Operations on many jobs (``POST /v1/batch/{operation}``): each job done or refused as
:meth:`Operations.operate <jobd.engine.operations.Operations.operate>` would, together.

A batch loads its jobs in chunks, sends the ones other nodes of a cluster hold to their
nodes (one request per node), and then:

* **set-wise**, the operations of :data:`~.operations.SET_WISE` on jobs with no run to
  stop (a cancel of queued, pending, confirmed ... jobs): one set-based write for all
  (:meth:`Transitions.apply_many`, ``Store.transition_many``), events and refusals per
  job as before;
* **one by one**, every other job: its handler, each in an asyncio task of its own so that
  their writes share transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from jobd.core.errors import InvalidTransition, JobdError, NotFound
from jobd.core.models import Job
from jobd.core.states import ACTIVE, TRANSITIONS, JobState, allowed_operations, check_transition
from jobd.engine.context import Context
from jobd.engine.forward import MOVED, NodeUnavailable, Outcome, Remote
from jobd.engine.lineup import Lineup
from jobd.engine.operations import RUN_STATES, SET_WISE, Handler, SetWise
from jobd.engine.ports import Grants, OneJob, Placement
from jobd.engine.transitions import Transitions
from jobd.plan.bookings import BookingIndex

S = JobState
#: Jobs of one batch operation in progress at once (their writes share transactions).
BATCH_CONCURRENCY = 10_000
#: Jobs read per hop when a batch loads its jobs.
LOAD_BATCH = 500


@dataclass(slots=True)
class BatchOutcome:
    """What :meth:`Engine.operate_many` did: ids done and refused, in the order asked."""

    done: list[int]
    refused: list[tuple[int, JobdError]]
    #: ``resubmit``: the new job of each job done, in the same order.
    created: list[int]

    @classmethod
    def of(cls, ids: list[int], outcome: Mapping[int, JobdError | Job | None]) -> BatchOutcome:
        done, refused, created = [], [], []
        for job_id in ids:
            result = outcome[job_id]
            if isinstance(result, JobdError):
                refused.append((job_id, result))
                continue
            done.append(job_id)
            if isinstance(result, Job):
                created.append(result.id)
        return cls(done, refused, created)


class BatchOperations:
    def __init__(
        self,
        ctx: Context,
        lineup: Lineup,
        transitions: Transitions,
        bookings: BookingIndex,
        placement: Placement,
        grants: Grants,
        remote: Remote,
        one: OneJob,
    ) -> None:
        self._ctx = ctx
        self._lineup = lineup
        self._transitions = transitions
        self._bookings = bookings
        self._placement = placement
        self._grants = grants
        self._remote = remote
        #: The one-job operations: their handlers, and :meth:`Operations.operate` for a job
        #: decided again alone.
        self._one = one

    async def perform_here(
        self, job_ids: list[int], operation: str, actor: str
    ) -> dict[int, JobdError | None]:
        """Another node's operation on jobs this node holds: per job None (done) or the
        refusal, each done with this node's engine and never forwarded again."""
        outcome = await self.operate_many(job_ids, operation, actor, here=True)
        return {**dict.fromkeys(outcome.done), **dict(outcome.refused)}

    async def operate_many(
        self, job_ids: list[int], operation: str, actor: str, *, here: bool = False
    ) -> BatchOutcome:
        """See :meth:`jobd.engine.Engine.operate_many`; the jobs other nodes hold are sent
        to them, one request per node (unless ``here``), the ones that go set-wise are
        written together (:meth:`_operate_set`), each of the others is its handler's."""
        handler = self._one.handler(operation)
        ids = list(dict.fromkeys(job_ids))
        jobs = await self._load_many(ids)
        outcome: dict[int, JobdError | Job | None] = {}
        if not here and operation != "resubmit":
            outcome.update(await self._forward_many(jobs, operation, actor))
        rest = [i for i in ids if i not in outcome]
        way = SET_WISE.get(operation)
        if way is not None:
            together = [jobs[i] for i in rest if self._set_wise(jobs.get(i), operation)]
            if together:
                outcome.update(await self._operate_set(together, operation, way, actor))
                rest = [i for i in rest if i not in outcome]
        # The others in chunks, each job its own asyncio task: an anyio task group and a
        # capacity limiter cost ~100 µs a job.
        for start in range(0, len(rest), BATCH_CONCURRENCY):
            chunk = rest[start : start + BATCH_CONCURRENCY]
            results = await asyncio.gather(
                *(self._operate_one(jobs.get(i), i, operation, handler, actor) for i in chunk)
            )
            outcome.update(zip(chunk, results, strict=True))
        return BatchOutcome.of(ids, outcome)

    @staticmethod
    def _set_wise(job: Job | None, operation: str) -> bool:
        """Whether a batch's ``operation`` takes ``job`` set-wise: it may start from the job's
        state and there is no run to stop (a refusal or a run goes to the job's handler)."""
        return (
            job is not None
            and job.state not in RUN_STATES
            and job.state in TRANSITIONS[operation].sources
        )

    async def _operate_set(
        self, jobs: list[Job], operation: str, way: SetWise, actor: str
    ) -> dict[int, JobdError | Job | None]:
        """Jobs of a batch that all go ``way``: one set-based write instead of a task, a unit
        and a guard each (10,000 cancels: 3.2 -> 1.05 s). What each job's handler does
        around its write is done here for all: out of the line before, the booking index
        and ``pending`` after, one admission at the end. A job that changed meanwhile is
        decided again, alone (:meth:`operate`: done, forwarded, or refused as it is now)."""
        if way.leaves_line:
            for job in jobs:
                self._placement.unqueue(job.id)
                self._grants.leave(job.id)
        result = await self._transitions.apply_many(
            jobs, operation, way.target, cause=way.cause, actor=actor, release=way.releases
        )
        outcome: dict[int, JobdError | Job | None] = {job.id: exc for job, exc in result.failed}
        for job, frm in result.moved:
            outcome[job.id] = None
            if frm == S.PENDING:
                self._placement.leave_pending()
            if way.releases:
                self._bookings.remove_job(job.id)
        if way.leaves_line:
            await self._placement.admit()
        for job in result.changed:
            outcome[job.id] = await self._operate_moved(job.id, operation, actor)
        return outcome

    async def _forward_many(
        self, jobs: dict[int, Job], operation: str, actor: str
    ) -> dict[int, JobdError | Job | None]:
        """The jobs of ``jobs`` that other nodes hold, done (or refused) by their nodes."""
        lineup = self._lineup
        held = [i for i, job in jobs.items() if job.state in ACTIVE and i not in lineup]
        by_node: dict[str, list[int]] = {}
        for job_id, node in (await self._remote.holders(held) if held else {}).items():
            by_node.setdefault(node, []).append(job_id)
        if not by_node:
            return {}
        answers = await asyncio.gather(
            *(self._forward_to(node, ids, operation, actor) for node, ids in by_node.items())
        )
        outcome: dict[int, JobdError | Job | None] = {}
        for answer in answers:
            for job_id, result in answer.items():
                outcome[job_id] = (
                    await self._operate_moved(job_id, operation, actor)
                    if result == MOVED
                    else result
                    if isinstance(result, JobdError)
                    else None
                )
        return outcome

    async def _forward_to(
        self, node: str, ids: list[int], operation: str, actor: str
    ) -> dict[int, Outcome]:
        try:
            return await self._remote.forward(node, ids, operation, actor)
        except NodeUnavailable as exc:
            return dict.fromkeys(ids, exc)

    async def _operate_moved(self, job_id: int, operation: str, actor: str) -> JobdError | None:
        """A job of a batch that moved while its node was asked, or changed while its
        set-wise write was in flight: decided again, alone, as it is now."""
        try:
            await self._one.operate(job_id, operation, actor)
        except InvalidTransition as exc:
            if exc.details.get("job_id") is None:  # as the batch names every refused job
                return InvalidTransition(operation, exc.state, exc.allowed, job_id=job_id)
            return exc
        except JobdError as exc:
            return exc
        return None

    async def _operate_one(
        self, job: Job | None, job_id: int, operation: str, handler: Handler, actor: str
    ) -> JobdError | Job | None:
        """One job of a batch: the new job (resubmit), None (done) or the refusal."""
        if job is None:
            return NotFound("job", job_id)
        try:
            try:
                check_transition(operation, job.state)
            except InvalidTransition:
                allowed = allowed_operations(job.state)
                raise InvalidTransition(operation, job.state, allowed, job_id=job_id) from None
            result = await handler(job, actor)
        except JobdError as exc:
            return exc
        return result if isinstance(result, Job) else None

    async def _load_many(self, job_ids: list[int]) -> dict[int, Job]:
        """The jobs of ``job_ids`` that exist: a running one as the engine holds it, the others
        read in chunks (one reader hop each)."""
        active = self._lineup.active
        jobs = {i: active[i].job for i in job_ids if i in active}
        rest = [i for i in job_ids if i not in jobs]
        for start in range(0, len(rest), LOAD_BATCH):
            for job in await self._ctx.store.load_jobs(rest[start : start + LOAD_BATCH]):
                # Loaded while the read was in flight: the engine's copy is the live one.
                jobs[job.id] = active[job.id].job if job.id in active else job
        return jobs
