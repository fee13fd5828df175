"""Step and job timeouts on the runner's one deadline timer (jobd/run/deadlines.py).

The heap itself on a real event loop, then the engine end to end (real SQLite file, real
plugins): a timed-out attempt is retried and may complete, an action that swallows its
cancellation still times out, the job's timeout prevails over a step's retry, and the
heap stays small however many steps armed a deadline and finished long before it.
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from jobd.core.states import JobState, StepState
from jobd.run.deadlines import Deadline, Deadlines
from tests.enginekit import (
    make_config,
    running_engine,
    spec,
    step,
    wait_all,
    wait_state,
    workflow,
)

S = JobState


class _Target:
    """Records what expired, in order, and wakes the test when ``want`` have."""

    def __init__(self, want: int) -> None:
        self.expired: list[object] = []
        self.want = want
        self.all_in = anyio.Event()

    def expire(self, deadline: Deadline) -> None:
        self.expired.append(deadline.what)
        if len(self.expired) >= self.want:
            self.all_in.set()


async def test_deadlines_fire_once_in_time_order_and_disarmed_ones_never() -> None:
    deadlines, target = Deadlines(), _Target(3)
    late = deadlines.arm(0.06, target, "late")
    dropped = deadlines.arm(0.03, target, "dropped")
    early = deadlines.arm(0.01, target, "early")  # earlier than the timer already set
    middle = deadlines.arm(0.04, target, "middle")
    deadlines.disarm(dropped)
    with anyio.fail_after(10):
        await target.all_in.wait()
    assert target.expired == ["early", "middle", "late"]
    assert early.fired and middle.fired and late.fired and not dropped.fired
    deadlines.disarm(late)  # after it fired: nothing
    assert len(deadlines) == 0


async def test_disarmed_deadlines_do_not_pile_up_in_the_heap() -> None:
    deadlines, target = Deadlines(), _Target(1)
    armed = [deadlines.arm(3600 + i * 1e-3, target) for i in range(5000)]
    random.Random(7).shuffle(armed)
    keep = armed[:100]
    for deadline in armed[100:]:
        deadlines.disarm(deadline)
    assert len(deadlines) <= 2 * len(keep) + 64 + 1
    for deadline in keep:
        deadlines.disarm(deadline)
    assert len(deadlines) <= 64 + 1
    assert target.expired == []


def _flows() -> list:
    return [
        workflow("once", step("s", "t-slow-once", timeout=0.2, retries=1, retry_backoff=0.01)),
        workflow("stubborn", step("s", "t-stubborn", params={"marker": "{marker}"}, timeout=0.2)),
        workflow("retrying", step("s", "t-hang", timeout=0.1, retries=5, retry_backoff=0.05)),
        workflow("quick", step("s", "t-noop", timeout=3600)),
    ]


@pytest.fixture
def config(tmp_path: Path):
    return make_config(tmp_path, _flows())


async def test_a_timed_out_attempt_is_retried_and_the_retry_completes(config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("once"))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED, S.TIMED_OUT})
    assert done.state == S.COMPLETED
    (only,) = done.steps
    assert (only.state, only.attempts, only.outputs) == (StepState.COMPLETED, 2, {"attempt": 2})


async def test_an_action_that_swallows_its_cancellation_still_times_out(
    config, tmp_path: Path
) -> None:
    marker = tmp_path / "stubborn"
    async with running_engine(config) as engine:
        job = await engine.submit(spec("stubborn", params={"marker": str(marker)}))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED, S.TIMED_OUT})
    assert marker.read_text() == "cancelled"  # it was really told to stop
    assert done.state == S.TIMED_OUT
    assert done.steps[0].state == StepState.TIMED_OUT
    assert done.steps[0].outputs is None
    assert done.error is not None and done.error.code == "step-timed-out"


async def test_the_jobs_timeout_prevails_over_a_steps_retries(config) -> None:
    async with running_engine(config) as engine:
        job = await engine.submit(spec("retrying", timeout=0.35))
        done = await wait_state(engine, job.id, {S.COMPLETED, S.FAILED, S.TIMED_OUT})
    assert done.state == S.TIMED_OUT
    assert done.error is not None and done.error.code == "timeout"
    assert 1 <= done.steps[0].attempts < 6  # ended by the job's timeout, not out of attempts


async def test_finished_steps_leave_no_deadlines_behind(config) -> None:
    async with running_engine(config) as engine:
        jobs = [await engine.submit(spec("quick")) for _ in range(300)]
        done = await wait_all(engine, [job.id for job in jobs])
        left = len(engine.runner.deadlines)
    assert {job.state for job in done} == {S.COMPLETED}
    assert left <= 64 + 1  # each step armed an hour's deadline and disarmed it
