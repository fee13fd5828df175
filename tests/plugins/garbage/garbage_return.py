"""Test plugin whose jobd_actions() returns a dict, not a list."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_actions() -> object:
    return {"name": "echo"}
