"""One load: read the files, merge them, validate each section, check across sections."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from jobd.config.crosscheck import cross_check
from jobd.config.provenance import Context
from jobd.config.records import Config, KeyPath
from jobd.config.sections import build
from jobd.config.sources import merge, read_sources


def load_config(path: Path) -> Config:
    """Read ``path`` and ``<its folder>/jobd.d/*.toml`` (name order), merge, validate.

    Relative paths in a file resolve against that file's folder. Nothing on disk
    other than the TOML files is looked at: paths, scripts and plugin dirs need
    not exist yet (the daemon treats a missing plugin dir as empty).

    Raises :class:`jobd.core.errors.ConfigError` naming the file, key path and problem.
    """
    sources = read_sources(Path(os.path.abspath(path)))
    merged: dict[str, Any] = {}
    origins: dict[KeyPath, Path] = {}
    for file, data in sources:
        merge(merged, data, (), file, origins)
    ctx = Context(origins, fallback=sources[0][0])
    config = build(ctx, merged, tuple(file for file, _ in sources))
    cross_check(ctx, config)
    return dataclasses.replace(config, origins=origins)
