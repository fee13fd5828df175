"""Workflow ``requires`` (SPEC §10): a node runs a workflow's jobs only with all the tags it
requires (``[daemon] tags``); the others stay ``pending`` with the reason in their history,
and never keep this node's own work out of its queue. A real SQLite file, the real engine.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from jobd.config.summary import summarize
from jobd.core.errors import ConfigError
from jobd.core.states import JobState
from tests.enginekit import make_config, running_engine, spec, step, wait_state, workflow
from tests.test_config import MINIMAL_WORKFLOW, load_text

S = JobState


def test_requires_is_read_checked_and_summarised(tmp_path: Path) -> None:
    config = load_text(tmp_path, MINIMAL_WORKFLOW + 'requires = ["gpu", "fast"]\n')
    assert config.workflows["w"].requires == ("gpu", "fast")
    text = summarize(config)
    assert "w (1 step; requires gpu, fast)" in text
    assert "workflow w requires tags gpu, fast that this node (tags: (none)) lacks" in text
    tagged = load_text(
        tmp_path, '[daemon]\ntags = ["gpu", "fast"]\n' + MINIMAL_WORKFLOW + 'requires = ["gpu"]\n'
    )
    assert "lacks" not in summarize(tagged)
    with pytest.raises(ConfigError, match="requires"):
        load_text(tmp_path, MINIMAL_WORKFLOW + 'requires = "gpu"\n')


@pytest.mark.anyio
async def test_a_job_for_other_nodes_waits_in_pending_with_its_reason(tmp_path: Path) -> None:
    flows = [
        workflow("render", step("a", "t-noop"), requires=("gpu",)),
        workflow("plain", step("a", "t-noop")),
    ]
    config = make_config(tmp_path, flows, node="edit-1", tags=("cpu",))
    async with running_engine(config) as engine:
        now_job = await engine.submit(spec("render"))
        later = await engine.submit(spec("render", start_at=time.time() + 0.2))
        assert now_job.state == S.PENDING
        assert now_job.history[-1].cause == (
            "due; waiting for a node with tags gpu (workflow render requires gpu; "
            "node edit-1 has cpu)"
        )
        await wait_state(engine, later.id, {S.PENDING})
        shown = await engine.get_job(later.id)
        assert "waiting for a node with tags gpu" in shown.history[-1].cause
        # This node's own work goes by: the pending jobs are not its to wait for.
        plain = await engine.submit(spec("plain"))
        assert plain.state == S.QUEUED
        await wait_state(engine, plain.id, {S.COMPLETED})
        assert (await engine.get_job(now_job.id)).state == S.PENDING


@pytest.mark.anyio
async def test_a_node_with_the_tags_runs_them(tmp_path: Path) -> None:
    flows = [workflow("render", step("a", "t-noop"), requires=("gpu",))]
    config = make_config(tmp_path, flows, tags=("gpu", "cpu"))
    async with running_engine(config) as engine:
        job = await engine.submit(spec("render"))
        await wait_state(engine, job.id, {S.COMPLETED})
    # The same jobs after a restart on a node without the tag: pending, not run.
    other = dataclasses.replace(config, daemon=dataclasses.replace(config.daemon, tags=()))
    async with running_engine(other) as engine:
        job = await engine.submit(spec("render"))
        assert job.state == S.PENDING
