"""The events of the other nodes of a cluster, on this node's event stream (SPEC §10).

Every node's ``GET /v1/events`` (``jobd watch``, ``jobd logs -f``, the web page) shows the
committed events of every node. Each node publishes its own, after their COMMIT, on the
cluster's news (:mod:`jobd.store.news`, channel ``jobd_events``): one task packs what
was emitted since its last round trip into as few messages as fit (each at most
:data:`~jobd.store.news.MAX_PAYLOAD` bytes: ``<node>\\n[[event], ...]``) and sends them in
order. Each node hands the others' events to its own SSE subscribers only (its plugins and
metrics observe its own events: each event is observed once, by the node that made it),
once each, in the order their node made them. A node with no subscriber does not even
decode them, and a node publishes only while another node has subscribers (they say so:
``want <node>``, see :class:`ClusterRelay`).

:class:`LocalRelay` is the relay of a store of one node (SQLite): nothing to publish, no
task, no cost. :class:`NewsDesk` follows the news once for every reader of a channel (this
relay, the operations forwarded to this node): one LISTEN connection per node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import structlog
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskGroup, TaskStatus

from jobd.core.errors import StoreError
from jobd.core.events import JobEvent
from jobd.core.states import JobState
from jobd.engine.fanout import Fanout
from jobd.store.news import EVENTS, MAX_PAYLOAD, Message, News

log = structlog.get_logger("jobd.engine")
#: A node with subscribers says so this often; the others publish for WANTED_FOR s after.
WANT_EVERY = 10.0
WANTED_FOR = 3 * WANT_EVERY
#: Events kept for publishing while the database is slow or away; beyond, the oldest are
#: dropped (other nodes' streams miss them; this node's own stream does not).
MAX_BACKLOG = 100_000
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


class Relay(Protocol):
    """This node's part in the cluster's event streams."""

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Publish and relay until cancelled; started once listening."""

    async def watched(self) -> None:
        """A subscriber is about to read this node's stream (the other nodes' events too)."""


class LocalRelay:
    """A store of one node: every event is this node's already."""

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def watched(self) -> None:
        """Nothing to ask: there is no other node."""


class NewsDesk:
    """One listening connection for every reader of the cluster's news: ``read(channel,
    fn)`` before :meth:`run`; ``fn(payload)`` is called on the event loop, and
    ``fn(None)`` after a lost connection came back (messages may have been missed)."""

    def __init__(self, news: News) -> None:
        self.news = news
        self._readers: dict[str, list[Callable[[str | None], None]]] = {}

    def read(self, channel: str, reader: Callable[[str | None], None]) -> None:
        self._readers.setdefault(channel, []).append(reader)

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        await self.news.follow(list(self._readers), self._dispatch, task_status=task_status)

    def _dispatch(self, message: Message) -> None:
        channel, payload = message
        readers = (
            [r for rs in self._readers.values() for r in rs]
            if channel == "resync"
            else self._readers.get(channel, [])
        )
        for reader in readers:
            try:
                reader(None if channel == "resync" else payload)
            except Exception:
                log.exception("a reader of the cluster's news failed", channel=channel)


