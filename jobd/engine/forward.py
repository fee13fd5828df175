"""Operations on jobs that another node of a cluster holds (SPEC §10: "an operation on a
job running on another node reaches it").

A job in a held state (``queued``, ``waiting-for-lock``, ``running``,
``cancel-requested``) is its node's: only that node's engine has its run (its step
processes, its live window, its place in the run queue and lock queue), and the database
refuses another node's write of it (the claim's guard ``node = me``). So an operation
received by another node is sent to the holder on the cluster's news (channel
``jobd_ops``), which performs it with its own engine and answers on the same channel;
the receiver then answers its caller with the job as the holder left it. A batch is sent
as one request per holder (split to fit a message), answered per job.

While the receiver waits it checks, every :data:`RECHECK` s, who holds the jobs still
unanswered: a job that another node took over meanwhile (the holder died: its lease ran
out), or that is held by no node any more, is reported ``MOVED`` and the caller decides
again where it is. After :data:`FORWARD_TIMEOUT` s without an answer the operation fails
with :class:`NodeUnavailable` (503) naming the node. A job held by no node (``confirmed``,
``paused``, ``completed``, ...) is never forwarded: the receiving node operates on it, its
writes guarded in the database; the other nodes' caches learn of it by the database's
own notifications (``jobd_due`` for due work and pending, ``jobd_bookings`` for bookings).

:class:`LocalForwarder` is a store of one node's (SQLite): every job is this node's.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, Protocol

import anyio
import structlog

from jobd.core.errors import JobdError, StoreError
from jobd.engine.relay import NewsDesk
from jobd.store.news import MAX_PAYLOAD, OPERATIONS

log = structlog.get_logger("jobd.engine")
#: Seconds a caller waits for the holder's answer before :class:`NodeUnavailable`. The
#: holder's own cancel/pause waits up to ``OPERATION_WAIT`` (5 s) for the run to stop.
FORWARD_TIMEOUT = 15.0
#: Seconds between two looks at who holds the jobs still unanswered.
RECHECK = 1.0
#: Job ids per request message (each id is at most 20 bytes of JSON; the rest is framing).
IDS_PER_MESSAGE = 300
#: What :meth:`Forwarder.forward` answers for a job no longer held by the node asked.
MOVED: Final = "moved"


class NodeUnavailable(JobdError):
    """The node that holds a job did not answer an operation sent to it in time."""

    code = "node-unavailable"
    status = 503


class RemoteRefusal(JobdError):
    """The holding node refused the operation: its error as that node raised it."""

    def __init__(self, error: dict[str, Any], status: int) -> None:
        super().__init__(str(error.get("message", "refused")), error.get("details") or {})
        self.code = str(error.get("code", "error"))
        self.status = status


#: Per job: None (done), the holder's refusal, or MOVED.
Outcome = JobdError | str | None
#: ``(job ids, operation, actor)`` → ``{job id: None or the refusal}``, performed here.
Perform = Callable[[list[int], str, str], Awaitable[dict[int, JobdError | None]]]
#: ``job ids`` → ``{job id: node}`` for those a node holds.
Holders = Callable[[Sequence[int]], Awaitable[dict[int, str]]]


class Remote(Protocol):
    """The other nodes, as the operations reach them."""

    async def holders(self, job_ids: Sequence[int]) -> dict[int, str]:
        """The jobs of ``job_ids`` that ANOTHER node holds, with its name (one read)."""

    async def forward(
        self, node: str, job_ids: Sequence[int], operation: str, actor: str
    ) -> dict[int, Outcome]:
        """Have ``node`` perform the operation on its jobs ``job_ids``: per job None (done),
        its refusal, or MOVED (no longer held there). Raises NodeUnavailable."""


class LocalForwarder:
    """A store of one node: no job is another node's."""

    async def holders(self, job_ids: Sequence[int]) -> dict[int, str]:
        return {}

    async def forward(
        self, node: str, job_ids: Sequence[int], operation: str, actor: str
    ) -> dict[int, Outcome]:
        raise NodeUnavailable(f"node {node!r} is not in this cluster", {"node": node})


