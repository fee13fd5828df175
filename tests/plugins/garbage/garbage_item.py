"""Test plugin whose jobd_actions() list holds a string, not an Action."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_actions() -> object:
    return ["echo"]
