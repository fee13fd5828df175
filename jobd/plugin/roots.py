"""Paths for plugin authors: a job's path parameter kept inside the configured file roots."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from jobd.core.errors import ActionError


def resolve_in_roots(value: object, roots: Sequence[Path], param: str = "path") -> Path:
    """For plugin authors: ``value`` as an absolute, symlink-free path inside one of ``roots``.

    ``value`` must be an absolute path (a relative one means nothing in a
    daemon). It is resolved (``..`` and every symlink, also when the file
    does not exist yet), so neither traversal nor a symlink can lead out of
    the roots. Raises :class:`~jobd.core.errors.ActionError` naming ``param``
    otherwise. The shipped ``copy``, ``move`` and ``checksum`` use it with
    ``ctx.file_roots``.
    """
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ActionError(f"{param!r} must be a path, not {value!r}")
    path = Path(value)
    if not path.is_absolute():
        raise ActionError(f"{param!r} must be an absolute path, not {str(value)!r}")
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # symlink loop, NUL byte
        raise ActionError(f"{param!r}: cannot resolve {str(value)!r}: {exc}") from exc
    allowed = [root.resolve() for root in roots]
    if not any(resolved.is_relative_to(root) for root in allowed):
        where = ", ".join(map(str, allowed)) or "none configured"
        raise ActionError(f"{param!r}: {str(value)!r} is outside the file roots ({where})")
    return resolved
