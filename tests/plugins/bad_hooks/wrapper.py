"""Test plugin with a hook wrapper, which jobd does not support."""

from __future__ import annotations

from collections.abc import Generator

import jobd


@jobd.hookimpl(wrapper=True)
def jobd_job_event(job: dict, event: dict) -> Generator[None, None, None]:
    yield
