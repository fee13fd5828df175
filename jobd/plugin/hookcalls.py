"""The only calls into the plugins' hooks: each implementation on its own, guarded.

pluggy stops a hook call at the first raising implementation; here a raising
implementation is logged under its plugin's name and skipped, and the others
are still called. The answers are checked too: a plugin bug must not block
every submission or choose a resource that is not free.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import pluggy
import structlog

from jobd.plugin.discovery import PluginInfo
from jobd.plugin.hookspecs import JobdSpec

if TYPE_CHECKING:
    from pluggy import HookImpl

    from jobd.config import Config

log = structlog.get_logger("jobd.plugins")

#: The hook names jobd defines (``jobd_actions``, ``jobd_job_event``, ...).
HOOKS = tuple(name for name in vars(JobdSpec) if name.startswith("jobd_"))


class HookCalls:
    """The hook implementations of the loaded plugins, indexed once, and the calls to them.

    ``infos`` (by pluggy key) names the plugin of each implementation in the log; one
    not in it is jobd's own (``"jobd"``).
    """

    def __init__(
        self, impls: Mapping[str, tuple[HookImpl, ...]], infos: Mapping[str, PluginInfo]
    ) -> None:
        self._impls, self._infos = impls, infos

    @classmethod
    def index(cls, pm: pluggy.PluginManager, infos: Mapping[str, PluginInfo]) -> HookCalls:
        """The implementations registered with ``pm`` now, in call order (a plugin
        registered later is never called)."""
        # Call order is pluggy's (tryfirst first, then last registered first);
        # kept once here because job_event is on the hot path of every change.
        impls = {name: tuple(reversed(getattr(pm.hook, name).get_hookimpls())) for name in HOOKS}
        return cls(impls, infos)

    @property
    def validates_jobs(self) -> bool:
        """Whether any plugin implements ``jobd_validate_job``."""
        return bool(self._impls.get("jobd_validate_job"))

    @property
    def observes_events(self) -> bool:
        """Whether any plugin implements ``jobd_job_event`` (callers may skip building dicts)."""
        return bool(self._impls.get("jobd_job_event"))

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
        starts only ``PluginHost.fresh`` ones); a raising one is logged and ignored."""
        for _ in self._results("jobd_startup", only, config=config):
            pass

    def shutdown(self, only: Collection[str] | None = None) -> None:
        """Call every ``jobd_shutdown`` (of the plugins keyed in ``only``, if given; a reload
        stops the ``PluginHost.retired_by`` ones); a raising one is logged and ignored."""
        for _ in self._results("jobd_shutdown", only):
            pass
