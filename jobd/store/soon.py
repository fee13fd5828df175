"""A commit answered by a callback (``Store.commit_soon`` of :mod:`jobd.store.contract`).

A backend's write queue holds, for each unit, what to tell when it has landed: a future a
task waits on (:meth:`~jobd.store.contract.Store.commit`), or a :class:`Completion`, which
has the three methods of a future the queues call (``done``, ``set_result``,
``set_exception``) and calls its callback instead of waking a task. The engine's hottest
write, a job's outcome, needs no task of its own this way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

log = structlog.get_logger("jobd.store")

#: ``done(None)`` once the unit committed, ``done(exc)`` with what ``commit`` would raise.
Done = Callable[[BaseException | None], None]


class Completion:
    """Stands in for a commit's future in a backend's queue; calls ``done`` once."""

    __slots__ = ("_called", "_done")

    def __init__(self, done: Done) -> None:
        self._done = done
        self._called = False

    def done(self) -> bool:
        return self._called

    def set_result(self, _result: None) -> None:
        self._call(None)

    def set_exception(self, exc: BaseException) -> None:
        self._call(exc)

    def _call(self, exc: BaseException | None) -> None:
        if self._called:
            return
        self._called = True
        try:
            self._done(exc)
        except Exception:  # the queue that called it answers the other units all the same
            log.exception("a commit's callback failed")


def queue_soon(
    enqueue: Callable[[Any, Completion], None], unit: Any, done: Done, refused: Exception | None
) -> None:
    """``commit_soon`` of a backend whose queue takes ``enqueue(unit, future)``: ``refused``
    is why the store takes no more writes (closed, broken), or None; ``done`` is told of it
    on the loop's next turn (never before ``commit_soon`` returns)."""
    if refused is not None:
        asyncio.get_running_loop().call_soon(Completion(done).set_exception, refused)
    else:
        enqueue(unit, Completion(done))
