"""Random multi-asset workloads through the real engine never deadlock and never overlap."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobd.core.states import JobState
from tests.enginekit import make_config, running_engine, spec, step, wait_all, workflow

ASSETS = ["a", "b", "c", "d"]
job_st = st.tuples(
    st.sets(st.sampled_from(ASSETS), max_size=3), st.sets(st.sampled_from(ASSETS), max_size=2)
)


def _check_no_overlap(events: list[dict], modes: dict[int, tuple[set[str], set[str]]]) -> None:
    holding: dict[int, tuple[set[str], set[str]]] = {}
    for ev in events:
        job = ev["job"]
        if ev["ev"] == "end":
            holding.pop(job)
            continue
        exclusive, shared = modes[job]
        for other, (ox, osh) in holding.items():
            assert not exclusive & (ox | osh), f"job {job} overlaps {other} exclusively"
            assert not shared & ox, f"job {job} reads beside writer {other}"
        holding[job] = (exclusive, shared)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(job_st, min_size=5, max_size=25))
def test_random_workloads_finish_without_overlap(jobs: list[tuple[set[str], set[str]]]) -> None:
    with tempfile.TemporaryDirectory(prefix="jobd-wl-") as tmp:
        anyio.run(_run_workload, Path(tmp), jobs)


async def _run_workload(tmp: Path, jobs: list[tuple[set[str], set[str]]]) -> None:
    log = tmp / "log"
    flow = workflow("rec", step("r", "t-record", params={"log": str(log), "hold": 0.002}))
    config = make_config(tmp, [flow], workers=4)
    modes: dict[int, tuple[set[str], set[str]]] = {}
    async with running_engine(config) as engine:
        ids = []
        for exclusive, shared in jobs:
            job = await engine.submit(
                spec("rec", assets=sorted(exclusive), shared_assets=sorted(shared - exclusive))
            )
            modes[job.id] = (set(exclusive), set(shared - exclusive))
            ids.append(job.id)
        done = await wait_all(engine, ids, timeout=60)
        assert (await engine.locks_info()) == []
    assert all(j.state == JobState.COMPLETED for j in done)
    _check_no_overlap([json.loads(line) for line in log.read_text().splitlines()], modes)
