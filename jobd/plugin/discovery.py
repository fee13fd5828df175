"""Finding plugins and loading their files: what :class:`jobd.plugin.host.PluginHost` loads.

Three places, in this order (:func:`discover`):

1. jobd's shipped plugins (the repository's ``plugins/`` folder, installed as
   ``jobd/builtin_plugins/``), source ``"builtin"``;
2. entry points of group ``jobd.plugins``, source ``"entry-point"``;
3. ``*.py`` files of each configured plugin directory, by name, source
   ``"drop-in"`` (names starting with ``.`` or ``_`` are skipped).

Nothing is imported here: each :class:`Candidate` carries a ``load`` to call. A
file is loaded under a stable module name (:func:`dropin_module_name`), so a
worker process can load the same file under the same name.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import structlog

log = structlog.get_logger("jobd.plugins")

ENTRY_POINT_GROUP = "jobd.plugins"
Source = Literal["entry-point", "drop-in", "builtin"]


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin, loaded or broken (what ``jobd plugins`` shows).

    ``error`` is ``None`` for a working plugin, else ``"<ExceptionType>:
    <message>"`` (e.g. ``"SyntaxError: invalid syntax (x.py, line 3)"``); a
    broken plugin offers no actions and none of its hooks is called.
    ``module`` is the name the plugin's module is importable under (for
    drop-ins and builtins a stable synthetic name, see
    :func:`load_module_from_file`); isolation uses it in a worker process.
    """

    name: str
    file: str | None
    source: Source
    actions: tuple[str, ...] = ()
    error: str | None = None
    module: str | None = None
    #: sha256 of a drop-in or builtin file as loaded (a reload reuses an unchanged file).
    digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "source": self.source,
            "actions": list(self.actions),
            "error": self.error,
        }


@dataclass
class Candidate:
    """A plugin found but not loaded yet."""

    name: str
    key: str  # unique pluggy registration name
    source: Source
    file: str | None
    module: str | None
    load: Callable[[], object] = field(repr=False)
    digest: str | None = None  # of a file's bytes; None for an entry point


def builtin_plugin_dir() -> Path:
    """The shipped plugins: ``jobd/builtin_plugins`` in a wheel, else the repo's ``plugins/``."""
    package = (
        Path(__file__).resolve().parent.parent
    )  # jobd/, this module is jobd/plugin/discovery.py
    installed = package / "builtin_plugins"
    return installed if installed.is_dir() else package.parent / "plugins"


def dropin_module_name(path: Path, prefix: str = "jobd_dropin") -> str:
    """The stable module name a plugin file is loaded under: ``<prefix>_<dirhash>_<stem>``.

    Stable across processes (a worker can load the same file under the same
    name) and distinct for equal file names in different directories.
    """
    folder = str(path.resolve().parent).encode()
    stem = re.sub(r"\W", "_", path.stem)
    return f"{prefix}_{hashlib.sha256(folder).hexdigest()[:8]}_{stem}"


def load_module_from_file(path: Path, module_name: str) -> ModuleType:
    """Execute ``path`` as module ``module_name`` and put it in ``sys.modules``.

    Registered before its body runs (as ``import`` does), so that pickling a
    function defined in it works; removed again if the body raises.
    """
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def describe_exception(exc: BaseException) -> str:
    """``"<Type>: <message on one line>"``, as :attr:`PluginInfo.error` shows it."""
    text = " ".join(str(exc).split())  # pluggy's validation messages span lines
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def discover(
    plugin_dirs: Sequence[Path], *, builtin: bool, entry_points: bool
) -> Iterator[Candidate]:
    """The plugins to load, in load order: builtins (if ``builtin``), entry points (if
    ``entry_points``), then each folder of ``plugin_dirs`` (a missing one is empty)."""
    builtin_dir = builtin_plugin_dir().resolve()
    if builtin:
        yield from _file_candidates(builtin_dir, "builtin")
    if entry_points:
        yield from _entry_point_candidates()
    for folder in plugin_dirs:
        if builtin and folder.resolve() == builtin_dir:
            continue  # already loaded as builtin; twice would be a duplicate
        yield from _file_candidates(folder, "drop-in")


def _file_candidates(folder: Path, source: Source) -> Iterator[Candidate]:
    if not folder.is_dir():
        log.info("plugin directory missing, treated as empty", directory=str(folder))
        return
    prefix = "jobd_builtin" if source == "builtin" else "jobd_dropin"
    for path in sorted(folder.glob("*.py"), key=lambda p: p.name):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue
        module = dropin_module_name(path, prefix)
        yield Candidate(
            path.stem,
            module,
            source,
            str(path.absolute()),
            module,
            partial(load_module_from_file, path, module),
            _file_digest(path),
        )


def _entry_point_candidates() -> Iterator[Candidate]:
    try:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # a corrupt installed distribution must not stop the daemon
        log.exception("cannot read entry points", group=ENTRY_POINT_GROUP)
        return
    for ep in sorted(found, key=lambda e: e.name):
        yield Candidate(ep.name, f"entry-point:{ep.name}", "entry-point", None, ep.module, ep.load)


def _file_digest(path: Path) -> str | None:
    """sha256 of the file's bytes; ``None`` if unreadable (its load then fails and says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def module_file(module_name: str | None) -> str | None:
    module = sys.modules.get(module_name or "")
    return getattr(module, "__file__", None)
