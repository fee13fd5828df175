"""The engine in a child process, for crash tests: ``python -m tests.crash_child STATE_DIR``.

Submits the jobs of :func:`crash_jobs` and runs until it is killed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from jobd.config import Config
from jobd.core.models import JobSpec
from tests.enginekit import make_config, running_engine, step, workflow


def crash_config(tmp: Path) -> Config:
    wait_gate = ["sh", "-c", "echo $$ > {pidfile}; while [ ! -e {gate} ]; do sleep 0.02; done"]
    return make_config(
        tmp,
        [
            workflow(
                "two-step",
                step("first", "t-record", params={"log": "{log}", "hold": 0}),
                step("second", "exec", params={"argv": wait_gate}, retries=1, retry_backoff=0.01),
            ),
            workflow("no-retry", step("only", "exec", params={"argv": wait_gate}, retries=0)),
        ],
        workers=4,
    )


def crash_jobs(tmp: Path) -> list[JobSpec]:
    def params(name: str) -> dict[str, str]:
        return {
            "log": str(tmp / "steps.log"),
            "gate": str(tmp / "gate"),
            "pidfile": str(tmp / f"{name}.pid"),
        }

    return [
        JobSpec(workflow="two-step", params=params("a"), assets=("A",)),
        JobSpec(workflow="two-step", params=params("b"), assets=("A",)),
        JobSpec(workflow="no-retry", params=params("c")),
    ]


async def main(tmp: Path) -> None:
    async with running_engine(crash_config(tmp)) as engine:
        for spec in crash_jobs(tmp):
            await engine.submit(spec, actor="test")
        print("SUBMITTED", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
