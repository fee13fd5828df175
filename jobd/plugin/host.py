"""Plugin discovery, the action registry and the only calls into pluggy's hooks.

:class:`PluginHost` finds plugins in three places, in this order:

1. jobd's shipped plugins (the repository's ``plugins/`` folder, installed as
   ``jobd/builtin_plugins/``), source ``"builtin"``;
2. entry points of group ``jobd.plugins``, source ``"entry-point"``;
3. ``*.py`` files of each configured plugin directory, by name, source
   ``"drop-in"`` (names starting with ``.`` or ``_`` are skipped).

pluggy does not isolate plugins: ``load_setuptools_entrypoints`` has no
``try`` and a hook call stops at the first raising implementation. So every
load here is guarded on its own, and every hook implementation is called on
its own, guarded, with failures logged under the plugin's name. A broken
plugin is recorded (:attr:`PluginInfo.error`) and unregistered; the others
load. Only two plugins offering the same action name stop the load, with a
:class:`~jobd.core.errors.ConfigError` naming both files.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Literal

import pluggy
import structlog

from jobd.core.errors import ActionError, ConfigError
from jobd.plugin.action import PARAM_TYPES, Action, Param
from jobd.plugin.hookspecs import PROJECT, JobdSpec, hookimpl

if TYPE_CHECKING:
    from pluggy import HookImpl

    from jobd.config import Config

__all__ = [
    "ACTION_NAME",
    "ENTRY_POINT_GROUP",
    "PluginHost",
    "PluginInfo",
    "builtin_plugin_dir",
    "checked_actions",
    "describe_exception",
    "dropin_module_name",
    "load_module_from_file",
    "resolve_in_roots",
]

log = structlog.get_logger("jobd.plugins")

ENTRY_POINT_GROUP = "jobd.plugins"
ACTION_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")
Source = Literal["entry-point", "drop-in", "builtin"]
_HOOKS = tuple(name for name in vars(JobdSpec) if name.startswith("jobd_"))
# The key under which jobd registers its own default implementations.
_JOBD_KEY = "jobd.defaults"


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
class _Candidate:
    """A plugin found but not loaded yet."""

    name: str
    key: str  # unique pluggy registration name
    source: Source
    file: str | None
    module: str | None
    load: Callable[[], object] = field(repr=False)
    digest: str | None = None  # of a file's bytes; None for an entry point


class _Defaults:
    """jobd's own hook implementations, called after every plugin's."""

    @hookimpl(trylast=True)
    def jobd_select_resource(self, candidates: list[str]) -> str | None:
        # The caller passes the free members sorted by fewest bookings.
        return candidates[0] if candidates else None


def builtin_plugin_dir() -> Path:
    """The shipped plugins: ``jobd/builtin_plugins`` in a wheel, else the repo's ``plugins/``."""
    package = Path(__file__).resolve().parent.parent  # jobd/, this module is jobd/plugin/host.py
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


def checked_actions(result: object) -> list[Action]:
    """``result`` of a ``jobd_actions()`` if it is a list of valid actions.

    Raises ``TypeError``/``ValueError`` saying what is wrong: not a list, an
    item that is not an :class:`Action`, a bad name, a ``run`` that is not
    an async function.
    """
    if not isinstance(result, list | tuple):
        raise TypeError(f"jobd_actions() returned {type(result).__name__}, not a list of Action")
    for index, item in enumerate(result):
        if not isinstance(item, Action):
            raise TypeError(f"jobd_actions() item {index} is {type(item).__name__}, not Action")
        if not isinstance(item.name, str) or not ACTION_NAME.match(item.name):
            raise ValueError(f"action name {item.name!r} does not match {ACTION_NAME.pattern}")
        if not inspect.iscoroutinefunction(item.run):
            raise TypeError(f"action {item.name!r}: run is not an async function")
        if item.params is not None:
            _check_param_declarations(item)
    return list(result)


