"""Test plugin whose jobd_actions() raises."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    raise ValueError("cannot list my actions")