class ClusterRelay:
    """Node ``node``'s events to the others, theirs to its subscribers (module docstring).

    A node publishes only while another node has subscribers: a node with subscribers
    says ``want <node>`` on the channel when its first one arrives (and waits until its
    own message comes back, so the others have it before the stream starts), every
    :data:`WANT_EVERY` s while it has any, and when another node says ``who <node>`` (a
    node that starts asks who wants its events); the others publish for
    :data:`WANTED_FOR` s after each ``want``. So a cluster nobody watches (or one node
    alone) spends nothing on this."""

    def __init__(
        self, fanout: Fanout, desk: NewsDesk, node: str, flush: Callable[[], Awaitable[None]]
    ) -> None:
        self._fanout = fanout
        self._flush = flush
        #: Jobs with log lines written since the last round (one marker each per round).
        self._logged: set[int] = set()
        self._news = desk.news
        self.node = node
        self._backlog: list[JobEvent] = []
        self._dropped = 0
        self._wake = anyio.Event()
        #: Until when (monotonic) another node wants this node's events.
        self._wanted_until = 0.0
        #: When this node last said it wants the others' events, and its echo.
        self._said_want = -WANT_EVERY
        self._echo = anyio.Event()
        self._tg: TaskGroup | None = None
        fanout.add_listener(self._local)  # listeners hear this node's own events only
        fanout.on_log = self._local_log
        desk.read(EVENTS, self._heard)

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            tg.start_soon(self._keep_wanting)
            await self._say(f"who {self.node}")
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                events, self._backlog = self._backlog, []
                if self._logged:  # a marker goes out once its lines are committed
                    self._logged = set()
                    await self._flushed()
                await self._say(*pack(self.node, events))

    async def watched(self) -> None:
        """A subscriber is about to read this node's stream: see that the others publish
        (said at once, unless said lately; waits at most 2 s for it to go round)."""
        if time.monotonic() - self._said_want < WANT_EVERY / 2:
            return
        self._said_want = time.monotonic()
        self._echo = echo = anyio.Event()
        await self._say(f"want {self.node}")
        with anyio.move_on_after(2.0):
            await echo.wait()

    async def _keep_wanting(self) -> None:
        while True:
            await anyio.sleep(WANT_EVERY)  # a renewal's pace, not a synchronisation
            if self._fanout.subscribers:
                self._said_want = time.monotonic()
                await self._say(f"want {self.node}")

    async def _say(self, *payloads: str) -> None:
        try:
            await self._news.publish(EVENTS, payloads)
        except StoreError as exc:
            log.warning("could not publish events to the other nodes", error=str(exc))

    async def _flushed(self) -> None:
        try:
            await self._flush()
        except StoreError as exc:
            log.warning("could not flush the log lines of a followed job", error=str(exc))

    def _local_log(self, job_id: int, at: float) -> None:
        if job_id not in self._logged and time.monotonic() < self._wanted_until:
            self._logged.add(job_id)
            self._backlog.append(JobEvent(job_id, "log", at))
            if len(self._backlog) == 1:
                self._wake.set()

    def _local(self, event: JobEvent) -> None:
        if time.monotonic() >= self._wanted_until:
            return  # no other node has a subscriber
        backlog = self._backlog
        if len(backlog) >= MAX_BACKLOG:
            del backlog[: len(backlog) // 10]
            self._dropped += 1
            log.warning("other nodes' event streams are missing events", drops=self._dropped)
        backlog.append(event)
        if len(backlog) == 1:
            self._wake.set()

    def _heard(self, payload: str | None) -> None:
        if payload is None:  # listening again: what was said meanwhile is lost
            self._said_want = -WANT_EVERY
            if self._fanout.subscribers:
                self._say_soon(f"want {self.node}")
            self._say_soon(f"who {self.node}")
            return
        node, newline, body = payload.partition("\n")
        if not newline:
            self._control(node)
        elif node != self.node and self._fanout.subscribers:
            try:
                rows = json.loads(body)
            except ValueError:
                log.warning("unreadable events from another node", node=node)
                return
            for row in rows:
                event = unpack(row)
                if event.kind == "log":  # lines of a job followed here are committed
                    self._fanout.log_relayed(event.job_id, event.at)
                else:
                    self._fanout.relay(event)

    def _control(self, message: str) -> None:
        kind, _, node = message.partition(" ")
        if node == self.node:
            if kind == "want":
                self._echo.set()
        elif kind == "want":
            self._wanted_until = time.monotonic() + WANTED_FOR
        elif kind == "who" and self._fanout.subscribers:
            self._say_soon(f"want {self.node}")

    def _say_soon(self, payload: str) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._say, payload)


def pack(node: str, events: list[JobEvent]) -> list[str]:
    """``events`` as few payloads of at most MAX_PAYLOAD bytes as fit, in order."""
    head = f"{node}\n["
    payloads: list[str] = []
    parts: list[str] = []
    size = empty = len(head.encode())
    for event in events:
        part = _encode(event, MAX_PAYLOAD - empty - 1)  # it fits a payload of its own
        if parts and size + len(part) + 2 > MAX_PAYLOAD:
            payloads.append(head + ",".join(parts) + "]")
            parts, size = [], empty
        parts.append(part)
        size += len(part) + 1
    if parts:
        payloads.append(head + ",".join(parts) + "]")
    return payloads


def _encode(event: JobEvent, room: int) -> str:
    """One event as a JSON array (ASCII: its length is its size); one too big for a
    message keeps its ids and states, and says that its data was left out."""
    row: list[Any] = [
        event.job_id,
        event.kind,
        event.at,
        None if event.from_state is None else str(event.from_state),
        None if event.to_state is None else str(event.to_state),
        event.cause,
        event.actor,
        event.step,
        event.data,
    ]
    text = _JSON.encode(row)
    if len(text) > room:
        row[5], row[8] = row[5][:200], {"truncated": True}
        text = _JSON.encode(row)
    return text


def unpack(row: list[Any]) -> JobEvent:
    """An event as :func:`_encode` wrote it."""
    job_id, kind, at, from_state, to_state, cause, actor, step, data = row
    return JobEvent(
        int(job_id),
        str(kind),
        float(at),
        None if from_state is None else JobState(from_state),
        None if to_state is None else JobState(to_state),
        str(cause),
        str(actor),
        step,
        data,
    )
