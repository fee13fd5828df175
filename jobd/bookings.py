"""The booking index: which resource is reserved by which job, when (SPEC §1, §2).

Pure, synchronous and in memory. The engine keeps reservations in SQLite (the
truth) and rebuilds this index from the store at start-up with :meth:`load`;
afterwards it asks :meth:`BookingIndex.plan` for a job's reservations, writes
them, then :meth:`BookingIndex.add` s them here.

Interval rules, used everywhere in this module:

* Reservations are half-open ``[start, end)``: a booking ending at 10:00 and
  one starting at 10:00 do not overlap.
* A zero-length reservation ``[t, t)`` (a job with no window length) still
  holds the resource at the instant ``t``: it conflicts with a reservation
  that contains ``t`` and with another one at ``t``, never with one that ends
  at ``t``. Internally it is stored as ``[t, nextafter(t))``.
* Capacity ``N`` means at most ``N`` reservations overlapping at any instant.

Layout: per resource, a list of entries ``(start, end, job_id, seq, reservation)``
sorted by start, plus an upper bound on the entries' durations. A check only
looks at entries whose start lies in ``[start - max_duration, end)``, found
with :mod:`bisect`: ``O(log n + k)`` for ``k`` neighbours.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from jobd.config import PoolConfig, ResourceConfig
from jobd.errors import BookingConflict, ValidationError
from jobd.models import Reservation

#: ``(start, effective end, job id, sequence number, reservation)``. The sequence
#: number is unique, so tuple comparison never reaches the (unordered) reservation.
_Entry = tuple[float, float, int, int, Reservation]

#: The pool hook: ``select(pool, candidates)`` returns the member to book, or ``None``.
Selector = Callable[[str, list[str]], str | None]


def iso(t: float) -> str:
    """``t`` (POSIX seconds) as ISO 8601 in UTC, as conflict messages show it."""
    return datetime.fromtimestamp(t, UTC).isoformat()


def _effective_end(start: float, end: float) -> float:
    """A zero-length span occupies its instant: ``[t, t)`` becomes ``[t, nextafter(t))``."""
    return math.nextafter(start, math.inf) if end == start else end


def _check_span(start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValidationError(f"reservation times must be finite (got {start}, {end})")
    if end < start:
        raise ValidationError(f"reservation ends ({iso(end)}) before it starts ({iso(start)})")


@dataclass(slots=True)
class _Track:
    """The reservations of one resource, sorted by start."""

    entries: list[_Entry] = field(default_factory=list)
    #: Upper bound on ``end - start`` over ``entries``; recomputed lazily when stale.
    max_duration: float = 0.0
    stale: bool = False

    def insert(self, entry: _Entry) -> None:
        bisect.insort(self.entries, entry)
        self.max_duration = max(self.max_duration, entry[1] - entry[0])

    def delete(self, entry: _Entry) -> None:
        i = bisect.bisect_left(self.entries, entry)
        if i < len(self.entries) and self.entries[i][3] == entry[3]:
            del self.entries[i]
            # Only the longest entry leaving can lower the bound; recompute on next use.
            if entry[1] - entry[0] >= self.max_duration:
                self.stale = True

    def overlapping(self, start: float, end: float, ignore_job: int | None) -> list[_Entry]:
        """Entries overlapping ``[start, end)`` (``end`` effective), minus ``ignore_job``'s."""
        if self.stale:
            self.max_duration = max((e[1] - e[0] for e in self.entries), default=0.0)
            self.stale = False
        lo = bisect.bisect_left(self.entries, (start - self.max_duration,))
        hi = bisect.bisect_left(self.entries, (end,))
        return [e for e in self.entries[lo:hi] if e[1] > start and e[2] != ignore_job]


def _overloaded_jobs(
    entries: Sequence[_Entry], start: float, end: float, capacity: int
) -> list[int]:
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


