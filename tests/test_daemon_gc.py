"""The daemon's garbage-collector tuning (``tune_gc``, called once the daemon is ready)."""

from __future__ import annotations

import gc

from jobd.service.daemon import GC_YOUNG_THRESHOLD, tune_gc


def test_tune_gc_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        tune_gc()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert gc.get_freeze_count() > frozen
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # new garbage is still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
