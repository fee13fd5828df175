"""Test plugin whose validator returns a string instead of a list of strings."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_validate_job(job: dict) -> object:
    return "not a list"
