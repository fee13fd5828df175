"""Test plugin with a misspelt hook name: refused rather than silently never called."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_job_events(job: dict, event: dict) -> None:
    return None
