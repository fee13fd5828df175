"""The engine's façade: its public surface, the parts behind it, and its lifecycle.

The parts (each owns its state; they reach each other through :mod:`.ports`):

===================  ============================================================
``Transitions``      the one path that changes a job's state (:mod:`.transitions`)
``Fanout``           listeners, SSE subscribers, plugin observers (:mod:`.fanout`)
``Intake``           validation, steps, templating, reservations, ids (:mod:`.intake`)
``Admission``        the due timer, pending, the run queue (:mod:`.admission`)
``Handoff``          per-asset locks from pick to the end of a run: in memory
                     (:mod:`.handoff`) or a cluster's, in the database (:mod:`.cluster_handoff`)
``Workers``          pick, run, outcome (:mod:`.workers`)
``Operations``       cancel, pause, retry, ... on one job (:mod:`.operations`)
``BatchOperations``  one operation on many jobs, set-wise where it can (:mod:`.batch`)
``Recovery``         the caches rebuilt from the store; bookings re-checked (:mod:`.recovery`)
``Queries``          what is read without changing anything (:mod:`.queries`)
===================  ============================================================
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jobd.config import Config, keep_restart_only
from jobd.core.errors import JobdError
from jobd.core.events import JobEvent
from jobd.core.models import Job, JobSpec
from jobd.engine.admission import Admission
from jobd.engine.batch import BatchOperations, BatchOutcome
from jobd.engine.cluster import ClusterNode, LocalNode
from jobd.engine.cluster_handoff import ClusterHandoff
from jobd.engine.context import Context
from jobd.engine.fanout import Fanout
from jobd.engine.forward import Forwarder, LocalForwarder, Remote
from jobd.engine.handoff import LockHandoff
from jobd.engine.host import EngineRunHost
from jobd.engine.intake import Intake
from jobd.engine.lineup import Lineup
from jobd.engine.locks import LockManager
from jobd.engine.operations import Operations
from jobd.engine.parked import PARKED_MAX, PARKED_PER_PLACE, Parked
from jobd.engine.ports import Handoff
from jobd.engine.queries import Queries
from jobd.engine.recovery import Recovery
from jobd.engine.relay import ClusterRelay, LocalRelay, NewsDesk, Relay
from jobd.engine.runqueue import RunQueue
from jobd.engine.transitions import Transitions
from jobd.engine.workers import IdleWorkers, Workers
from jobd.plan.bookings import BookingIndex
from jobd.plan.schedules import Schedules
from jobd.plan.timers import Timers
from jobd.plugin.host import PluginHost
from jobd.run.runner import SHUTDOWN, RunControl, Runner
from jobd.run.windows import LiveWindows
from jobd.store import JobFilter, Store

log = structlog.get_logger("jobd.engine")


class Engine:
    """Owns the run queue, workers, lock manager, bookings and timers; writes through the store."""

    def __init__(
        self,
        config: Config,
        store: Store,
        plugins: PluginHost,
        *,
        clock: Callable[[], float] = time.time,
        node: str | None = None,
    ) -> None:
        """``store`` comes from ``async with jobd.store.open_store(config.daemon.db_path,
        synchronous=config.daemon.synchronous) as store``; ``plugins`` is a loaded PluginHost.
        ``node``: this node's name in a cluster (default: ``[daemon] node``, else the host
        name)."""
        ctx = self._ctx = Context(config, store, plugins, clock)
        news, membership = store.news(), store.membership()
        #: The one listening connection for the cluster's news (None on SQLite: one node).
        self._desk = None if news is None else NewsDesk(news)
        self.cluster: LocalNode = (
            LocalNode(ctx, clock())
            if membership is None or self._desk is None
            else ClusterNode(ctx, clock(), membership, self._desk)
        )
        self.booking_index = BookingIndex(config.resources, config.pools)
        self.timers = Timers(clock=clock)
        self._lineup = Lineup()
        self._fanout = Fanout(ctx, self._lineup)
        # Pending jobs kept as placed: on one node only (on a cluster others change them).
        places = config.daemon.run_queue_size
        limit = min(PARKED_PER_PLACE * places, PARKED_MAX) if self._desk is None else 0
        parked = Parked(limit)
        self._transitions = Transitions(ctx, self._fanout, parked)
        idle = IdleWorkers()
        self._admission = Admission(ctx, self._lineup, self._transitions, self.timers, idle)
        self._handoff = self._make_handoff(idle, node)
        self._make_relay(node)
        self.runner = Runner(EngineRunHost(ctx, self._fanout))
        self._build_parts(idle)
        self.schedules = Schedules(self)

    def _make_handoff(self, idle: IdleWorkers, node: str | None) -> Handoff:
        """In memory on SQLite; the database's on PostgreSQL (every node shares them)."""
        ctx = self._ctx
        shared = ctx.store.asset_locks(self._node_name(node))
        parts = (ctx, self._lineup, self._transitions, self.booking_index, idle)
        return LockHandoff(*parts) if shared is None else ClusterHandoff(*parts, shared)

    def _make_relay(self, node: str | None) -> None:
        """What crosses nodes beside the store: the other nodes' events on this node's
        stream, operations to the node holding a job; nothing on SQLite (one node)."""
        desk = self._desk
        self._relay: Relay = LocalRelay()
        self._forwarder: Forwarder | None = None
        if desk is not None:
            name = self._node_name(node)
            self._relay = ClusterRelay(self._fanout, desk, name, self._ctx.store.flush)
            self._forwarder = Forwarder(desk, name, desk.news.holders)

    def _node_name(self, node: str | None) -> str:
        # ``[daemon] node`` (cluster-core's key), else the host name as SPEC §10 says.
        return node or getattr(self._ctx.config.daemon, "node", None) or socket.gethostname()

    def _build_parts(self, idle: IdleWorkers) -> None:
        """The parts that use the ones made first; each gets only what its ports say."""
        ctx, lineup, transitions, fanout = self._ctx, self._lineup, self._transitions, self._fanout
        bookings, admission, handoff = self.booking_index, self._admission, self._handoff
        self._workers = Workers(
            ctx, lineup, transitions, fanout, handoff, admission, idle, bookings, self.runner
        )
        self._intake = Intake(ctx, lineup, transitions, fanout, bookings, admission, idle)
        live = self._workers.live
        remote: Remote = LocalForwarder() if self._forwarder is None else self._forwarder
        self._operations = Operations(
            ctx,
            lineup,
            transitions,
            fanout,
            bookings,
            admission,
            handoff,
            self._intake,
            live,
            remote,
        )
        self._batch = BatchOperations(
            ctx, lineup, transitions, bookings, admission, handoff, remote, self._operations
        )
        if self._forwarder is not None:
            self._forwarder.bind(self._batch.perform_here, ctx.spawn)
        self._recovery = Recovery(
            ctx, lineup, transitions, bookings, admission, handoff, self._intake, idle, live
        )
        self._queries = Queries(
            ctx,
            lineup,
            transitions,
            bookings,
            admission,
            self._workers,
            handoff,
            live.windows,
        )
        self.cluster.bind(self._recovery.adopt, admission.cluster_news)

    # ================================================================ shared handles
    @property
    def config(self) -> Config:
        return self._ctx.config

    @property
    def store(self) -> Store:
        return self._ctx.store

    @property
    def plugins(self) -> PluginHost:
        return self._ctx.plugins

    @property
    def clock(self) -> Callable[[], float]:
        return self._ctx.clock

    @property
    def accepting(self) -> bool:
        """False while draining: due jobs stay in the store for the next start."""
        return self._ctx.accepting

    @property
    def queue(self) -> RunQueue:
        return self._admission.queue

    @property
    def windows(self) -> LiveWindows:
        """Live windows: running jobs whose steps are done, on a timer, holding no worker."""
        return self._workers.live.windows

    @property
    def locks(self) -> LockManager:
        """The in-memory lock manager (a one-node engine on SQLite; benchmarks wrap it)."""
        handoff = self._handoff
        if not isinstance(handoff, LockHandoff):
            raise TypeError("a cluster's asset locks are in the database, not in memory")
        return handoff.locks

    @property
    def active(self) -> dict[int, RunControl]:
        return self._lineup.active

    @property
    def running(self) -> set[int]:
        return self._workers.running

    @property
    def _subscribers(self) -> set[MemoryObjectSendStream[JobEvent]]:
        return self._fanout.subscribers

    # ================================================================ lifecycle
    def add_listener(self, listener: Callable[[JobEvent], None]) -> None:
        """Call ``listener(event)`` (synchronously, on the event loop) after each committed
        change; metrics use this. A raising listener is logged and ignored."""
        self._fanout.add_listener(listener)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover from the store, start workers and timers, then ``task_status.started()``.

        Runs until cancelled; call :meth:`drain` first for a graceful stop.
        """
        ctx = self._ctx
        self._install_log_sink()
        self._fanout.has_observers = ctx.plugins.observes_events
        async with anyio.create_task_group() as tg:
            ctx.tg = tg
            await tg.start(self.timers.run)
            await tg.start(self.windows.run)
            # A cluster's node: other nodes' bookings reach the booking index (SQLite: none);
            # listening before recovery reads the bookings, so that none is missed.
            await tg.start(ctx.store.follow_reservations, self._recovery.refresh_reservations)
            await tg.start(self._relay.run)
            if self._desk is not None:  # other nodes' events and operations: one connection
                await tg.start(self._desk.run)
            await self.cluster.join()  # before anything is written: the fencing token
            await self._recovery.recover()
            for _ in range(ctx.config.daemon.workers):
                tg.start_soon(self._workers.worker)
            ctx.accepting = True
            await self.schedules.start()
            await self._admission.process_due()
            await self._admission.admit()
            await tg.start(self.cluster.run)
            log.info(
                "engine ready",
                workers=ctx.config.daemon.workers,
                run_queue_size=self.queue.capacity,
                pending=self._admission.pending,
            )
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    if self._workers.concluding:  # outcomes handed to the store: let them land
                        with contextlib.suppress(JobdError):
                            await ctx.store.flush()

    async def drain(self, grace: float) -> None:
        """Stop admitting jobs; let running steps finish for ``grace`` s, then interrupt them
        (recorded as interrupted, resumed on the next start)."""
        ctx, workers = self._ctx, self._workers
        ctx.accepting = False
        ctx.draining = True
        self._admission.stop_timer()
        with anyio.move_on_after(grace):
            while workers.running:
                await workers.wait_idle()
        for job_id in list(workers.running):
            rc = self._lineup.get(job_id)
            if rc is not None:
                rc.stop(SHUTDOWN)
        with anyio.move_on_after(max(5.0, ctx.config.daemon.kill_grace + 2)):
            while workers.running:
                await workers.wait_idle()
        self._handoff.drained()
        await ctx.store.flush()

    def _install_log_sink(self) -> None:
        try:
            from jobd.logging import set_job_log_sink
        except ImportError:  # pragma: no cover - logging module missing in a partial install
            return
        set_job_log_sink(self._log_line)

    def _log_line(self, job_id: int, step: str | None, level: str, message: str, at: float) -> None:
        store = self._ctx.store
        store.commit_nowait(store.changes().append_log(job_id, at, step, level, message))
        self._fanout.log_written(job_id, at)

    async def reload(self, config: Config, plugins: PluginHost | None = None) -> list[str]:
        """Swap in a new, already-validated config (and the plugins loaded with it, if
        given: steps that start from now on use their actions); returns warnings (e.g.
        jobs whose resources vanished, which now carry an error overlay). Keys bound at
        start-up keep their running values (``jobd.config.RESTART_ONLY_DAEMON_KEYS``)."""
        ctx = self._ctx
        if plugins is not None:
            ctx.plugins = plugins
            self._fanout.has_observers = plugins.observes_events
        config, changed = keep_restart_only(ctx.config, config)
        warnings = [f"{', '.join(changed)}: take effect on restart"] if changed else []
        enabled = {s.name for s in ctx.config.schedules if s.enabled}
        ctx.config = config
        warnings += await self._recovery.revalidate_bookings("reload")
        await self.schedules.reload(enabled)
        if warnings:
            log.warning("reload affected jobs", warnings=warnings)
        return warnings

    # ================================================================ submit & edit
    async def submit(
        self,
        spec: JobSpec,
        *,
        actor: str = "api",
        cause: str = "submitted",
        firing: tuple[str, float] | None = None,
    ) -> Job:
        """Validate ``spec`` (workflow exists, params templating, plugin validators, bookings),
        store it and return the job. Raises ValidationError, BookingConflict.

        ``cause`` is the first history row's (``resubmit`` names the job it came from).
        The job's id is taken only once everything is checked and booked: a refusal uses
        up no id, so ids stay dense. Nothing between that check and the id awaits.
        ``firing``: ``(schedule, fire time)`` that this job is, recorded in the same write;
        GuardFailed when another node recorded that firing first."""
        return await self._intake.submit(spec, actor=actor, cause=cause, firing=firing)

    async def submit_many(self, specs: list[JobSpec], *, actor: str = "api") -> list[Job]:
        """Submit ``specs`` all or nothing, in one transaction (``POST /v1/batch/jobs``).

        Every job is validated and booked (against the stored bookings and the batch's
        earlier jobs) before anything is stored; the first refusal raises the job's error
        with ``details.index`` set and the message prefixed ``jobs[i]: ``, and then nothing
        is stored, no booking is kept and no id is used. Returns the jobs in order."""
        return await self._intake.submit_many(specs, actor=actor)

    async def edit(self, job_id: int, changes: dict[str, Any], *, actor: str = "api") -> Job:
        """PATCH: change spec fields while draft/tentative/confirmed; reservations re-checked."""
        return await self._intake.edit(job_id, changes, actor=actor)

    # ================================================================ operations
    async def operate(self, job_id: int, operation: str, *, actor: str = "api") -> Job | None:
        """Apply a public operation of SPEC §2 (cancel, stop, pause, resume, retry, restart,
        confirm, tentative, unconfirm, resubmit, invoice-ready, invoiced, delete).

        Returns the job after the change (for ``resubmit`` the NEW job; for ``delete`` None).
        Raises NotFound, InvalidTransition (409), BookingConflict (409).
        """
        result = await self._operations.operate(job_id, operation, actor)
        if operation == "delete":
            return None
        if isinstance(result, Job):
            return result
        return await self.get_job(job_id)

    async def operate_many(
        self, job_ids: list[int], operation: str, *, actor: str = "api"
    ) -> BatchOutcome:
        """Apply ``operation`` to each job of ``job_ids`` (``POST /v1/batch/{operation}``):
        set-wise for the jobs that all go one way with no run to stop (:mod:`.batch`), the
        others concurrently so that their writes share transactions. A job whose state does
        not allow it, or that does not exist, is refused with the error :meth:`operate` would
        raise (naming its state and what is allowed there); the others go ahead."""
        return await self._batch.operate_many(job_ids, operation, actor)

    # ================================================================ reading
    async def get_job(self, job_id: int) -> Job:
        """One job with steps, reservations and history. Raises NotFound."""
        return await self._queries.get_job(job_id)

    async def list_jobs(
        self, f: JobFilter | None = None, limit: int = 100, cursor: int | None = None
    ) -> tuple[list[Job], int | None]:
        """Jobs matching ``f`` (all when None), newest first (by id); ``cursor`` is the id to
        continue below. Returns ``(jobs, next_cursor)``.
        Listed jobs carry no steps/history (empty lists) to keep lists cheap."""
        return await self._queries.list_jobs(f, limit, cursor)

    async def job_log(self, job_id: int, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        """Log lines of a job with ``seq > after``: each ``{seq, at, step, level, message}``."""
        return await self._queries.job_log(job_id, after, limit)

    def queue_info(self) -> dict[str, Any]:
        """``{capacity, queued: [ids in order], pending, running: [ids], waiting_for_lock: [ids],
        workers, busy_workers}``."""
        return self._queries.queue_info()

    async def locks_info(self) -> list[dict[str, Any]]:
        """Per asset: ``{asset, holders: [{job_id, mode}], waiters: [{job_id, mode, since,
        position, age}]}``, a cluster's from every node (each entry with its ``node``)."""
        return await self._queries.locks_info()

    async def resources_info(self) -> list[dict[str, Any]]:
        """Per resource: ``{name, capacity, pools, current: [job ids], upcoming: int}``."""
        return await self._queries.resources_info()

    async def bookings(
        self, start: float | None, end: float | None, resources: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """Reservations overlapping ``[start, end]`` (of ``resources`` only, when given):
        ``{job_id, job_name, state, resource, pool, start, end, start_at, end_at}``;
        ``start_at``/``end_at`` are the job's window, so ``start_at - start`` is its preroll
        and ``end - end_at`` its postroll."""
        return await self._queries.bookings(start, end, resources)

    async def schedules_info(self) -> list[dict[str, Any]]:
        """Per schedule: next and last firing, missed and skipped counts, recent events."""
        return await self.schedules.info()

    async def run_schedule(self, name: str, *, actor: str = "api") -> Job:
        """Fire schedule ``name`` now (even paused); NotFound, NotApplicable if skipped."""
        return await self.schedules.run_now(name, actor)

    async def pause_schedule(
        self, name: str, paused: bool, *, actor: str = "api"
    ) -> dict[str, Any]:
        """Pause (``paused``) or resume schedule ``name``; the schedule as listed."""
        return await self.schedules.set_paused(name, paused, actor)

    async def nodes_info(self) -> list[dict[str, Any]]:
        """The nodes of the cluster by name (a store of one node: this one): ``{name, tags,
        state ('up', 'lost', 'left'), renewed_at, lease, epoch, started_at, workers,
        run_queue_size, running_jobs: [ids], ...}``."""
        return await self.cluster.nodes(sorted(self._workers.running))

    def plugins_info(self) -> dict[str, Any]:
        """``{plugins: [{name, file, actions, error}], actions: [{name, plugin, description}]}``."""
        return self._ctx.plugins.describe()

    @asynccontextmanager
    async def subscribe(
        self, log_of: int | None = None
    ) -> AsyncIterator[MemoryObjectReceiveStream[JobEvent]]:
        """Every committed event from now on, for the SSE stream; a slow reader is dropped.

        ``log_of``: also a ``kind="log"`` marker each time a line of that job's log is
        written; the line is committed by the time :meth:`committed_log` returns."""
        async with self._fanout.subscribe(log_of) as receive:
            await self._relay.watched()  # a cluster's other nodes: publish your events
            yield receive

    async def committed_log(self, job_id: int, after: int) -> list[dict[str, Any]]:
        """Every log line of ``job_id`` with ``seq > after``, once everything written so far
        is committed (a ``kind="log"`` marker's line included). Raises NotFound."""
        await self._ctx.store.flush()
        lines: list[dict[str, Any]] = []
        while page := await self.job_log(job_id, after, 10_000):
            lines += page
            after = int(page[-1]["seq"])
            if len(page) < 10_000:
                break
        return lines
