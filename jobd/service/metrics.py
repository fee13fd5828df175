"""Prometheus metrics for ``GET /metrics``.

Counters and histograms are fed by :meth:`Metrics.observe`, registered with
``engine.add_listener(metrics.observe)`` so they see every committed event;
gauges (queue depth, workers, ...) are read from ``engine.queue_info()`` at
scrape time, so they can never drift from the engine's own view.

Each :class:`Metrics` owns its own ``CollectorRegistry`` rather than the
process-global one: tests build several engines in one process, and the
global registry refuses a second metric with the same name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from jobd.core.events import JobEvent
from jobd.core.states import OUTCOMES, STEP_FINAL, JobState

log = structlog.get_logger("jobd.metrics")

#: Job runs last from seconds to hours (live windows); steps somewhat shorter.
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
_STEP_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
_LOCK_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)

_EXECUTING = frozenset({JobState.RUNNING, JobState.CANCEL_REQUESTED})
#: Step states whose attempt's duration is measured.
_TIMED_STEP_STATES = frozenset({str(s) for s in STEP_FINAL} | {"soft-failed"})
#: Histogram observations kept between flushes at most.
_KEEP_OBSERVATIONS = 4096


class QueueSource(Protocol):
    """What the metrics need from the engine (kept narrow so tests can fake it)."""

    def queue_info(self) -> dict[str, Any]: ...


class _QueueCollector(Collector):
    """Gauges computed from ``engine.queue_info()`` on every scrape."""

    _GAUGES = (
        ("jobd_queue_depth", "Jobs in the run queue waiting for a worker"),
        ("jobd_queue_capacity", "Size of the bounded run queue"),
        ("jobd_jobs_pending", "Due jobs waiting for room in the run queue"),
        ("jobd_jobs_running", "Jobs running now"),
        ("jobd_jobs_waiting_for_lock", "Jobs waiting for an asset lock"),
        ("jobd_workers", "Configured workers"),
        ("jobd_workers_busy", "Workers running a job now"),
    )

    def __init__(self, source: QueueSource) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        # Lets the registry check names without calling the engine at registration.
        for name, doc in self._GAUGES:
            yield GaugeMetricFamily(name, doc)

    def collect(self) -> Iterator[Metric]:
        try:
            info = self._source.queue_info()
        except Exception:
            # A scrape must not fail because the engine is starting or stopping.
            log.warning("queue_info failed during a metrics scrape", exc_info=True)
            return
        values = _queue_values(info)
        for name, doc in self._GAUGES:
            yield GaugeMetricFamily(name, doc, value=values[name])


def _count(value: Any) -> float:
    """``queue_info`` gives some figures as id lists and some as numbers."""
    if isinstance(value, list | tuple | set | frozenset):
        return float(len(value))
    return float(value or 0)


def _queue_values(info: dict[str, Any]) -> dict[str, float]:
    return {
        "jobd_queue_depth": _count(info.get("queued")),
        "jobd_queue_capacity": _count(info.get("capacity")),
        "jobd_jobs_pending": _count(info.get("pending")),
        "jobd_jobs_running": _count(info.get("running")),
        "jobd_jobs_waiting_for_lock": _count(info.get("waiting_for_lock")),
        "jobd_workers": _count(info.get("workers")),
        "jobd_workers_busy": _count(info.get("busy_workers")),
    }


class Metrics:
    """The daemon's metrics. One per engine; share it between the API apps.

    Counters: ``jobd_transitions_total{from,to}``, ``jobd_step_events_total{state}``.
    Histograms: ``jobd_job_duration_seconds{outcome}`` (running → outcome),
    ``jobd_step_duration_seconds{outcome}``, ``jobd_lock_wait_seconds``
    (waiting-for-lock → running). Gauges: see :class:`_QueueCollector`.
    """

    def __init__(self, engine: QueueSource) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._transitions = Counter(
            "jobd_transitions",
            "Committed job state changes",
            ["from", "to"],
            registry=self.registry,
        )
        self._step_events = Counter(
            "jobd_step_events", "Step state changes", ["state"], registry=self.registry
        )
        self._job_duration = Histogram(
            "jobd_job_duration_seconds",
            "Time from running to the run's outcome",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=self.registry,
        )
        self._step_duration = Histogram(
            "jobd_step_duration_seconds",
            "Duration of a step attempt that ended",
            ["outcome"],
            buckets=_STEP_BUCKETS,
            registry=self.registry,
        )
        self._lock_wait = Histogram(
            "jobd_lock_wait_seconds",
            "Time a job waited for its asset locks before running",
            buckets=_LOCK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_QueueCollector(engine))
        # Start times of the current spell per job; entries leave when the spell ends,
        # so these hold at most the jobs running or waiting now.
        self._running_since: dict[int, float] = {}
        self._waiting_since: dict[int, float] = {}
        #: The labelled children, made once per label value (see _observe_state), counters
        #: behind a tally each, counted here and flushed at each scrape (:meth:`_flush`).
        self._by_transition: dict[tuple[JobState | None, JobState | None], _Tally] = {}
        self._by_step_state: dict[str, tuple[_Tally, Any]] = {}
        self._by_outcome: dict[JobState, Any] = {}
        #: Histogram observations not flushed yet: (child, value).
        self._observations: list[tuple[Any, float]] = []

    def observe(self, event: JobEvent) -> None:
        """Count one committed event. Never raises (it runs inside the engine's notify path)."""
        try:
            if event.kind == "state":
                self._observe_state(event)
            elif event.kind == "step":
                self._observe_step(event)
            elif event.kind == "deleted":
                self._forget(event.job_id)
        except Exception:
            log.warning("metrics could not observe an event", job_id=event.job_id, exc_info=True)

    def _observe_state(self, event: JobEvent) -> None:
        src, dst = event.from_state, event.to_state
        key = (src, dst)
        tally = self._by_transition.get(key)
        if tally is None:
            # labels() takes a lock and builds its key each call: 5 µs per event, on every
            # transition of every job; the child for a pair never changes.
            tally = _Tally(self._transitions.labels(str(src or "new"), str(dst or "none")))
            self._by_transition[key] = tally
        tally.n += 1
        if src == JobState.WAITING_FOR_LOCK:
            began = self._waiting_since.pop(event.job_id, None)
            if began is not None and dst == JobState.RUNNING:
                self._observed(self._lock_wait, event.at - began)
        if dst == JobState.WAITING_FOR_LOCK:
            self._waiting_since[event.job_id] = event.at
        if dst == JobState.RUNNING and src not in _EXECUTING:
            self._running_since[event.job_id] = event.at
        elif src in _EXECUTING and dst not in _EXECUTING:
            # A run ends in an outcome, or pauses (a paused run is not measured).
            began = self._running_since.pop(event.job_id, None)
            if began is not None and dst in OUTCOMES:
                child = self._by_outcome.get(dst)
                if child is None:
                    child = self._by_outcome[dst] = self._job_duration.labels(str(dst))
                self._observed(child, event.at - began)

    def _observe_step(self, event: JobEvent) -> None:
        data = event.data or {}
        state = data.get("state")
        if not isinstance(state, str):
            return
        children = self._by_step_state.get(state)
        if children is None:
            tally = _Tally(self._step_events.labels(state))
            children = (tally, self._step_duration.labels(state))
            self._by_step_state[state] = children
        children[0].n += 1
        duration = _step_duration(data)
        if duration is not None and state in _TIMED_STEP_STATES:
            self._observed(children[1], duration)

    def _observed(self, histogram: Any, value: float) -> None:
        """One observation, kept until the next scrape (or until there are a few thousand:
        memory stays bounded when no one scrapes)."""
        observations = self._observations
        observations.append((histogram, max(0.0, value)))
        if len(observations) >= _KEEP_OBSERVATIONS:
            self._flush()

    def _flush(self) -> None:
        """Hand the counts and observations kept since the last flush to prometheus_client
        (whose ``inc`` and ``observe`` take a lock each: a third of this path's cost)."""
        for tally in self._by_transition.values():
            tally.flush()
        for tally, _ in self._by_step_state.values():
            tally.flush()
        observations, self._observations = self._observations, []
        for histogram, value in observations:
            histogram.observe(value)

    def _forget(self, job_id: int) -> None:
        self._running_since.pop(job_id, None)
        self._waiting_since.pop(job_id, None)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, for ``GET /metrics``."""
        self._flush()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _Tally:
    """A labelled counter's increments since the last flush: an ``int``, no lock (the event
    loop alone counts; :meth:`Metrics.render` flushes before every scrape)."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child, self.n = child, 0

    def flush(self) -> None:
        if self.n:
            self.child.inc(self.n)
            self.n = 0


def _step_duration(data: dict[str, Any]) -> float | None:
    """``data["duration"]`` if the engine gave it, else ``ended_at - started_at`` if both."""
    duration = data.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        return max(0.0, float(duration))
    started, ended = data.get("started_at"), data.get("ended_at")
    if isinstance(started, int | float) and isinstance(ended, int | float):
        return max(0.0, float(ended) - float(started))
    return None
