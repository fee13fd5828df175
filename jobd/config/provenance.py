"""Where each key came from: errors that name the file that set the key.

The origins are recorded while merging (:func:`jobd.config.sources.merge`);
:class:`Context` answers "which file set this key path" for errors found while
validating, and :func:`error_at` for those found after loading
(:mod:`jobd.service.configcheck`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from jobd.config.records import Config, KeyPath
from jobd.core.errors import ConfigError


class Context:
    """Where each key came from, so that every error can name its file."""

    def __init__(self, origins: Mapping[KeyPath, Path], fallback: Path) -> None:
        self.origins, self.fallback = origins, fallback

    def file_of(self, path: KeyPath) -> Path:
        """The file that set ``path`` or its nearest enclosing key (the main file at worst)."""
        for cut in range(len(path), 0, -1):
            if (found := self.origins.get(path[:cut])) is not None:
                return found
        return self.fallback

    def error(self, path: KeyPath, problem: str) -> ConfigError:
        return ConfigError(str(self.file_of(path)), dotted(path) or None, problem)


def error_at(config: Config, path: KeyPath, problem: str) -> ConfigError:
    """A :class:`ConfigError` for ``path`` (e.g. ``("workflows", "x", "steps", 0, "action")``)
    naming the file that set it, for checks made after loading (:mod:`jobd.service.configcheck`)."""
    if not config.sources:  # built in code, not read from a file
        return ConfigError(None, dotted(path) or None, problem)
    return Context(config.origins, config.sources[0]).error(path, problem)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: KeyPath) -> str:
    """``("workflows", "ingest", "steps", 1, "timeout")`` → ``workflows.ingest.steps[1].timeout``;
    keys that TOML would need to quote are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            text += f".{key}" if text else key
    return text