class BookingIndex:
    """Reservations per resource with conflict checks and pool member selection.

    Not thread-safe; the engine uses it from the event loop only.
    """

    def __init__(
        self, resources: Mapping[str, ResourceConfig], pools: Mapping[str, PoolConfig]
    ) -> None:
        self._resources: dict[str, ResourceConfig] = dict(resources)
        self._pools: dict[str, PoolConfig] = dict(pools)
        # Tracks exist for every resource holding reservations, configured or not,
        # so reservations on a resource that vanished stay visible until removed.
        self._tracks: dict[str, _Track] = {}
        self._by_job: dict[int, list[tuple[str, _Entry]]] = {}
        self._seq = 0

    # -- changing the index -------------------------------------------------

    def load(self, reservations: Iterable[Reservation]) -> None:
        """Replace the whole index with ``reservations`` (start-up, from the store).

        No capacity check: the store is the truth. Call :meth:`reconfigure` with
        the current config afterwards to learn which of them it no longer allows.
        """
        self._tracks.clear()
        self._by_job.clear()
        per_resource: dict[str, list[_Entry]] = {}
        for r in reservations:
            entry = self._entry(r)
            per_resource.setdefault(r.resource, []).append(entry)
            self._by_job.setdefault(r.job_id, []).append((r.resource, entry))
        for name, entries in per_resource.items():
            entries.sort()  # one sort instead of n insorts
            track = _Track(entries, max((e[1] - e[0] for e in entries), default=0.0))
            self._tracks[name] = track

    def add(self, reservations: Iterable[Reservation]) -> None:
        """Insert ``reservations`` as they are (the result of :meth:`plan`, once stored)."""
        for r in reservations:
            entry = self._entry(r)
            self._tracks.setdefault(r.resource, _Track()).insert(entry)
            self._by_job.setdefault(r.job_id, []).append((r.resource, entry))

    def remove_job(self, job_id: int) -> None:
        """Drop every reservation of ``job_id`` (a no-op if it has none)."""
        for resource, entry in self._by_job.pop(job_id, []):
            self._tracks[resource].delete(entry)

    def _entry(self, r: Reservation) -> _Entry:
        self._seq += 1
        return (r.start, _effective_end(r.start, r.end), r.job_id, self._seq, r)

    # -- queries --------------------------------------------------------------

    def for_job(self, job_id: int) -> list[Reservation]:
        """The reservations of ``job_id``, in the order they were added."""
        return [entry[4] for _, entry in self._by_job.get(job_id, [])]

    def count(self, resource: str) -> int:
        """How many reservations ``resource`` holds now, whatever their times."""
        track = self._tracks.get(resource)
        return 0 if track is None else len(track.entries)

    def between(self, start: float | None, end: float | None) -> list[Reservation]:
        """Reservations overlapping ``[start, end)`` (``None``: unbounded), sorted by start.

        Ties are ordered by resource, then job id.
        """
        lo = -math.inf if start is None else start
        hi = math.inf if end is None else _effective_end(lo, end)
        found: list[_Entry] = []
        for track in self._tracks.values():
            found.extend(track.overlapping(lo, hi, None))
        found.sort(key=lambda e: (e[0], e[4].resource, e[2], e[3]))
        return [e[4] for e in found]

    def check(
        self, resource: str, start: float, end: float, *, ignore_job: int | None = None
    ) -> list[int]:
        """Jobs whose reservations leave no room on ``resource`` at an instant of ``[start, end)``.

        Empty means the span fits. Capacity ``N`` allows ``N`` reservations at any
        one instant, so two existing bookings that do not overlap each other leave
        room for a third on a capacity-2 resource. ``ignore_job``'s own reservations
        are not counted (re-checking a job that is being edited).
        Raises :class:`ValidationError` for an unknown resource or a bad span.
        A resource with capacity below 1 never fits; the overlapping jobs are returned
        (possibly none: use :meth:`fits` when that matters).
        """
        config = self._resource(resource)
        return self._conflicts(config, start, end, ignore_job, ())

    def fits(
        self, resource: str, start: float, end: float, *, ignore_job: int | None = None
    ) -> bool:
        """Whether ``[start, end)`` fits on ``resource`` (also false when capacity < 1)."""
        config = self._resource(resource)
        return config.capacity >= 1 and not self._conflicts(config, start, end, ignore_job, ())

    def _resource(self, name: str) -> ResourceConfig:
        config = self._resources.get(name)
        if config is None:
            raise ValidationError(f"unknown resource {name!r}", field="resources")
        return config

    def _conflicts(
        self,
        config: ResourceConfig,
        start: float,
        end: float,
        ignore_job: int | None,
        extra: Sequence[_Entry],
    ) -> list[int]:
        """:meth:`check`, also counting ``extra`` entries (planned earlier in the same call)."""
        _check_span(start, end)
        eff_end = _effective_end(start, end)
        track = self._tracks.get(config.name)
        near = [] if track is None else track.overlapping(start, eff_end, ignore_job)
        near += [e for e in extra if e[0] < eff_end and e[1] > start]
        if config.capacity < 1:
            return sorted({e[2] for e in near})
        return _overloaded_jobs(near, start, eff_end, config.capacity)

    # -- planning ---------------------------------------------------------------

    def plan(
        self,
        job_id: int,
        resources: Sequence[str],
        pools: Sequence[str],
        start: float,
        end: float,
        *,
        select: Selector | None = None,
    ) -> list[Reservation]:
        """The reservations ``job_id`` needs over ``[start, end)``: all of them, or an error.

        One reservation per entry of ``resources`` (in order), then one member per
        entry of ``pools``. Nothing is added to the index: the caller stores the
        result, then calls :meth:`add` (after :meth:`remove_job` when replacing).
        ``job_id``'s existing reservations are ignored, so planning an edited job
        does not collide with its old bookings; reservations planned earlier in the
        same call do count, so naming a resource twice, or a pool whose member is
        also named, never double-books it.

        Pool members: the candidates are the members free over the span, sorted by
        fewest reservations (not counting ``job_id``'s old ones), then name;
        ``select(pool, candidates)`` may pick one; an answer that is not a
        candidate (or ``None``) falls back to the first candidate. Exceptions from
        ``select`` propagate: the engine's hook wrapper guards plugin calls.

        Raises :class:`ValidationError` (unknown resource or pool, bad span) or
        :class:`BookingConflict` naming the resource or pool, the span in ISO 8601
        and the jobs in the way.
        """
        _check_span(start, end)
        self._validate_names(resources, pools)
        planned: list[_Entry] = []
        for name in resources:
            config = self._resources[name]
            blockers = self._blockers(config, start, end, job_id, planned)
            if blockers is not None:
                raise BookingConflict(name, iso(start), iso(end), blockers)
            planned.append(self._planned_entry(job_id, name, None, start, end))
        for pool in pools:
            member = self._pick_member(job_id, pool, start, end, planned, select)
            planned.append(self._planned_entry(job_id, member, pool, start, end))
        return [e[4] for e in planned]

    def _validate_names(self, resources: Sequence[str], pools: Sequence[str]) -> None:
        problems = [f"unknown resource {r!r}" for r in resources if r not in self._resources]
        problems += [f"unknown pool {p!r}" for p in pools if p not in self._pools]
        if problems:
            raise ValidationError(problems, field="resources" if resources else "pools")

    def _blockers(
        self, config: ResourceConfig, start: float, end: float, job_id: int,
        planned: Sequence[_Entry],
    ) -> list[int] | None:
        """``None`` when ``[start, end)`` fits on ``config``, else the jobs in the way."""
        mine = [e for e in planned if e[4].resource == config.name]
        blockers = self._conflicts(config, start, end, job_id, mine)
        return blockers if blockers or config.capacity < 1 else None

    def _planned_entry(
        self, job_id: int, resource: str, pool: str | None, start: float, end: float
    ) -> _Entry:
        # Sequence numbers of planned entries are negative: they never enter a track.
        r = Reservation(job_id=job_id, resource=resource, start=start, end=end, pool=pool)
        return (start, _effective_end(start, end), job_id, -1, r)

    def _pick_member(
        self, job_id: int, pool: str, start: float, end: float,
        planned: Sequence[_Entry], select: Selector | None,
    ) -> str:
        candidates: list[str] = []
        blockers: set[int] = set()
        for member in self._pools[pool].members:
            config = self._resources.get(member)
            if config is None:
                continue  # config validation forbids this; never book an unknown resource
            in_the_way = self._blockers(config, start, end, job_id, planned)
            if in_the_way is None:
                candidates.append(member)
            else:
                blockers.update(in_the_way)
        if not candidates:
            raise BookingConflict(f"pool {pool}", iso(start), iso(end), sorted(blockers))
        load = {m: self._load_excluding(m, job_id, planned) for m in candidates}
        candidates.sort(key=lambda m: (load[m], m))
        choice = select(pool, list(candidates)) if select is not None else None
        return choice if choice in candidates else candidates[0]

    def _load_excluding(self, resource: str, job_id: int, planned: Sequence[_Entry]) -> int:
        """Reservations on ``resource``, without ``job_id``'s old ones, with those just planned."""
        own_old = sum(1 for r, _ in self._by_job.get(job_id, []) if r == resource)
        own_new = sum(1 for e in planned if e[4].resource == resource)
        return self.count(resource) - own_old + own_new

    # -- configuration reload ---------------------------------------------------

    def reconfigure(
        self, resources: Mapping[str, ResourceConfig], pools: Mapping[str, PoolConfig]
    ) -> list[tuple[int, str]]:
        """Adopt a new config; return ``(job_id, problem)`` for reservations it no longer allows.

        Reservations stay in the index either way (the engine decides what to do:
        SPEC §2, error overlay). Problems: the resource vanished, the resource is
        now over capacity, or a pool booking's pool vanished or no longer has that
        member. For over capacity, reservations are replayed in order of job
        id (earlier bookings first) and the ones that no longer fit are reported,
        so the oldest bookings keep their claim. One entry per job and resource.
        """
        self._resources = dict(resources)
        self._pools = dict(pools)
        problems: list[tuple[int, str]] = []
        for name, track in self._tracks.items():
            if not track.entries:
                continue
            config = self._resources.get(name)
            if config is None:
                jobs = sorted({e[2] for e in track.entries})
                problems += [(j, f"resource {name} no longer exists") for j in jobs]
            else:
                problems += self._over_capacity(config, track)
        problems += self._pool_problems()
        return problems

    def _pool_problems(self) -> list[tuple[int, str]]:
        """Pool bookings whose pool vanished, or whose member left the pool."""
        found: dict[tuple[int, str], str] = {}
        for job_id, entries in self._by_job.items():
            for resource, entry in entries:
                pool = entry[4].pool
                if pool is None or (job_id, pool) in found:
                    continue
                config = self._pools.get(pool)
                if config is None:
                    found[(job_id, pool)] = f"pool {pool} no longer exists"
                elif resource not in config.members:
                    found[(job_id, pool)] = f"resource {resource} is no longer in pool {pool}"
        return [(job, problem) for (job, _), problem in sorted(found.items())]

    def _over_capacity(self, config: ResourceConfig, track: _Track) -> list[tuple[int, str]]:
        kept = _Track()
        rejected: dict[int, _Entry] = {}
        for entry in sorted(track.entries, key=lambda e: (e[2], e[3])):
            near = kept.overlapping(entry[0], entry[1], None)
            if config.capacity >= 1 and not _overloaded_jobs(
                near, entry[0], entry[1], config.capacity
            ):
                kept.insert(entry)
            else:
                rejected.setdefault(entry[2], entry)
        return [
            (job, f"resource {config.name} is over its capacity {config.capacity} "
                  f"between {iso(e[0])} and {iso(e[4].end)}")
            for job, e in sorted(rejected.items())
        ]
