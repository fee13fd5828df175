"""Test plugin: answers with a resource that is not among the candidates."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_select_resource(candidates: list[str]) -> str | None:
    return "not-a-member"
