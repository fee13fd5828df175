"""The events of the other nodes of a cluster, on this node's event stream (SPEC §10).

Every node's ``GET /v1/events`` (``jobd watch``, ``jobd logs -f``, the web page) shows the
committed events of every node. Each node publishes its own, after their COMMIT, on the
cluster's news (:mod:`jobd.store.news`, channel ``jobd_events``): one task packs what
was emitted since its last round trip into as few messages as fit (each at most
:data:`~jobd.store.news.MAX_PAYLOAD` bytes: ``<node>\\n[[event], ...]``) and sends them in
order. Each node hands the others' events to its own SSE subscribers only (its plugins and
metrics observe its own events: each event is observed once, by the node that made it),
once each, in the order their node made them. A node with no subscriber does not even
decode them.

:class:`LocalRelay` is the relay of a store of one node (SQLite): nothing to publish, no
task, no cost. :class:`NewsDesk` follows the news once for every reader of a channel (this
relay, the operations forwarded to this node): one LISTEN connection per node.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import structlog
from anyio import TASK_STATUS_IGNORED
from anyio.abc import TaskStatus

from jobd.core.errors import StoreError
from jobd.core.events import JobEvent
from jobd.core.states import JobState
from jobd.engine.fanout import Fanout
from jobd.store.news import EVENTS, MAX_PAYLOAD, Message, News

log = structlog.get_logger("jobd.engine")
#: Events kept for publishing while the database is slow or away; beyond, the oldest are
#: dropped (other nodes' streams miss them; this node's own stream does not).
MAX_BACKLOG = 100_000
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)


class Relay(Protocol):
    """This node's part in the cluster's event streams."""

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        """Publish and relay until cancelled; started once listening."""


class LocalRelay:
    """A store of one node: every event is this node's already."""

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        task_status.started()


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
    """Node ``node``'s events to the others, theirs to its subscribers (module docstring)."""

    def __init__(self, fanout: Fanout, desk: NewsDesk, node: str) -> None:
        self._fanout = fanout
        self._news = desk.news
        self.node = node
        self._backlog: list[JobEvent] = []
        self._dropped = 0
        self._wake = anyio.Event()
        fanout.add_listener(self._local)  # listeners hear this node's own events only
        desk.read(EVENTS, self._heard)

    async def run(self, *, task_status: TaskStatus[None] = TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            events, self._backlog = self._backlog, []
            try:
                await self._news.publish(EVENTS, pack(self.node, events))
            except StoreError as exc:
                log.warning("could not publish events to the other nodes", error=str(exc))

    def _local(self, event: JobEvent) -> None:
        backlog = self._backlog
        if len(backlog) >= MAX_BACKLOG:
            del backlog[: len(backlog) // 10]
            self._dropped += 1
            log.warning("other nodes' event streams are missing events", drops=self._dropped)
        backlog.append(event)
        if len(backlog) == 1:
            self._wake.set()

    def _heard(self, payload: str | None) -> None:
        if payload is None or not self._fanout.subscribers:
            return
        node, _, body = payload.partition("\n")
        if node == self.node:
            return
        try:
            rows = json.loads(body)
        except ValueError:
            log.warning("unreadable events from another node", node=node, payload=payload[:200])
            return
        for row in rows:
            self._fanout.relay(unpack(row))


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