def _check_param_declarations(action: Action) -> None:
    """``action.params`` is a tuple of :class:`Param` that ``run`` can all take, once each."""
    if not isinstance(action.params, tuple | list):
        raise TypeError(f"action {action.name!r}: params is not a tuple of jobd.Param")
    takes = inspect.signature(action.run).parameters.values()
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in takes)
    keywords = {
        p.name
        for p in takes
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    seen: set[str] = set()
    for param in action.params:
        if not isinstance(param, Param):
            raise TypeError(f"action {action.name!r}: params item {param!r} is not a jobd.Param")
        if param.type not in PARAM_TYPES:
            raise ValueError(
                f"action {action.name!r}: param {param.name!r} has unknown type {param.type!r}"
                f" (known: {', '.join(PARAM_TYPES)})"
            )
        if param.name in seen:
            raise ValueError(f"action {action.name!r}: param {param.name!r} is declared twice")
        if not open_ended and param.name not in keywords:
            raise TypeError(
                f"action {action.name!r}: param {param.name!r} is declared"
                " but run() does not take it"
            )
        seen.add(param.name)


class PluginHost:
    """Owns the pluggy ``PluginManager``: loads plugins and calls their hooks, guarded.

    Use: ``host = PluginHost(config.daemon.plugin_dirs); host.load()``, then
    the hook methods. ``load()`` is called once; hooks are indexed at the end
    of it, so nothing registered later is called.

    A reload builds a new host with ``previous=`` the running one: a plugin
    file whose bytes are unchanged is not executed again (its module is
    reused, and an unchanged broken file keeps its error); new and changed
    files are loaded. :meth:`changes` says what that load did.
    """

    def __init__(
        self,
        plugin_dirs: Sequence[Path],
        *,
        builtin: bool = True,
        entry_points: bool = True,
        previous: PluginHost | None = None,
    ) -> None:
        self._plugin_dirs = tuple(Path(d) for d in plugin_dirs)
        self._builtin = builtin
        self._entry_points = entry_points
        self._previous = previous
        self._objects: dict[str, object] = {}  # pluggy key -> the loaded plugin object
        self._status: dict[str, Literal["new", "changed", "kept"]] = {}
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(JobdSpec)
        self._infos: dict[str, PluginInfo] = {}  # by pluggy key, in load order
        self._actions: dict[str, Action] = {}
        self._action_owner: dict[str, str] = {}  # action name -> pluggy key
        self._impls: dict[str, tuple[HookImpl, ...]] = {}
        self._loaded = False

    # ------------------------------------------------------------------ discovery

    def load(self) -> None:
        """Discover, import and register every plugin; index the hooks.

        Never raises for a broken plugin (it is recorded in :meth:`infos` and
        logged). Raises :class:`~jobd.core.errors.ConfigError` when two plugins
        offer the same action name, naming both files, and ``RuntimeError``
        when called twice.
        """
        if self._loaded:
            raise RuntimeError("PluginHost.load() may only be called once")
        self._loaded = True
        self._pm.register(_Defaults(), name=_JOBD_KEY)
        for candidate in self._discover():
            self._load_one(candidate)
        self._index_hooks()

    def _discover(self) -> Iterator[_Candidate]:
        builtin_dir = builtin_plugin_dir().resolve()
        if self._builtin:
            yield from self._file_candidates(builtin_dir, "builtin")
        if self._entry_points:
            yield from self._entry_point_candidates()
        for folder in self._plugin_dirs:
            if self._builtin and folder.resolve() == builtin_dir:
                continue  # already loaded as builtin; twice would be a duplicate
            yield from self._file_candidates(folder, "drop-in")

    def _file_candidates(self, folder: Path, source: Source) -> Iterator[_Candidate]:
        if not folder.is_dir():
            log.info("plugin directory missing, treated as empty", directory=str(folder))
            return
        prefix = "jobd_builtin" if source == "builtin" else "jobd_dropin"
        for path in sorted(folder.glob("*.py"), key=lambda p: p.name):
            if path.name.startswith((".", "_")) or not path.is_file():
                continue
            module = dropin_module_name(path, prefix)
            yield _Candidate(
                path.stem,
                module,
                source,
                str(path.absolute()),
                module,
                partial(load_module_from_file, path, module),
                _file_digest(path),
            )

    def _entry_point_candidates(self) -> Iterator[_Candidate]:
        try:
            found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception:  # a corrupt installed distribution must not stop the daemon
            log.exception("cannot read entry points", group=ENTRY_POINT_GROUP)
            return
        for ep in sorted(found, key=lambda e: e.name):
            yield _Candidate(
                ep.name, f"entry-point:{ep.name}", "entry-point", None, ep.module, ep.load
            )

    def _load_one(self, cand: _Candidate) -> None:
        """Import and register one candidate; record it, broken or not."""
        before = self._previous._infos.get(cand.key) if self._previous is not None else None
        # An entry point's module stays imported (a new version needs a restart anyway).
        unchanged = before is not None and (
            cand.source == "entry-point"
            or (cand.digest is not None and before.digest == cand.digest)
        )
        self._status[cand.key] = "new" if before is None else "kept" if unchanged else "changed"
        if unchanged and before is not None and before.error is not None:
            self._record_broken(cand, before.error)  # same bytes, same error: not run again
            return
        try:
            if unchanged and self._previous is not None:
                plugin = self._previous._objects[cand.key]
            else:
                plugin = cand.load()
        except (Exception, SystemExit) as exc:  # SystemExit: a module body calling exit()
            self._record_broken(cand, describe_exception(exc), exc)
            return
        if cand.file is None:  # an entry point: its file is known once imported
            cand.file = _module_file(cand.module)
        if not self._has_hooks(plugin):
            log.warning(
                "not a plugin: no function decorated with @jobd.hookimpl",
                plugin=cand.name,
                file=cand.file,
            )
            return
        try:
            self._pm.register(plugin, name=cand.key)
        except Exception as exc:  # pluggy's argument checks, a name taken twice
            self._record_broken(cand, describe_exception(exc), exc)
            return
        try:
            self._check_hooks(plugin)
            actions = self._call_actions(plugin)
        except Exception as exc:
            self._pm.unregister(plugin)
            self._record_broken(cand, describe_exception(exc), exc)
            return
        self._add_actions(cand, actions)
        self._objects[cand.key] = plugin
        self._infos[cand.key] = PluginInfo(
            cand.name,
            cand.file,
            cand.source,
            tuple(a.name for a in actions),
            None,
            cand.module,
            cand.digest,
        )

    def _record_broken(
        self, cand: _Candidate, error: str, exc: BaseException | None = None
    ) -> None:
        # One line says which file and why; the traceback (with its locals, in the
        # console format dozens of lines a plugin) only helps the plugin's author.
        log.error(
            "plugin failed to load",
            plugin=cand.name,
            file=cand.file,
            source=cand.source,
            error=error,
        )
        if exc is not None:
            log.debug("plugin load traceback", plugin=cand.name, file=cand.file, exc_info=exc)
        self._infos[cand.key] = PluginInfo(
            cand.name, cand.file, cand.source, (), error, cand.module, cand.digest
        )

    def _has_hooks(self, plugin: object) -> bool:
        return any(self._pm.parse_hookimpl_opts(plugin, name) is not None for name in dir(plugin))

    def _check_hooks(self, plugin: object) -> None:
        """Refuse unknown hook names (a typo would silently never be called) and wrappers."""
        for caller in self._pm.get_hookcallers(plugin) or ():
            if not caller.has_spec():
                raise TypeError(f"unknown hook {caller.name} (known: {', '.join(_HOOKS)})")
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    raise TypeError(f"{caller.name}: hook wrappers are not supported")

    def _call_actions(self, plugin: object) -> list[Action]:
        actions: list[Action] = []
        for impl in self._pm.hook.jobd_actions.get_hookimpls():
            if impl.plugin is plugin:
                actions.extend(checked_actions(impl.function()))
        return actions

    def _add_actions(self, cand: _Candidate, actions: Sequence[Action]) -> None:
        for action in actions:
            owner = self._action_owner.get(action.name)
            if owner is not None:
                first = self._infos[owner].file or self._infos[owner].name
                raise ConfigError(
                    None,
                    None,
                    f"action {action.name!r} is offered by two "
                    f"plugins: {first} and {cand.file or cand.name}",
                )
            self._actions[action.name] = action
            self._action_owner[action.name] = cand.key

    def _index_hooks(self) -> None:
        # Call order is pluggy's (tryfirst first, then last registered first);
        # kept once here because job_event is on the hot path of every change.
        for name in _HOOKS:
            impls = getattr(self._pm.hook, name).get_hookimpls()
            self._impls[name] = tuple(reversed(impls))

    # ------------------------------------------------------------------ registry

    @property
    def actions(self) -> Mapping[str, Action]:
        """Every action offered by a working plugin, by name (read-only)."""
        return MappingProxyType(self._actions)

    def action_plugin(self, name: str) -> PluginInfo:
        """The plugin offering action ``name``; ``KeyError`` if no plugin does."""
        return self._infos[self._action_owner[name]]

    def isolation_target(self, name: str) -> tuple[str | None, str]:
        """``(plugin_file, module_name)`` for :func:`jobd.run.isolation.run_isolated`.

        The file is given for drop-ins and builtins (the worker loads it under
        the same module name); ``None`` for entry points (imported by name).
        """
        info = self.action_plugin(name)
        assert info.module is not None  # set for every loaded plugin
        return (None if info.source == "entry-point" else info.file), info.module

    def changes(self) -> list[str]:
        """What this load did compared with ``previous``, one line each (a reload's
        answer and log): new, changed, removed and broken plugin files. ``[]``
        without a previous host or when nothing changed."""
        if self._previous is None:
            return []
        lines = []
        for key, info in self._infos.items():
            where, status = info.file or info.name, self._status.get(key)
            actions = f"actions: {', '.join(info.actions) or 'none'}"
            if info.error is not None and status != "kept":
                lines.append(f"plugin {where} failed to load: {info.error}")
            elif info.error is None and status == "new":
                lines.append(f"loaded new plugin {where} ({actions})")
            elif info.error is None and status == "changed":
                lines.append(f"reloaded changed plugin {where} ({actions})")
        for key, info in self._previous._infos.items():
            if key not in self._infos:
                lines.append(f"removed plugin {info.file or info.name}")
        return lines

    def fresh(self) -> set[str]:
        """The plugins this load executed anew (new or changed), by pluggy key."""
        return {k for k, status in self._status.items() if status != "kept" and k in self._objects}

    def retired_by(self, successor: PluginHost) -> set[str]:
        """This host's working plugins that ``successor`` no longer uses as they were
        (removed or changed files), by pluggy key: those get ``jobd_shutdown``."""
        return {k for k in self._objects if k not in successor._objects or k in successor.fresh()}

    def infos(self) -> list[PluginInfo]:
        """Every discovered plugin in load order, broken ones with their ``error``."""
        return list(self._infos.values())

    def describe(self) -> dict[str, Any]:
        """``{plugins: [...], actions: [{name, plugin, description}]}`` for the API and CLI."""
        return {
            "plugins": [info.to_dict() for info in self._infos.values()],
            "actions": [
                {
                    "name": name,
                    "plugin": self.action_plugin(name).name,
                    "description": action.description,
                }
                for name, action in sorted(self._actions.items())
            ],
        }

    @property
    def validates_jobs(self) -> bool:
        """Whether any plugin implements ``jobd_validate_job``."""
        return bool(self._impls.get("jobd_validate_job"))

    @property
    def observes_events(self) -> bool:
        """Whether any plugin implements ``jobd_job_event`` (callers may skip building dicts)."""
        return bool(self._impls.get("jobd_job_event"))

    # ------------------------------------------------------------------ hooks

    def _results(
        self, hook: str, only: Collection[str] | None = None, **kwargs: Any
    ) -> Iterator[tuple[PluginInfo, Any]]:
        """Call each implementation of ``hook`` in order, guarded; yield the answers.

        A raising implementation is logged with its plugin's name and skipped.
        Lazy, so a caller that stops early (first result) calls no more.
        ``only``: call just the plugins with these keys.
        """
        for impl in self._impls.get(hook, ()):
            if only is not None and impl.plugin_name not in only:
                continue
            info = self._plugin_of(impl)
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception:
                log.exception(
                    "plugin hook raised; ignored", plugin=info.name, file=info.file, hook=hook
                )
                continue
            yield info, result

    def _plugin_of(self, impl: HookImpl) -> PluginInfo:
        info = self._infos.get(impl.plugin_name)
        return info if info is not None else PluginInfo("jobd", None, "builtin")

    def validate_job(self, job: dict[str, Any], config: Config) -> list[str]:
        """All problems the plugins find with ``job``; ``[]`` if none.

        A validator that raises or returns anything but a list of strings
        (``None`` counts as no problems) is logged and ignored, by choice: a
        plugin bug must not block every submission.
        """
        problems: list[str] = []
        for info, result in self._results("jobd_validate_job", job=job, config=config):
            if result is None:
                continue
            if isinstance(result, list) and all(isinstance(p, str) for p in result):
                problems.extend(result)
            else:
                log.error(
                    "plugin validator returned garbage; ignored",
                    plugin=info.name,
                    file=info.file,
                    returned=type(result).__name__,
                )
        return problems

    def select_resource(self, pool: str, candidates: list[str], job: dict[str, Any]) -> str | None:
        """The pool member ``job`` gets, from ``candidates`` (free, fewest bookings first).

        The first plugin answer that is one of ``candidates`` wins; other
        answers are logged and ignored; jobd's default answers last with
        ``candidates[0]``. ``None`` only when ``candidates`` is empty.
        """
        if not candidates:
            return None
        offered = list(candidates)  # a plugin mutating its list must not change the check
        for info, answer in self._results(
            "jobd_select_resource", pool=pool, candidates=list(offered), job=job
        ):
            if answer is None:
                continue
            if answer in offered:
                return str(answer)
            log.warning(
                "plugin chose a resource that is not a candidate; ignored",
                plugin=info.name,
                file=info.file,
                pool=pool,
                answer=repr(answer),
                candidates=offered,
            )
        return None

    def job_event(self, job: dict[str, Any], event: dict[str, Any]) -> None:
        """Tell every observer about a committed change; a raising one is logged and ignored."""
        for _ in self._results("jobd_job_event", job=job, event=event):
            pass

    def startup(self, config: Config, only: Collection[str] | None = None) -> None:
        """Call every ``jobd_startup`` (of the plugins keyed in ``only``, if given; a reload
        starts only :meth:`fresh` ones); a raising one is logged and ignored."""
        for _ in self._results("jobd_startup", only, config=config):
            pass

    def shutdown(self, only: Collection[str] | None = None) -> None:
        """Call every ``jobd_shutdown`` (of the plugins keyed in ``only``, if given; a reload
        stops the :meth:`retired_by` ones); a raising one is logged and ignored."""
        for _ in self._results("jobd_shutdown", only):
            pass


def _file_digest(path: Path) -> str | None:
    """sha256 of the file's bytes; ``None`` if unreadable (its load then fails and says why)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _module_file(module_name: str | None) -> str | None:
    module = sys.modules.get(module_name or "")
    return getattr(module, "__file__", None)
