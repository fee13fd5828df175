"""Where a configuration comes from: the main file, then ``<its folder>/jobd.d/*.toml``
drop-ins in name order, deep-merged into one tree that remembers, for every key, the
file that set it (the ``origins`` every error names its file from).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobd.config.records import KeyPath
from jobd.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/jobd/jobd.toml")
CONFIG_ENV = "JOBD_CONFIG"
DROPIN_DIR = "jobd.d"


def resolve_config_path(cli_value: str | None) -> Path:
    """The config file to use: the CLI flag if given, else ``$JOBD_CONFIG``, else
    ``/etc/jobd/jobd.toml``. Empty values count as not given."""
    value = cli_value or os.environ.get(CONFIG_ENV)
    return Path(value).expanduser() if value else DEFAULT_CONFIG_PATH


def read_sources(main: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The main file then its drop-ins in name order, each parsed; a missing drop-in
    folder is fine, a missing main file is not."""
    files = [main]
    dropins = main.parent / DROPIN_DIR
    if dropins.is_dir():
        files += sorted((p for p in dropins.glob("*.toml") if p.is_file()), key=lambda p: p.name)
    return [(file, _parse(file)) for file in files]


def _parse(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(file), None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), None, f"not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line L, column C)".
        raise ConfigError(str(file), None, f"invalid TOML: {exc}") from exc


def merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    path: KeyPath,
    source: Path,
    origins: dict[KeyPath, Path],
) -> None:
    """Deep-merge ``new`` (from ``source``) into ``into``, recording where each key came from.

    Tables merge recursively; ``[[schedules]]`` is concatenated (each entry keeps
    its own file); anything else from a later file replaces the earlier value
    wholesale (a workflow's ``steps`` array included).
    """
    for key, value in new.items():
        here = (*path, key)
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            origins[here] = source  # the last file to touch a table answers for it
            merge(old, value, here, source, origins)
        elif here == ("schedules",) and isinstance(old, list) and isinstance(value, list):
            for item in value:
                origins[(*here, len(old))] = source
                old.append(item)
        else:
            for stale in [p for p in origins if p[: len(here)] == here]:
                del origins[stale]
            into[key] = value
            _record(value, here, source, origins)


def _record(value: Any, path: KeyPath, source: Path, origins: dict[KeyPath, Path]) -> None:
    """Record ``source`` for ``path`` and every key below it.

    Each key must answer for itself: were only the enclosing table recorded, a
    later file merging into that table (``[daemon] workers = 16`` in a drop-in)
    would become the origin of the keys it never set, and their relative paths
    would move to the drop-in's folder.
    """
    origins[path] = source
    if isinstance(value, dict):
        for key, child in value.items():
            _record(child, (*path, key), source, origins)
