"""Shipped plugin: the ``checksum`` action hashes a file inside the configured file roots.

Params: ``path`` (absolute, inside ``[daemon] file_roots`` after resolving
symlinks) and ``algorithm`` (``md5``, ``sha1`` or ``sha256``; default
``sha256``). Outputs: ``algorithm`` and ``digest`` (hex).

Hashing a large media file takes a while, so it runs in a worker thread in
1 MiB chunks, and checks between chunks whether the step was cancelled (its
timeout, a cancel or pause of the job): the thread then stops early instead
of reading the rest of the file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import anyio.from_thread
import anyio.to_thread

import jobd
from jobd import resolve_in_roots

ALGORITHMS = ("md5", "sha1", "sha256")
CHUNK = 1024 * 1024


def _algorithm(algorithm: Any) -> str:
    name = str(algorithm).lower()
    if name not in ALGORITHMS:
        raise jobd.ActionError(
            f"checksum: 'algorithm' must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}"
        )
    return name


def _hash_file(path: Path, algorithm: str) -> str:
    """Runs in a thread; raises the cancellation exception if the step was cancelled."""
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with path.open("rb") as data:
        while chunk := data.read(CHUNK):
            digest.update(chunk)
            anyio.from_thread.check_cancelled()
    return digest.hexdigest()


async def run(
    ctx: jobd.ActionContext, path: Any = None, algorithm: Any = "sha256"
) -> dict[str, Any]:
    """Hash the file at ``path`` and return ``algorithm`` and the hex ``digest``."""
    name = _algorithm(algorithm)
    file = resolve_in_roots(path, ctx.file_roots, "path")
    if not file.is_file():
        raise jobd.ActionError(f"checksum: {str(path)!r} is not an existing file")
    digest = await anyio.to_thread.run_sync(_hash_file, file, name)
    ctx.log.info("checksum", path=str(file), algorithm=name, digest=digest)
    return {"algorithm": name, "digest": digest}


@jobd.hookimpl
def jobd_actions() -> list[jobd.Action]:
    return [
        jobd.Action(
            "checksum",
            run,
            "Hash a file (md5, sha1, sha256) inside the file roots",
            params=(
                jobd.Param("path", "string", required=True, description="absolute, in file_roots"),
                jobd.Param("algorithm", "string", choices=ALGORITHMS, description="default sha256"),
            ),
        )
    ]
