"""The engine: every operation on a job, the one state-changing path, recovery at start-up.

Every change of a job's state goes through one function
(:meth:`.transitions.Transitions.apply`): it checks the transition table,
writes the change and its history row to the store (guarded), and only after
the COMMIT tells the rest (run queue, locks, listeners, plugins, the SSE
stream). The store is the truth; the run queue, lock tables, booking index and
timers are caches rebuilt from it at start-up (:mod:`.recovery`).

:class:`Engine` (:mod:`.facade`) is the whole public surface; the parts behind
it are listed there.
"""

from __future__ import annotations

from jobd.core.models import LATEST_TIME, MAX_DURATION
from jobd.engine.batch import BATCH_CONCURRENCY, BatchOutcome
from jobd.engine.facade import Engine
from jobd.engine.intake import replace_job
from jobd.engine.operations import OPERATION_WAIT

__all__ = [
    "BATCH_CONCURRENCY",
    "LATEST_TIME",
    "MAX_DURATION",
    "OPERATION_WAIT",
    "BatchOutcome",
    "Engine",
    "replace_job",
]
