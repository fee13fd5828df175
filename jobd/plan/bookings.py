"""The booking index: which resource is reserved by which job, when (SPEC §1, §2).

Pure, synchronous and in memory. The engine keeps reservations in SQLite (the
truth) and rebuilds this index from the store at start-up with :meth:`load`;
afterwards it asks :meth:`BookingIndex.plan` for a job's reservations, writes
them, then :meth:`BookingIndex.add` s them here.

The interval rules (half-open spans; a zero-length span holds its instant;
capacity ``N``: at most ``N`` overlapping at any instant) and each resource's
lean arrays (:class:`~jobd.plan.tracks.Track`) are :mod:`jobd.plan.tracks`. To
find a job's reservations, the ones :meth:`BookingIndex.load` ed sit in arrays
sorted by job id (``job id, resource number, start``; removed ones are blanked,
not moved), those added afterwards in a small dict. :class:`Reservation` objects
are only built when a query returns them.
"""

from __future__ import annotations

import bisect
import math
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import compress, groupby, islice
from operator import eq, itemgetter

from jobd.config import PoolConfig, ResourceConfig
from jobd.core.errors import BookingConflict, ValidationError
from jobd.core.models import Reservation
from jobd.plan.tracks import Track, check_span, effective_end, iso, overloaded_jobs

#: A reservation as the store reads it: ``(job_id, resource, start, end, pool)``.
Row = tuple[int, str, float, float, str | None]

#: A reservation planned earlier in the same :meth:`BookingIndex.plan` call:
#: ``(start, effective end, job id, reservation)``.
_Planned = tuple[float, float, int, Reservation]

#: The pool hook: ``select(pool, candidates)`` returns the member to book, or ``None``.
Selector = Callable[[str, list[str]], str | None]

#: ``meta`` of an entry: ``pool number << 1 | ZERO``; pool number 0 is "no pool".
ZERO = 1
#: Resource number of a loaded reservation that has been removed since.
_GONE = -1

