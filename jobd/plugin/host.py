"""Plugin loading, the action registry, and the host the daemon calls hooks through.

:class:`PluginHost` loads what :func:`jobd.plugin.discovery.discover` finds
(builtins, entry points, drop-in files, in that order) and calls the hooks
through :class:`jobd.plugin.hookcalls.HookCalls`.

pluggy does not isolate plugins: ``load_setuptools_entrypoints`` has no
``try`` and a hook call stops at the first raising implementation. So every
load here is guarded on its own, and every hook implementation is called on
its own, guarded, with failures logged under the plugin's name. A broken
plugin is recorded (:attr:`PluginInfo.error`) and unregistered; the others
load. Only two plugins offering the same action name stop the load, with a
:class:`~jobd.core.errors.ConfigError` naming both files.

The names plugin authors and the rest of jobd import from here (``__all__``)
stay importable from this module.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

import pluggy
import structlog

from jobd.core.errors import ConfigError
from jobd.plugin.action import Action
from jobd.plugin.actioncheck import ACTION_NAME, checked_actions
from jobd.plugin.discovery import (
    ENTRY_POINT_GROUP,
    Candidate,
    PluginInfo,
    builtin_plugin_dir,
    describe_exception,
    discover,
    dropin_module_name,
    load_module_from_file,
    module_file,
)
from jobd.plugin.hookcalls import HOOKS, HookCalls
from jobd.plugin.hookspecs import PROJECT, JobdSpec, hookimpl
from jobd.plugin.roots import resolve_in_roots

if TYPE_CHECKING:
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

# The key under which jobd registers its own default implementations.
_JOBD_KEY = "jobd.defaults"
#: What :meth:`PluginHost._import` returns for a plugin it could not have.
_BROKEN = object()


class _Defaults:
    """jobd's own hook implementations, called after every plugin's."""

    @hookimpl(trylast=True)
    def jobd_select_resource(self, candidates: list[str]) -> str | None:
        # The caller passes the free members sorted by fewest bookings.
        return candidates[0] if candidates else None


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
        self._hooks = HookCalls({}, self._infos)  # indexed at the end of load()
        self._loaded = False

    # ------------------------------------------------------------------ loading

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
        for candidate in discover(
            self._plugin_dirs, builtin=self._builtin, entry_points=self._entry_points
        ):
            self._load_one(candidate)
        self._hooks = HookCalls.index(self._pm, self._infos)

    def _load_one(self, cand: Candidate) -> None:
        """Import and register one candidate; record it, broken or not."""
        plugin = self._import(cand)
        if plugin is _BROKEN:
            return
        if cand.file is None:  # an entry point: its file is known once imported
            cand.file = module_file(cand.module)
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

    def _import(self, cand: Candidate) -> object:
        """The candidate's plugin object: the previous host's when its bytes are unchanged,
        else imported anew; ``_BROKEN`` (recorded as such) when it cannot be had."""
        before = self._previous._infos.get(cand.key) if self._previous is not None else None
        # An entry point's module stays imported (a new version needs a restart anyway).
        unchanged = before is not None and (
            cand.source == "entry-point"
            or (cand.digest is not None and before.digest == cand.digest)
        )
        self._status[cand.key] = "new" if before is None else "kept" if unchanged else "changed"
        if unchanged and before is not None and before.error is not None:
            self._record_broken(cand, before.error)  # same bytes, same error: not run again
            return _BROKEN
        try:
            if unchanged and self._previous is not None:
                return self._previous._objects[cand.key]
            return cand.load()
        except (Exception, SystemExit) as exc:  # SystemExit: a module body calling exit()
            self._record_broken(cand, describe_exception(exc), exc)
            return _BROKEN

    def _record_broken(self, cand: Candidate, error: str, exc: BaseException | None = None) -> None:
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
                raise TypeError(f"unknown hook {caller.name} (known: {', '.join(HOOKS)})")
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                    raise TypeError(f"{caller.name}: hook wrappers are not supported")

    def _call_actions(self, plugin: object) -> list[Action]:
        actions: list[Action] = []
        for impl in self._pm.hook.jobd_actions.get_hookimpls():
            if impl.plugin is plugin:
                actions.extend(checked_actions(impl.function()))
        return actions

    def _add_actions(self, cand: Candidate, actions: Sequence[Action]) -> None:
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

    # ------------------------------------------------------------------ registry

    @property
    def actions(self) -> Mapping[str, Action]:
        """Every action offered by a working plugin, by name (read-only)."""
        return MappingProxyType(self._actions)

    def action(self, name: str) -> Action | None:
        """The action called ``name``, or None (:attr:`actions` without a view made per call:
        this is on the path of every step run and every submission)."""
        return self._actions.get(name)

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
        return self._hooks.validates_jobs

    @property
    def observes_events(self) -> bool:
        """Whether any plugin implements ``jobd_job_event`` (callers may skip building dicts)."""
        return self._hooks.observes_events

    # ------------------------------------------------------------------ hooks (HookCalls)

    def validate_job(self, job: dict[str, Any], config: Config) -> list[str]:
        """All problems the plugins find with ``job`` (:meth:`HookCalls.validate_job`)."""
        return self._hooks.validate_job(job, config)

    def select_resource(self, pool: str, candidates: list[str], job: dict[str, Any]) -> str | None:
        """The pool member ``job`` gets (:meth:`HookCalls.select_resource`)."""
        return self._hooks.select_resource(pool, candidates, job)

    def job_event(self, job: dict[str, Any], event: dict[str, Any]) -> None:
        """Tell every observer about a committed change; a raising one is logged and ignored."""
        self._hooks.job_event(job, event)

    def startup(self, config: Config, only: Collection[str] | None = None) -> None:
        """Call every ``jobd_startup`` (of the plugins keyed in ``only``, if given; a reload
        starts only :meth:`fresh` ones); a raising one is logged and ignored."""
        self._hooks.startup(config, only)

    def shutdown(self, only: Collection[str] | None = None) -> None:
        """Call every ``jobd_shutdown`` (of the plugins keyed in ``only``, if given; a reload
        stops the :meth:`retired_by` ones); a raising one is logged and ignored."""
        self._hooks.shutdown(only)
