"""Live windows as timers (SPEC §3.7): a job whose steps are done stays ``running`` until its
window ends, holding its reservations and asset locks but no worker and no task of its own.

:class:`LiveWindows` keeps one heap of window ends and one task that sleeps until the
earliest; when windows end it hands their job ids to the engine's callback, which runs
their end scripts on workers. Ten thousand open windows are ten thousand heap entries, not
ten thousand sleeping tasks. Nothing here is durable: a window is ``running`` in the store
with every step completed, and recovery opens it again (see ``Engine._recover_running``).
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus


class LiveWindows:
    """Open windows by job id, each with the time it ends; ``on_end(ids)`` when they do."""

    def __init__(
        self, on_end: Callable[[list[int]], None], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._on_end = on_end
        self._clock = clock
        #: ``job_id -> end``: the open windows (the truth; the heap may hold stale entries).
        self._ends: dict[int, float] = {}
        self._heap: list[tuple[float, int]] = []
        self._changed: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._ends)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ends

    def ids(self) -> list[int]:
        """The jobs whose window is open."""
        return list(self._ends)

    def open(self, job_id: int, end: float) -> None:
        """Open (or move) ``job_id``'s window to end at ``end`` (at once if it has passed)."""
        self._ends[job_id] = end
        heapq.heappush(self._heap, (end, job_id))
        if self._heap[0] == (end, job_id) and self._changed is not None:
            self._changed.set()  # a new earliest end: the timer sleeps less

    def close(self, job_id: int) -> bool:
        """Close ``job_id``'s window without ending it (stop, cancel, pause decide what
        follows); True if it was open. Its heap entry is dropped when it comes up."""
        return self._ends.pop(job_id, None) is not None

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The one timer: call ``on_end`` with the windows that ended, until cancelled."""
        task_status.started()
        while True:
            self._changed = changed = anyio.Event()
            ended = self._pop_ended(self._clock())
            if ended:
                self._on_end(ended)
                continue
            wait = self._heap[0][0] - self._clock() if self._heap else math.inf
            # The loop's timers may wake a little early (whole milliseconds): the next
            # turn finds nothing ended and sleeps again for the rest.
            with anyio.move_on_after(max(wait, 0.0)):
                await changed.wait()

    def _pop_ended(self, now: float) -> list[int]:
        ended = []
        heap, ends = self._heap, self._ends
        while heap and heap[0][0] <= now:
            end, job_id = heapq.heappop(heap)
            if ends.get(job_id) == end:  # not closed or moved since
                del ends[job_id]
                ended.append(job_id)
        return ended
