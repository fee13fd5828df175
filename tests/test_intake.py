"""Intake through the real engine: ids stay dense whatever is refused, unknown resource and
pool names are refused in every state, and resubmit leaves the old job exactly as it was."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jobd.config import Config, PoolConfig, ResourceConfig
from jobd.core.errors import BookingConflict, NotFound, ValidationError
from jobd.core.states import JobState
from tests.enginekit import make_config, running_engine, spec, step, wait_state, workflow

S = JobState
#: Far enough ahead that nothing booked here becomes due while a test runs.
T = time.time() + 100_000


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(
        tmp_path,
        [workflow("noop", step("a", "t-noop"))],
        resources={"studio": ResourceConfig(name="studio")},
        pools={"studios": PoolConfig(name="studios", members=("studio",))},
    )


async def test_refused_submissions_use_up_no_id(config: Config) -> None:
    async with running_engine(config) as engine:
        first = await engine.submit(spec("noop", start_at=T, end_at=T + 10, resources=["studio"]))
        with pytest.raises(BookingConflict):  # refused after planning its booking
            await engine.submit(spec("noop", start_at=T, end_at=T + 10, resources=["studio"]))
        with pytest.raises(ValidationError):  # refused before
            await engine.submit(spec("nope"))
        with pytest.raises(ValidationError):
            await engine.submit(spec("noop", priority=5000))
        second = await engine.submit(spec("noop", state=S.DRAFT))
        assert second.id == first.id + 1
        assert (await engine.get_job(second.id)).id == second.id
    # A restart takes up the count where it was.
    async with running_engine(config) as engine:
        third = await engine.submit(spec("noop", state=S.DRAFT))
        assert third.id == second.id + 1


@pytest.mark.parametrize("state", [S.DRAFT, S.TENTATIVE, S.CONFIRMED])
async def test_unknown_resource_or_pool_is_refused_in_every_state(
    config: Config, state: JobState
) -> None:
    async with running_engine(config) as engine:
        with pytest.raises(ValidationError, match="unknown resource 'studioo'") as err:
            await engine.submit(
                spec("noop", state=state, start_at=T, end_at=T + 1, resources=["studioo"])
            )
        assert err.value.details["field"] == "resources"
        assert "configured resources: studio" in err.value.message
        with pytest.raises(ValidationError, match="unknown pool 'nopool'") as err:
            await engine.submit(
                spec(
                    "noop",
                    state=state,
                    start_at=T,
                    end_at=T + 1,
                    resources=["studio"],
                    pools=["nopool"],
                )
            )
        assert err.value.details["field"] == "pools"
        # Nothing was stored, and no id went.
        job = await engine.submit(spec("noop", state=state))
        assert job.id == 1


async def test_editing_a_draft_to_an_unknown_resource_is_refused(config: Config) -> None:
    async with running_engine(config) as engine:
        draft = await engine.submit(spec("noop", state=S.DRAFT, start_at=T, end_at=T + 1))
        with pytest.raises(ValidationError, match="unknown resource 'x'") as err:
            await engine.edit(draft.id, {"resources": ["x"]})
        assert err.value.details["field"] == "resources"
        assert (await engine.get_job(draft.id)).spec.resources == ()


async def test_resubmit_leaves_the_old_job_unchanged_and_the_new_one_says_where_from(
    config: Config,
) -> None:
    async with running_engine(config) as engine:
        old = await engine.submit(spec("noop"))
        done = await wait_state(engine, old.id, S.COMPLETED)
        new = await engine.operate(old.id, "resubmit")
        assert new is not None and new.id == old.id + 1
        assert new.history[0].cause == f"resubmitted from job {old.id}"
        await wait_state(engine, new.id, S.COMPLETED)
        stored_new = await engine.get_job(new.id)
        assert stored_new.history[0].cause == f"resubmitted from job {old.id}"
        assert stored_new.history[0].from_state is None
        await engine.store.flush()
        after = await engine.get_job(old.id)
        assert after.history == done.history
        assert after.updated_at == done.updated_at and after.state == S.COMPLETED
        with pytest.raises(NotFound):
            await engine.get_job(new.id + 1)
