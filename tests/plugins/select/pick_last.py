"""Test plugin: always picks the last candidate (the one with the most bookings)."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_select_resource(pool: str, candidates: list[str], job: dict) -> str | None:
    return candidates[-1] if pool != "leave-to-default" else None
