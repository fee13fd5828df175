"""Test plugin whose module body raises while it is imported."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return []


raise RuntimeError("boom while importing body_error")
