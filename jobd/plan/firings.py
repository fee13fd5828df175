"""Counting and planning firings over a trigger (pure: nothing here reads the clock).

The trigger is anything with ``next_after(t)`` and ``interval``
(:class:`jobd.plan.timers.ScheduleTrigger` is the one jobd uses), so this module
needs no APScheduler import. :func:`jobd.plan.timers.plan_misfires` is the entry
point for a schedule; :func:`misfire_plan` does its work.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from jobd.config import ScheduleConfig


class Trigger(Protocol):
    """A schedule's firings: each strictly after a time, and the grid of an interval."""

    #: The period of an epoch-anchored interval schedule (seconds); ``None`` for cron.
    interval: float | None

    def next_after(self, t: float) -> float | None:
        """The first firing strictly after ``t``, or ``None`` if there is none."""
        ...


def firings(trigger: Trigger, after: float, until: float, limit: int) -> list[float]:
    out: list[float] = []
    n = trigger.next_after(after)
    while n is not None and n <= until and len(out) < limit:
        out.append(n)
        n = trigger.next_after(n)
    return out


def latest(trigger: Trigger, after: float, until: float, keep: int) -> tuple[int, list[float]]:
    """How many firings lie in ``(after, until]``, and the last ``keep`` of them (oldest first).

    Interval schedules are counted arithmetically, so a long downtime with a
    short interval costs nothing; cron schedules are walked (about 15-30 µs per
    firing: a year of a per-minute cron takes seconds, so the engine should run
    :func:`jobd.plan.timers.plan_misfires` in a worker thread).
    """
    if until <= after:
        return 0, []
    if trigger.interval is None:
        tail: deque[float] = deque(maxlen=keep)
        count = 0
        n = trigger.next_after(after)
        while n is not None and n <= until:
            count += 1
            tail.append(n)
            n = trigger.next_after(n)
        return count, list(tail)
    count = _interval_count(trigger, after, until)
    start = max(after, until - (keep + 1) * trigger.interval)
    return count, (firings(trigger, start, until, keep + 2)[-keep:] if keep else [])


def _interval_count(trigger: Trigger, after: float, until: float) -> int:
    """Firings of an epoch-anchored interval trigger in ``(after, until]``."""
    p = trigger.interval
    assert p is not None
    first = trigger.next_after(after)
    if first is None or first > until:
        return 0
    k_first = round(first / p)
    k_last = math.floor(until / p)
    while p * (k_last + 1) <= until:  # float rounding either way
        k_last += 1
    while p * k_last > until:
        k_last -= 1
    return max(0, k_last - k_first + 1)


@dataclass(frozen=True, slots=True)
class MisfirePlan:
    """What to do with the firings missed while the daemon was down.

    ``run``: the firings to run now, oldest first. ``skipped``: firings not run
    (policy, or older than ``misfire_grace``), oldest first, at most ``limit`` of
    them, the latest ones. ``skipped_omitted``: how many further skipped firings
    (older than those listed) are only counted. The engine records each listed
    firing and one summary for the omitted ones, so nothing is silently dropped:
    ``len(run) + len(skipped) + skipped_omitted`` is every firing in the gap.
    """

    run: list[float]
    skipped: list[float]
    skipped_omitted: int = 0


def misfire_plan(
    trigger: Trigger, schedule: ScheduleConfig, last_fire: float, now: float, limit: int
) -> MisfirePlan:
    """:func:`jobd.plan.timers.plan_misfires` for ``trigger``, the schedule's, once
    ``last_fire < now`` (that function's docstring says what the plan holds)."""
    cutoff = now - schedule.misfire_grace  # t >= cutoff is within grace
    boundary = max(last_fire, math.nextafter(cutoff, -math.inf))
    old_count, old = latest(trigger, last_fire, boundary, limit)
    # Room for up to `limit` to run and `limit` to list as skipped.
    recent_count, recent = latest(trigger, boundary, now, 2 * limit)
    if schedule.misfire == "all":
        run = recent[-limit:] if limit else []
    elif schedule.misfire == "once":
        run = recent[-1:]
    else:
        run = []
    recent_skipped = recent[: len(recent) - len(run)]
    # Only list old firings when no recent one between them went unlisted.
    listed = (old + recent_skipped if recent_count == len(recent) else recent_skipped)[-limit:]
    total_skipped = old_count + recent_count - len(run)
    return MisfirePlan(run, listed, total_skipped - len(listed))
