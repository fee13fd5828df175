"""TOML configuration (one file + ``jobd.d/*.toml`` drop-ins) → a validated, frozen :class:`Config`.

SPEC §5. Every error names the file, the key path and the problem
(:class:`jobd.core.errors.ConfigError`); an unknown key is an error. This module
is the package's public surface: import from ``jobd.config``, not its modules.

How a load goes (:func:`load_config`, :mod:`jobd.config.loading`):

1. :func:`jobd.config.sources.read_sources` parses the main file, then
   ``<its folder>/jobd.d/*.toml`` in name order.
2. :func:`jobd.config.sources.merge` deep-merges them (tables recursively; arrays
   and scalars from later files replace; ``[[schedules]]`` is concatenated) and
   records, for every key it sets, the file it came from (``origins``).
3. :func:`jobd.config.sections.build` validates the merged tree section by section
   through :class:`jobd.config.checks.Table`, whose accepted keys are the fields of
   the dataclasses of :mod:`jobd.config.records`, so the accepted keys and the
   config shape cannot drift apart.
4. :func:`jobd.config.crosscheck.cross_check` checks what involves several sections
   (pool members, schedule workflows, ...).

Where a key goes: its field (and default) in :mod:`jobd.config.records`, its checker
in :mod:`jobd.config.sections`, a rule across keys in :mod:`jobd.config.crosscheck`,
and, if a reload cannot change it, :mod:`jobd.config.restart`.

What the configuration *names* is checked afterwards by :mod:`jobd.service.configcheck`
(the plugins and their actions, step params, scripts, files, cron expressions
with the timers' parser): ``jobd check-config``, ``jobd run`` and every reload
call both. :attr:`Config.origins` keeps each key's file for those errors
(:func:`error_at`).
"""

from __future__ import annotations

from jobd.config.loading import load_config
from jobd.config.provenance import error_at
from jobd.config.records import (
    ApiConfig,
    Config,
    DaemonConfig,
    Defaults,
    KeyPath,
    LoggingConfig,
    PoolConfig,
    ResourceConfig,
    ScheduleConfig,
    StepConfig,
    TokenConfig,
    WorkflowConfig,
)
from jobd.config.restart import RELOADABLE_API_KEYS, RESTART_ONLY_DAEMON_KEYS, keep_restart_only
from jobd.config.sources import (
    CONFIG_ENV,
    DEFAULT_CONFIG_PATH,
    DROPIN_DIR,
    resolve_config_path,
)
from jobd.config.summary import summarize

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_PATH",
    "DROPIN_DIR",
    "RELOADABLE_API_KEYS",
    "RESTART_ONLY_DAEMON_KEYS",
    "ApiConfig",
    "Config",
    "DaemonConfig",
    "Defaults",
    "KeyPath",
    "LoggingConfig",
    "PoolConfig",
    "ResourceConfig",
    "ScheduleConfig",
    "StepConfig",
    "TokenConfig",
    "WorkflowConfig",
    "error_at",
    "keep_restart_only",
    "load_config",
    "resolve_config_path",
    "summarize",
]
