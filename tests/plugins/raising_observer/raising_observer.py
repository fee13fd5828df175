"""Test plugin whose every hook but jobd_actions raises: each must be logged and ignored."""

from __future__ import annotations

import jobd


@jobd.hookimpl
def jobd_job_event(job: dict, event: dict) -> None:
    raise RuntimeError("observer is broken")


@jobd.hookimpl
def jobd_validate_job(job: dict, config: object) -> list[str]:
    raise RuntimeError("validator is broken")


@jobd.hookimpl
def jobd_select_resource(pool: str, candidates: list[str]) -> str | None:
    raise RuntimeError("selector is broken")


@jobd.hookimpl
def jobd_startup(config: object) -> None:
    raise RuntimeError("startup is broken")


@jobd.hookimpl
def jobd_shutdown() -> None:
    raise RuntimeError("shutdown is broken")
