"""Test plugin whose hook takes an argument the spec does not have."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_job_event(job: dict, evt: dict) -> None:
    return None
