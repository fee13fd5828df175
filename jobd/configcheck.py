"""Everything a configuration names, checked before it is used (SPEC §4, §5).

:func:`jobd.config.load_config` checks the TOML itself: shapes, types, unknown
keys, references between sections. What it names lives elsewhere and is
checked here, by the code that will use it:

* every schedule's ``cron`` expression, parsed by :mod:`jobd.timers`, the one
  cron parser jobd has (crontab numbering: ``0`` and ``7`` are Sunday).

``jobd check-config``, ``jobd run`` (before it creates anything) and every
reload (SIGHUP, ``POST /v1/reload``) call :func:`check_config`, so a problem
is found when the configuration is read, not when a job first uses it. Every
problem names the file that set the key, the key path and what is wrong; all
of them are reported at once.
"""

from __future__ import annotations

from collections.abc import Iterator

from jobd.config import Config, error_at
from jobd.errors import ConfigError, ConfigErrors
from jobd.timers import make_trigger

__all__ = ["check_config", "config_problems"]


def check_config(config: Config) -> None:
    """Raise :class:`ConfigError` (one problem) or :class:`ConfigErrors` (several)."""
    problems = config_problems(config)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)


def config_problems(config: Config) -> list[ConfigError]:
    """Every problem found, in the order of the checks (empty: the config is usable)."""
    return list(_schedule_problems(config))


def _schedule_problems(config: Config) -> Iterator[ConfigError]:
    for index, schedule in enumerate(config.schedules):
        if schedule.cron is None:
            continue
        try:
            make_trigger(schedule)
        except ValueError as exc:
            # make_trigger prefixes "schedule NAME: cron 'EXPR': "; the key path says that.
            reason = str(exc).split(": ", 2)[-1]
            yield error_at(
                config,
                ("schedules", index, "cron"),
                f"invalid cron expression {schedule.cron!r}: {reason}",
            )
