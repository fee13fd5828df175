"""Shipped plugin: the ``copy`` and ``move`` actions, confined to the configured file roots.

Params: ``source`` (an existing file) and ``target`` (a file path, or an
existing directory to put the file in); both absolute and inside
``[daemon] file_roots`` after resolving ``..`` and symlinks, so neither a
traversal nor a symlink can reach outside. A missing target directory is
created; an existing target file is replaced.
Outputs: ``target`` (the file written) and ``bytes`` (its size).

The copying runs in a worker thread (``anyio.to_thread``) so the daemon keeps
serving; a step timeout takes effect once the current file is done, so that
no half-written copy is left racing its own retry.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio.to_thread

import jobd
from jobd import resolve_in_roots

#: What copy and move take (checked by ``jobd check-config`` against each step's params).
PARAMS = (
    jobd.Param("source", "string", required=True, description="an existing file, in file_roots"),
    jobd.Param("target", "string", required=True, description="a file or directory, in file_roots"),
)


def _source_and_target(ctx: jobd.ActionContext, source: Any, target: Any) -> tuple[Path, Path]:
    src = resolve_in_roots(source, ctx.file_roots, "source")
    dst = resolve_in_roots(target, ctx.file_roots, "target")
    if not src.is_file():
        raise jobd.ActionError(f"source {str(source)!r} is not an existing file")
    if dst.is_dir():
        # Checked again: <dir>/<name> may itself be a symlink leading out.
        dst = resolve_in_roots(str(dst / src.name), ctx.file_roots, "target")
    if dst == src:
        raise jobd.ActionError(f"source and target are the same file: {src}")
    return src, dst


def _transfer(operation: Callable[[str, str], object], src: Path, dst: Path) -> int:
    """Runs in a thread: copy or move ``src`` to ``dst``; return the bytes written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    operation(str(src), str(dst))
    return dst.stat().st_size


async def copy(ctx: jobd.ActionContext, source: Any = None, target: Any = None) -> dict[str, Any]:
    """Copy ``source`` to ``target`` with its metadata (``shutil.copy2``)."""
    src, dst = _source_and_target(ctx, source, target)
    size = await anyio.to_thread.run_sync(_transfer, shutil.copy2, src, dst)
    ctx.log.info("copied", source=str(src), target=str(dst), bytes=size)
    return {"target": str(dst), "bytes": size}


async def move(ctx: jobd.ActionContext, source: Any = None, target: Any = None) -> dict[str, Any]:
    """Move ``source`` to ``target`` (a rename, or copy and delete across file systems)."""
    src, dst = _source_and_target(ctx, source, target)
    size = await anyio.to_thread.run_sync(_transfer, shutil.move, src, dst)
    ctx.log.info("moved", source=str(src), target=str(dst), bytes=size)
    return {"target": str(dst), "bytes": size}


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action("copy", copy, "Copy a file inside the file roots", params=PARAMS),
        jobd.Action("move", move, "Move a file inside the file roots", params=PARAMS),
    ]