class Forwarder:
    """Node ``node``'s operations for the other nodes' jobs, and theirs for its own."""

    def __init__(self, desk: NewsDesk, node: str, holders: Holders) -> None:
        self._news = desk.news
        self.node = node
        self._holders = holders
        self._perform: Perform | None = None
        self._spawn: Callable[..., None] | None = None
        self._waiting: dict[str, tuple[dict[int, Outcome], anyio.Event]] = {}
        self._rids = itertools.count(1)
        desk.read(OPERATIONS, self._heard)

    def bind(self, perform: Perform, spawn: Callable[..., None]) -> None:
        """``perform`` runs an operation here (never forwarded again); ``spawn(fn, arg)``
        starts ``fn(arg)`` on the engine's task group (``Context.spawn``)."""
        self._perform, self._spawn = perform, spawn

    async def holders(self, job_ids: Sequence[int]) -> dict[int, str]:
        held = await self._holders(job_ids)
        return {i: n for i, n in held.items() if n != self.node}

    async def forward(
        self, node: str, job_ids: Sequence[int], operation: str, actor: str
    ) -> dict[int, Outcome]:
        answers: dict[int, Outcome] = {}
        asked = list(job_ids)
        rid = f"{self.node}:{next(self._rids)}"
        arrived = anyio.Event()
        self._waiting[rid] = (answers, arrived)
        try:
            await self._send(node, rid, asked, operation, actor)
            with anyio.move_on_after(FORWARD_TIMEOUT):
                while len(answers) < len(asked):
                    with anyio.move_on_after(RECHECK):
                        await arrived.wait()
                    arrived = anyio.Event()
                    self._waiting[rid] = (answers, arrived)
                    if len(answers) < len(asked):
                        await self._moved(node, asked, answers)
        finally:
            self._waiting.pop(rid, None)
        late = [i for i in asked if i not in answers]
        if late:
            raise NodeUnavailable(
                f"node {node!r} holds job {late[0]}"
                + (f" (and {len(late) - 1} more)" if len(late) > 1 else "")
                + f" and did not answer within {FORWARD_TIMEOUT:g} s; if it is down, its"
                " jobs are taken over once its lease runs out: try again then",
                {"node": node, "job_ids": late},
            )
        return answers

    async def _send(self, node: str, rid: str, ids: list[int], operation: str, actor: str) -> None:
        # The holder drops a request its caller has given up on (answered 503: "try again"),
        # instead of carrying it out when it wakes from a freeze. Wall clocks: the nodes'
        # clocks must agree to well within FORWARD_TIMEOUT (docs/operations.md).
        until = time.time() + FORWARD_TIMEOUT
        base: dict[str, Any] = {"t": "op", "to": node, "from": self.node, "rid": rid}
        base.update(op=operation, until=until)
        payloads = [
            json.dumps({**base, "actor": actor[:200], "ids": ids[i : i + IDS_PER_MESSAGE]})
            for i in range(0, len(ids), IDS_PER_MESSAGE)
        ]
        try:
            await self._news.publish(OPERATIONS, payloads)
        except StoreError as exc:
            raise NodeUnavailable(
                f"cannot reach node {node!r} through the database: {exc}", {"node": node}
            ) from exc

    async def _moved(self, node: str, asked: list[int], answers: dict[int, Outcome]) -> None:
        """Mark MOVED the unanswered jobs that ``node`` holds no longer."""
        open_ids = [i for i in asked if i not in answers]
        try:
            held = await self._holders(open_ids)
        except StoreError as exc:
            log.warning("cannot read who holds the jobs", error=str(exc))
            return
        for job_id in open_ids:
            if held.get(job_id) != node:
                answers.setdefault(job_id, MOVED)

    # ---------------------------------------------------------------- the holder's side
    def _heard(self, payload: str | None) -> None:
        if payload is None:
            return
        try:
            message = json.loads(payload)
        except ValueError:
            log.warning("unreadable operation message", payload=payload[:200])
            return
        if not isinstance(message, dict) or message.get("to") != self.node:
            return
        if message.get("t") == "re":
            self._answered(message)
        elif message.get("t") == "op" and self._spawn is not None:
            if _given_up(message):
                log.warning("dropped an operation its caller gave up on", request=message)
                return
            self._spawn(self._perform_for, message)

    def _answered(self, message: dict[str, Any]) -> None:
        waiting = self._waiting.get(str(message.get("rid")))
        if waiting is None:
            return  # the caller gave up
        answers, arrived = waiting
        for job_id in message.get("done") or ():
            answers[int(job_id)] = None
        for job_id, status, error in message.get("refused") or ():
            answers[int(job_id)] = RemoteRefusal(error, int(status))
        arrived.set()

    async def _perform_for(self, message: dict[str, Any]) -> None:
        assert self._perform is not None
        ids = [int(i) for i in message.get("ids") or ()]
        op, actor = str(message.get("op")), str(message.get("actor"))
        try:
            outcome = await self._perform(ids, op, actor)
        except JobdError as exc:
            outcome = dict.fromkeys(ids, exc)
        log.info("performed an operation for another node", op=op, jobs=ids[:20], by=actor)
        try:
            await self._news.publish(OPERATIONS, replies(message, outcome))
        except StoreError as exc:
            log.warning("could not answer a forwarded operation", error=str(exc))


def _given_up(message: dict[str, Any]) -> bool:
    """Whether the caller of request ``message`` has stopped waiting for its answer."""
    until = message.get("until")
    return isinstance(until, int | float) and time.time() > until


def replies(message: dict[str, Any], outcome: dict[int, JobdError | None]) -> list[str]:
    """The answers to request ``message``, as few payloads as fit (each well under
    MAX_PAYLOAD: a refusal's message and details are cut to what fits)."""
    base = {"t": "re", "to": message.get("from"), "rid": message.get("rid")}
    room = MAX_PAYLOAD - len(json.dumps({**base, "done": [], "refused": []})) - 100
    payloads: list[str] = []
    done: list[int] = []
    refused: list[list[Any]] = []
    size = 0
    for job_id, result in outcome.items():
        entry: list[Any] | None = None
        if result is None:
            cost = 21  # a bigint and a comma
        else:
            entry = [job_id, result.status, _fitting(result, job_id)]
            cost = len(json.dumps(entry)) + 1
        if size + cost > room:
            payloads.append(json.dumps({**base, "done": done, "refused": refused}))
            done, refused, size = [], [], 0
        if entry is None:
            done.append(job_id)
        else:
            refused.append(entry)
        size += cost
    if done or refused or not payloads:
        payloads.append(json.dumps({**base, "done": done, "refused": refused}))
    return payloads


def _fitting(error: JobdError, job_id: int) -> dict[str, Any]:
    """``error`` as a dict of at most ~2,500 bytes of JSON."""
    shape = error.to_dict()
    shape["message"] = str(shape.get("message", ""))[:1000]
    if len(json.dumps(shape)) > 2500:
        shape["details"] = {"job_id": job_id}  # what fits a message
    return shape