_start_of = itemgetter(2)
_job_of = itemgetter(0)


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
        self._tracks: dict[str, Track] = {}
        # Resource and pool names by number (interned; never shrink).
        self._res_names: list[str] = []
        self._res_ids: dict[str, int] = {}
        self._pool_names: list[str | None] = [None]
        self._pool_ids: dict[str | None, int] = {None: 0}
        # Who holds what: the loaded reservations sorted by job id (resource number
        # _GONE once removed), then those added since, per job.
        self._loaded_jobs: array[int] = array("q")
        self._loaded_res: array[int] = array("i")
        self._loaded_starts: array[float] = array("d")
        self._gone = 0
        self._added: dict[int, list[tuple[int, float]]] = {}

    # -- changing the index -------------------------------------------------

    def load(self, reservations: Iterable[Reservation]) -> None:
        """Replace the whole index with ``reservations`` (start-up, from the store).

        No capacity check: the store is the truth. Call :meth:`reconfigure` with
        the current config afterwards to learn which of them it no longer allows.
        """
        self.load_rows([(r.job_id, r.resource, r.start, r.end, r.pool) for r in reservations])

    def load_rows(self, rows: Iterable[Row]) -> None:
        """:meth:`load` from plain ``(job_id, resource, start, end, pool)`` tuples."""
        rows = rows if isinstance(rows, list) else list(rows)
        # Stable sorts: equal keys keep the order given, as the store's indexes keep rowid's.
        self.load_sorted(
            sorted(rows, key=itemgetter(1, 2)),
            [(r[0], r[1], r[2]) for r in sorted(rows, key=_job_of)],
        )

    def load_sorted(
        self, by_resource: Iterable[Row], by_job: Iterable[tuple[int, str, float]]
    ) -> None:
        """:meth:`load` from two streams of the same reservations, ``by_resource`` ordered by
        (resource, start) and ``by_job`` (job id, resource, start) ordered by job id: what
        the store's two indexes give. One resource's rows are in memory at a time, not all
        of them (a million rows as tuples took 250 MB more at start-up than the index)."""
        self._tracks.clear()
        self._added.clear()
        self._gone = 0
        for name, group in groupby(by_resource, key=itemgetter(1)):
            rid = self._res_id(name)
            self._tracks[self._res_names[rid]] = self._build_track(list(group))
        self._loaded_jobs, self._loaded_res = array("q"), array("i")
        self._loaded_starts = array("d")
        res_id, rows = self._res_ids.__getitem__, iter(by_job)
        for chunk in iter(lambda: list(islice(rows, 65536)), []):
            self._loaded_jobs.extend(map(itemgetter(0), chunk))
            self._loaded_res.extend(map(res_id, map(itemgetter(1), chunk)))
            self._loaded_starts.extend(map(itemgetter(2), chunk))

    def _build_track(self, group: list[Row]) -> Track:
        n = len(group)
        starts = array("d", map(_start_of, group))
        ends = array("d", map(itemgetter(3), group))
        pools = list(map(itemgetter(4), group))
        if pools.count(None) == n:
            meta = array("i", bytes(4 * n))
        else:
            meta = array("i", [self._pool_id(p) << 1 for p in pools])
        for i in compress(range(n), map(eq, starts, ends)):
            ends[i] = math.nextafter(starts[i], math.inf)
            meta[i] |= ZERO
        return Track(starts, ends, array("q", map(_job_of, group)), meta)

    def _res_id(self, name: str) -> int:
        rid = self._res_ids.get(name)
        if rid is None:
            rid = self._res_ids[name] = len(self._res_names)
            self._res_names.append(sys.intern(name))
        return rid

    def _pool_id(self, pool: str | None) -> int:
        pid = self._pool_ids.get(pool)
        if pid is None:
            pid = self._pool_ids[pool] = len(self._pool_names)
            self._pool_names.append(None if pool is None else sys.intern(pool))
        return pid

    def add(self, reservations: Iterable[Reservation]) -> None:
        """Insert ``reservations`` as they are (the result of :meth:`plan`, once stored)."""
        for r in reservations:
            rid = self._res_id(r.resource)
            name = self._res_names[rid]
            track = self._tracks.get(name)
            if track is None:
                track = self._tracks[name] = Track()
            meta = self._pool_id(r.pool) << 1 | (ZERO if r.end == r.start else 0)
            track.insert(r.start, effective_end(r.start, r.end), r.job_id, meta)
            self._added.setdefault(r.job_id, []).append((rid, r.start))

    def remove_job(self, job_id: int) -> None:
        """Drop every reservation of ``job_id`` (a no-op if it has none)."""
        for rid, start in self._take(job_id):
            self._tracks[self._res_names[rid]].delete(start, job_id)

    def _take(self, job_id: int) -> list[tuple[int, float]]:
        """``_holdings(job_id)``, forgotten."""
        held = self._holdings(job_id)
        if held:
            jobs, res = self._loaded_jobs, self._loaded_res
            lo = bisect.bisect_left(jobs, job_id)
            for i in range(lo, bisect.bisect_right(jobs, job_id, lo)):
                if res[i] != _GONE:
                    res[i] = _GONE
                    self._gone += 1
            self._added.pop(job_id, None)
            if self._gone > 1024 and self._gone * 2 > len(jobs):
                self._compact()
        return held

    def _compact(self) -> None:
        keep = [r != _GONE for r in self._loaded_res]
        self._loaded_jobs = array("q", compress(self._loaded_jobs, keep))
        self._loaded_starts = array("d", compress(self._loaded_starts, keep))
        self._loaded_res = array("i", compress(self._loaded_res, keep))
        self._gone = 0

    def _holdings(self, job_id: int) -> list[tuple[int, float]]:
        """``(resource number, start)`` of each reservation of ``job_id``, in the order added."""
        jobs, res = self._loaded_jobs, self._loaded_res
        lo = bisect.bisect_left(jobs, job_id)
        held = [
            (res[i], self._loaded_starts[i])
            for i in range(lo, bisect.bisect_right(jobs, job_id, lo))
            if res[i] != _GONE
        ]
        return held + self._added.get(job_id, [])

    def _reservation(self, name: str, track: Track, i: int) -> Reservation:
        start, meta = track.starts[i], track.meta[i]
        end = start if meta & ZERO else track.ends[i]
        return Reservation(track.jobs[i], name, start, end, self._pool_names[meta >> 1])

    # -- queries --------------------------------------------------------------

    def for_job(self, job_id: int) -> list[Reservation]:
        """The reservations of ``job_id``, in the order they were added."""
        found: list[Reservation] = []
        seen: Counter[tuple[int, float]] = Counter()
        for key in self._holdings(job_id):
            name = self._res_names[key[0]]
            track = self._tracks[name]
            i = track.find(key[1], job_id, seen[key])
            seen[key] += 1
            if i is not None:
                found.append(self._reservation(name, track, i))
        return found

    def count(self, resource: str) -> int:
        """How many reservations ``resource`` holds now, whatever their times."""
        track = self._tracks.get(resource)
        return 0 if track is None else len(track)

    def occupancy(self, resource: str, now: float) -> tuple[list[int], int]:
        """``(jobs holding resource at now, how many reservations start later)``, without
        building a record per reservation (``jobd resources`` with a million bookings)."""
        track = self._tracks.get(resource)
        if track is None:
            return [], 0
        just_after = math.nextafter(now, math.inf)
        current = sorted({track.jobs[i] for i in track.overlapping_indices(now, just_after)})
        return current, len(track) - bisect.bisect_right(track.starts, now)

    def between(
        self, start: float | None, end: float | None, resources: Iterable[str] | None = None
    ) -> list[Reservation]:
        """Reservations overlapping ``[start, end)`` (``None``: unbounded), sorted by start;
        only those of ``resources`` when given (names not configured find nothing).

        Ties are ordered by resource, then job id.
        """
        lo = -math.inf if start is None else start
        hi = math.inf if end is None else effective_end(lo, end)
        tracks: Iterable[tuple[str, Track]] = self._tracks.items()
        if resources is not None:
            tracks = [(n, self._tracks[n]) for n in dict.fromkeys(resources) if n in self._tracks]
        found: list[tuple[float, str, int, int]] = []
        for name, track in tracks:
            starts, jobs = track.starts, track.jobs
            found += [(starts[i], name, jobs[i], i) for i in track.overlapping_indices(lo, hi)]
        found.sort()  # the index breaks ties between one job's entries: the order added
        return [self._reservation(name, self._tracks[name], i) for _, name, _, i in found]

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
        extra: Sequence[_Planned],
    ) -> list[int]:
        """:meth:`check`, also counting ``extra`` entries (planned earlier in the same call)."""
        check_span(start, end)
        eff_end = effective_end(start, end)
        track = self._tracks.get(config.name)
        near = [] if track is None else track.overlapping(start, eff_end, ignore_job)
        near += [(e[0], e[1], e[2]) for e in extra if e[0] < eff_end and e[1] > start]
        if config.capacity < 1:
            return sorted({e[2] for e in near})
        return overloaded_jobs(near, start, eff_end, config.capacity)

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
        check_span(start, end)
        self._validate_names(resources, pools)
        planned: list[_Planned] = []
        for name in resources:
            config = self._resources[name]
            blockers = self._blockers(config, start, end, job_id, planned)
            if blockers is not None:
                raise BookingConflict(name, iso(start), iso(end), blockers)
            planned.append(self._planned_entry(job_id, name, None, start, end))
        for pool in pools:
            member = self._pick_member(job_id, pool, start, end, planned, select)
            planned.append(self._planned_entry(job_id, member, pool, start, end))
        return [e[3] for e in planned]

    def _validate_names(self, resources: Sequence[str], pools: Sequence[str]) -> None:
        problems = [f"unknown resource {r!r}" for r in resources if r not in self._resources]
        problems += [f"unknown pool {p!r}" for p in pools if p not in self._pools]
        if problems:
            raise ValidationError(problems, field="resources" if resources else "pools")

    def _blockers(
        self,
        config: ResourceConfig,
        start: float,
        end: float,
        job_id: int,
        planned: Sequence[_Planned],
    ) -> list[int] | None:
        """``None`` when ``[start, end)`` fits on ``config``, else the jobs in the way."""
        mine = [e for e in planned if e[3].resource == config.name]
        blockers = self._conflicts(config, start, end, job_id, mine)
        return blockers if blockers or config.capacity < 1 else None

    def _planned_entry(
        self, job_id: int, resource: str, pool: str | None, start: float, end: float
    ) -> _Planned:
        r = Reservation(job_id=job_id, resource=resource, start=start, end=end, pool=pool)
        return (start, effective_end(start, end), job_id, r)

    def _pick_member(
        self,
        job_id: int,
        pool: str,
        start: float,
        end: float,
        planned: Sequence[_Planned],
        select: Selector | None,
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

    def _load_excluding(self, resource: str, job_id: int, planned: Sequence[_Planned]) -> int:
        """Reservations on ``resource``, without ``job_id``'s old ones, with those just planned."""
        rid = self._res_ids.get(resource)
        own_old = sum(1 for r, _ in self._holdings(job_id) if r == rid)
        own_new = sum(1 for e in planned if e[3].resource == resource)
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
            if not len(track):
                continue
            config = self._resources.get(name)
            if config is None:
                jobs = sorted(set(track.jobs))
                problems += [(j, f"resource {name} no longer exists") for j in jobs]
            else:
                problems += self._over_capacity(config, track)
        problems += self._pool_problems()
        return problems

    def _pool_problems(self) -> list[tuple[int, str]]:
        """Pool bookings whose pool vanished, or whose member left the pool."""
        suspects: set[int] = set()
        for name, track in self._tracks.items():
            bad = set()
            for meta in set(track.meta):
                pool = self._pool_names[meta >> 1]
                if pool is not None:
                    config = self._pools.get(pool)
                    if config is None or name not in config.members:
                        bad.add(meta)
            if bad:
                suspects.update(compress(track.jobs, [m in bad for m in track.meta]))
        found: dict[tuple[int, str], str] = {}
        for job_id in suspects:
            for r in self.for_job(job_id):  # the first bad booking per pool, in the order added
                pool = r.pool
                if pool is None or (job_id, pool) in found:
                    continue
                config = self._pools.get(pool)
                if config is None:
                    found[(job_id, pool)] = f"pool {pool} no longer exists"
                elif r.resource not in config.members:
                    found[(job_id, pool)] = f"resource {r.resource} is no longer in pool {pool}"
        return [(job, problem) for (job, _), problem in sorted(found.items())]

    def _over_capacity(self, config: ResourceConfig, track: Track) -> list[tuple[int, str]]:
        if config.capacity >= 1 and track.load_at_most(config.capacity):
            return []  # never more than capacity at once: the replay below keeps everything
        kept = Track()
        rejected: dict[int, int] = {}
        starts, ends, jobs = track.starts, track.ends, track.jobs
        for i in self._replay_order(config.name, track):
            start, end, job_id = starts[i], ends[i], jobs[i]
            near = kept.overlapping(start, end, None)
            if config.capacity >= 1 and not overloaded_jobs(near, start, end, config.capacity):
                kept.insert(start, end, job_id, 0)
            else:
                rejected.setdefault(job_id, i)
        name = config.name
        return [
            (
                job,
                f"resource {name} is over its capacity {config.capacity} "
                f"between {iso(starts[i])} and {iso(self._reservation(name, track, i).end)}",
            )
            for job, i in sorted(rejected.items())
        ]

    def _replay_order(self, name: str, track: Track) -> list[int]:
        """Indices of ``track``'s entries by job id, then in the order they were added."""
        rid = self._res_ids[name]
        order: list[int] = []
        for job_id in sorted(set(track.jobs)):
            seen: Counter[tuple[int, float]] = Counter()
            for key in self._holdings(job_id):
                if key[0] == rid:
                    i = track.find(key[1], job_id, seen[key])
                    seen[key] += 1
                    if i is not None:
                        order.append(i)
        return order
