"""The interval arithmetic of the booking index (:mod:`jobd.plan.bookings`) and one
resource's reservations as lean parallel arrays. Pure and in memory.

Interval rules, used everywhere in the index:

* Reservations are half-open ``[start, end)``: a booking ending at 10:00 and
  one starting at 10:00 do not overlap.
* A zero-length reservation ``[t, t)`` (a job with no window length) still
  holds the resource at the instant ``t``: it conflicts with a reservation
  that contains ``t`` and with another one at ``t``, never with one that ends
  at ``t``. Internally it is stored as ``[t, nextafter(t))``.
* Capacity ``N`` means at most ``N`` reservations overlapping at any instant.

Layout (lean: about 50 bytes per reservation): per resource (a :class:`Track`),
parallel arrays (:mod:`array`) of starts, effective ends, job ids and a small
``meta`` word (pool number and a zero-length flag), sorted by start (ties: in the
order they were added), plus an upper bound on the durations. A check only looks
at entries whose start lies in ``[start - max_duration, end)``, found with
:mod:`bisect`: ``O(log n + k)`` for ``k`` neighbours.
"""

from __future__ import annotations

import bisect
import math
from array import array
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import islice
from operator import le, sub

from jobd.core.errors import ValidationError

#: ``(start, effective end, job id)``: what a conflict check needs of a reservation.
Span = tuple[float, float, int]


def iso(t: float) -> str:
    """``t`` (POSIX seconds) as ISO 8601 in UTC, as conflict messages show it."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def effective_end(start: float, end: float) -> float:
    """A zero-length span occupies its instant: ``[t, t)`` becomes ``[t, nextafter(t))``."""
    return math.nextafter(start, math.inf) if end == start else end


def check_span(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValidationError(f"reservation times must be finite (got {start}, {end})")
    if end < start:
        raise ValidationError(f"reservation ends ({iso(end)}) before it starts ({iso(start)})")


class Track:
    """The reservations of one resource: parallel arrays sorted by start.

    Among equal starts, entries keep the order they were added in.
    """

    __slots__ = ("ends", "jobs", "max_duration", "meta", "stale", "starts")

    def __init__(
        self,
        starts: array[float] | None = None,
        ends: array[float] | None = None,
        jobs: array[int] | None = None,
        meta: array[int] | None = None,
    ) -> None:
        self.starts: array[float] = array("d") if starts is None else starts
        #: Effective ends (a zero-length entry ends at ``nextafter(start)``; ``meta`` says so).
        self.ends: array[float] = array("d") if ends is None else ends
        self.jobs: array[int] = array("q") if jobs is None else jobs
        self.meta: array[int] = array("i") if meta is None else meta
        #: Upper bound on ``end - start`` over the entries; recomputed lazily when stale.
        self.max_duration = 0.0
        self.stale = bool(self.starts)

    def __len__(self) -> int:
        return len(self.starts)

    def insert(self, start: float, end: float, job_id: int, meta: int) -> None:
        i = bisect.bisect_right(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        self.jobs.insert(i, job_id)
        self.meta.insert(i, meta)
        if not self.stale:
            self.max_duration = max(self.max_duration, end - start)

    def delete(self, start: float, job_id: int) -> None:
        """Delete ``job_id``'s entries that start at ``start``."""
        starts, jobs = self.starts, self.jobs
        lo = bisect.bisect_left(starts, start)
        hi = bisect.bisect_right(starts, start, lo)
        for i in reversed(range(lo, hi)):
            if jobs[i] == job_id:
                # Only the longest entry leaving can lower the bound; recompute on next use.
                if self.ends[i] - starts[i] >= self.max_duration:
                    self.stale = True
                del starts[i], self.ends[i], jobs[i], self.meta[i]

    def find(self, start: float, job_id: int, nth: int) -> int | None:
        """Index of ``job_id``'s ``nth`` entry (from 0, in the order added) at ``start``."""
        starts, jobs = self.starts, self.jobs
        lo = bisect.bisect_left(starts, start)
        for i in range(lo, bisect.bisect_right(starts, start, lo)):
            if jobs[i] == job_id:
                if nth == 0:
                    return i
                nth -= 1
        return None

    def _bounds(self, start: float, end: float) -> tuple[int, int]:
        """Index range of the entries that may overlap ``[start, end)``."""
        if self.stale:
            self.max_duration = max(map(sub, self.ends, self.starts), default=0.0)
            self.stale = False
        lo = bisect.bisect_left(self.starts, start - self.max_duration)
        return lo, bisect.bisect_left(self.starts, end, lo)

    def overlapping(self, start: float, end: float, ignore_job: int | None) -> list[Span]:
        """Entries overlapping ``[start, end)`` (``end`` effective), minus ``ignore_job``'s."""
        lo, hi = self._bounds(start, end)
        return [
            (s, e, j)
            for s, e, j in zip(self.starts[lo:hi], self.ends[lo:hi], self.jobs[lo:hi], strict=True)
            if e > start and j != ignore_job
        ]

    def overlapping_indices(self, start: float, end: float) -> list[int]:
        lo, hi = self._bounds(start, end)
        return [i for i, e in zip(range(lo, hi), self.ends[lo:hi], strict=True) if e > start]

    def load_at_most(self, capacity: int) -> bool:
        """Whether at no instant more than ``capacity`` entries overlap (``capacity >= 1``).

        With starts sorted and ends sorted, the load just after the ``i``-th start is
        ``i + 1`` minus the ends at or before it, so it stays within ``capacity`` iff
        the ``(i - capacity)``-th smallest end is at or before the ``i``-th start.
        """
        n = len(self.starts)
        if n <= capacity:
            return True
        ends = sorted(self.ends)
        return all(map(le, islice(ends, n - capacity), islice(self.starts, capacity, None)))


def overloaded_jobs(entries: Sequence[Span], start: float, end: float, capacity: int) -> list[int]:
    """Jobs present at an instant of ``[start, end)`` where ``entries`` already use ``capacity``.

    A sweep over the entries clipped to the span: at each event time, ends are
    applied before starts (half-open), then the load holds until the next event.
    """
    if len(entries) < capacity:
        return []  # fast path: even all of them at once leave room
    events: list[tuple[float, int, int]] = []
    for e in entries:
        events.append((max(e[0], start), 1, e[2]))
        events.append((min(e[1], end), -1, e[2]))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    active: Counter[int] = Counter()
    load = 0
    culprits: set[int] = set()
    i = 0
    while i < len(events):
        t = events[i][0]
        while i < len(events) and events[i][0] == t:
            _, delta, job = events[i]
            active[job] += delta
            load += delta
            i += 1
        if load >= capacity and t < end:
            culprits.update(job for job, n in active.items() if n > 0)
    return sorted(culprits)
