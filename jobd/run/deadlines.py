"""Step and job timeouts on ONE loop timer: a heap of deadlines.

Every step attempt used to enter an anyio cancel scope with a deadline of its own, which
makes a timer handle on the event loop, cancels it again when the step ends, and keeps
the scope's books on entry and exit: a sizeable share of the loop's CPU per job for a
timer that almost never rings (a no-op step takes microseconds, its timeout is an hour).
Here every deadline of one event loop is an entry of a heap, and one loop timer is set for
the earliest; arming is a ``heappush`` and disarming sets a flag.

**Contract.** :meth:`Deadlines.arm` returns a :class:`Deadline`; unless it is disarmed
first, at (or just after) its time ``target.expire(deadline)`` is called, once, from the
event loop (a plain callback, no task), and :attr:`Deadline.fired` is true from then on.
What expiring means is the target's business: a run's
:class:`~jobd.run.runner.RunControl` cancels its cancel scope, which cancels the step's
awaits, kills its process group (``ctx.run_process``) and ends its isolated worker, exactly
as a scope's own deadline did. :meth:`Deadlines.disarm` after a deadline fired does nothing.

**Memory.** A disarmed entry stays in the heap until it reaches the top or until the dead
entries outnumber the live ones, when the heap is rebuilt without them; so the heap holds
at most about twice the deadlines that are armed (steps with an hour's timeout disarmed at
10,000 a second must not keep an hour of entries).
"""

from __future__ import annotations

import asyncio
import math
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Protocol

import structlog

log = structlog.get_logger("jobd.runner")
#: Dead entries tolerated before a rebuild is considered (small heaps are not worth it).
_SLACK = 64


class Expirable(Protocol):
    """What a deadline ends when it fires."""

    def expire(self, deadline: Deadline) -> None: ...


class Deadline:
    """One armed deadline; see :class:`Deadlines`."""

    __slots__ = ("armed", "at", "fired", "target", "what")

    def __init__(self, at: float, target: Expirable, what: object) -> None:
        #: Loop time (``loop.time()``, as ``anyio.current_time()``) when it fires.
        self.at = at
        self.target = target
        #: What it bounds, for the target to tell its deadlines apart (a step, or None).
        self.what = what
        self.armed = True
        self.fired = False


class Deadlines:
    """The deadlines of one event loop, on one timer of that loop."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._seq = count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._dead = 0

    def __len__(self) -> int:
        """Entries in the heap, armed or not yet dropped (for tests of the memory bound)."""
        return len(self._heap)

    def arm(self, seconds: float, target: Expirable, what: object = None) -> Deadline:
        """Fire ``target.expire(deadline)`` in ``seconds`` (from the running loop's clock)."""
        loop = asyncio.get_running_loop()
        deadline = Deadline(loop.time() + seconds, target, what)
        heappush(self._heap, (deadline.at, next(self._seq), deadline))
        if deadline.at < self._timer_at:
            self._set_timer(loop, deadline.at)
        return deadline

    def disarm(self, deadline: Deadline) -> None:
        """It will not fire (no-op once it fired or was disarmed)."""
        if not deadline.armed:
            return
        deadline.armed = False
        self._dead += 1
        heap = self._heap
        while heap and not heap[0][2].armed:  # most deadlines end in the order they began
            heappop(heap)
            self._dead -= 1
        if self._dead > _SLACK and self._dead * 2 > len(heap):
            self._heap = [entry for entry in heap if entry[2].armed]
            heapify(self._heap)
            self._dead = 0
        # The timer stays set for an earlier time: when it rings it finds nothing due and
        # is set for the new head (cheaper than moving it at every disarm).

    def _set_timer(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._ring, loop)

    def _ring(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._timer_at = None, math.inf
        heap, now = self._heap, loop.time()
        due: list[Deadline] = []
        while heap and heap[0][0] <= now:
            deadline = heappop(heap)[2]
            if deadline.armed:
                deadline.armed, deadline.fired = False, True
                due.append(deadline)
            else:
                self._dead -= 1
        if heap:
            self._set_timer(loop, heap[0][0])
        for deadline in due:  # after the heap is consistent: a target may arm another
            try:
                deadline.target.expire(deadline)
            except Exception:  # one target's bug must not keep the others running
                log.exception("ending a run at its deadline failed", what=repr(deadline.what))
