"""The bounded in-memory run queue: due jobs waiting for a worker.

Jobs that do not fit stay ``pending`` in the database (not here), so memory
is bounded by ``run_queue_size`` whatever the backlog. Order: higher priority
first, then earlier due time, then arrival.
"""

from __future__ import annotations

import heapq
import itertools


class RunQueue:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("run queue capacity must be at least 1")
        self.capacity = capacity
        self._heap: list[tuple[int, float, int, int]] = []
        self._members: dict[int, tuple[int, float, int, int]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._members

    @property
    def free(self) -> int:
        return max(0, self.capacity - len(self._members))

    def full(self) -> bool:
        return len(self._members) >= self.capacity

    def push(self, job_id: int, priority: int, due_at: float, *, force: bool = False) -> None:
        """Add a job; raises OverflowError when full unless ``force`` (recovery, re-queue)."""
        if job_id in self._members:
            return
        if not force and self.full():
            raise OverflowError("run queue is full")
        entry = (-priority, due_at, next(self._seq), job_id)
        self._members[job_id] = entry
        heapq.heappush(self._heap, entry)

    def pop(self) -> int | None:
        """The next job to run, or None if empty."""
        while self._heap:
            entry = heapq.heappop(self._heap)
            if self._members.get(entry[3]) is entry:
                del self._members[entry[3]]
                return entry[3]
        return None

    def remove(self, job_id: int) -> bool:
        """Take a job out (pause, cancel); its heap entry is dropped lazily on pop."""
        entry = self._members.pop(job_id, None)
        if entry is not None and len(self._heap) > 4 * self.capacity:
            self._heap = list(self._members.values())
            heapq.heapify(self._heap)
        return entry is not None

    def ordered(self) -> list[int]:
        """Job ids in the order they would be popped (for ``jobd queue``)."""
        return [entry[3] for entry in sorted(self._members.values())]
