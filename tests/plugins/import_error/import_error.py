"""Test plugin that cannot be imported."""

from __future__ import annotations

import jobd_no_such_module  # noqa: F401

import jobd


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return []
