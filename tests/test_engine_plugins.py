"""Misbehaving plugins through the real engine: the daemon keeps working."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from jobd.core.states import JobState, StepState
from tests.enginekit import TEST_PLUGINS, make_config, running_engine, spec, step, wait_state
from tests.enginekit import workflow as wf

S = JobState
MISBEHAVING = Path(__file__).parent / "plugins" / "misbehaving"


def _config(tmp: Path):
    config = make_config(
        tmp,
        [
            wf("blocking", step("b", "blocks", timeout=1, isolation="process")),
            wf("hanging", step("h", "hangs", timeout=0.5)),
            wf("raising", step("r", "raises", params={"message": "boom"})),
            wf("garbage", step("g", "non-dict")),
            wf("ok", step("n", "t-noop")),
        ],
    )
    return replace(config, daemon=replace(config.daemon, plugin_dirs=(TEST_PLUGINS, MISBEHAVING)))


async def test_blocking_action_in_a_process_is_killed_at_its_timeout(tmp_path: Path) -> None:
    async with running_engine(_config(tmp_path)) as engine:
        job = await engine.submit(spec("blocking"))
        done = await wait_state(engine, job.id, {S.TIMED_OUT, S.FAILED, S.COMPLETED}, 30)
        assert done.state == S.TIMED_OUT
        assert done.steps[0].state == StepState.TIMED_OUT
        ok = await engine.submit(spec("ok"))
        assert (await wait_state(engine, ok.id, {S.COMPLETED})).state == S.COMPLETED


async def test_raising_hanging_and_garbage_actions_fail_their_attempts(tmp_path: Path) -> None:
    async with running_engine(_config(tmp_path)) as engine:
        ids = {
            name: (await engine.submit(spec(name))).id
            for name in ("hanging", "raising", "garbage", "ok")
        }
        final = {S.TIMED_OUT, S.FAILED, S.COMPLETED}
        jobs = {name: await wait_state(engine, jid, final) for name, jid in ids.items()}
    assert jobs["hanging"].state == S.TIMED_OUT
    assert jobs["raising"].state == S.FAILED
    assert "boom" in (jobs["raising"].steps[0].error or "")
    assert jobs["garbage"].state == S.FAILED
    assert "expected a dict or None" in (jobs["garbage"].steps[0].error or "")
    assert jobs["ok"].state == S.COMPLETED
