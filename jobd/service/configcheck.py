"""Everything a configuration names, checked before it is used (SPEC §4, §5).

:func:`jobd.config.load_config` checks the TOML itself: shapes, types, unknown
keys, references between sections, every workflow having a step. What it
names lives elsewhere and is checked here, with the code that will use it:

* the plugins, loaded as ``jobd run`` loads them (:class:`PluginHost`); two
  plugins offering one action is an error naming both files;
* every step's ``action`` exists, and its ``params`` satisfy what the action
  declares (:class:`jobd.Param`: unknown names, missing required ones, types);
* every ``start_script``/``end_script`` exists and is executable;
* every ``plugin_dirs`` entry is a folder; the ``token_file`` and every
  ``[[api.tokens]]`` ``file`` exist;
* every schedule's ``cron`` expression, parsed by :mod:`jobd.plan.timers`, the one
  cron parser jobd has (crontab numbering: ``0`` and ``7`` are Sunday).

``jobd check-config``, ``jobd run`` (before it creates anything) and every
reload (SIGHUP, ``POST /v1/reload``) go through :func:`load_checked`, so a
problem is found when the configuration is read, not when a job first uses
it. Every problem names the file that set the key, the key path and what is
wrong; all of them are reported at once.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from jobd.config import Config, KeyPath, StepConfig, WorkflowConfig, error_at, load_config
from jobd.core.errors import ConfigError, ConfigErrors
from jobd.plan.timers import make_trigger
from jobd.plugin.action import Action
from jobd.plugin.host import PluginHost

__all__ = ["check_config", "config_problems", "describe_plugins", "load_checked", "load_plugins"]


def load_checked(path: Path, previous: PluginHost | None = None) -> tuple[Config, PluginHost]:
    """Read the configuration at ``path``, load its plugins, check everything.

    ``previous``: the running daemon's plugins (a reload: unchanged plugin
    files are reused, not executed again). Raises :class:`ConfigError` (one
    problem) or :class:`ConfigErrors` (several).
    """
    config = load_config(path)
    plugins = load_plugins(config, previous)
    check_config(config, plugins)
    return config, plugins


def load_plugins(config: Config, previous: PluginHost | None = None) -> PluginHost:
    """The plugins ``config`` names, loaded; a clash of action names is a ConfigError
    at ``daemon.plugin_dirs`` that names both plugin files."""
    plugins = PluginHost(config.daemon.plugin_dirs, previous=previous)
    try:
        plugins.load()
    except ConfigError as exc:
        raise error_at(config, ("daemon", "plugin_dirs"), exc.problem) from None
    return plugins


def check_config(config: Config, plugins: PluginHost | None = None) -> None:
    """Raise :class:`ConfigError` (one problem) or :class:`ConfigErrors` (several)."""
    problems = config_problems(config, plugins)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(problems)


def config_problems(config: Config, plugins: PluginHost | None = None) -> list[ConfigError]:
    """Every problem found, in file order (empty: the config is usable).

    Without ``plugins`` the steps' actions and params are not checked.
    """
    return [
        *_file_problems(config),
        *_workflow_problems(config, plugins),
        *_schedule_problems(config),
    ]


def describe_plugins(plugins: PluginHost) -> list[str]:
    """``check-config``'s lines about the plugins: the actions, and each broken file."""
    lines = [f"actions ({len(plugins.actions)}): {', '.join(sorted(plugins.actions)) or '(none)'}"]
    for info in plugins.infos():
        if info.error is not None:
            lines.append(f"broken plugin: {info.file or info.name}: {info.error}")
    return lines


# --------------------------------------------------------------------------- files


def _file_problems(config: Config) -> Iterator[ConfigError]:
    # Only folders the configuration lists: the default one may be absent (no drop-ins).
    listed = config.daemon.plugin_dirs if ("daemon", "plugin_dirs") in config.origins else ()
    for index, folder in enumerate(listed):
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            yield error_at(config, ("daemon", "plugin_dirs", index), f"{folder} {what}")
    tokens: list[tuple[KeyPath, Path]] = [
        (("api", "tokens", index, "file"), entry.file)
        for index, entry in enumerate(config.api.tokens)
    ]
    if config.api.token_file is not None:
        tokens.insert(0, (("api", "token_file"), config.api.token_file))
    for where, token in tokens:  # their content and mode: jobd.config.access.load_tokens
        if not token.is_file():
            what = "is not a file" if token.exists() else "does not exist"
            yield error_at(config, where, f"{token} {what}")


def _script_problem(path: Path) -> str | None:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_file():
        return f"{path} is not a file"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable (chmod +x)"
    return None


# --------------------------------------------------------------------------- workflows


def _workflow_problems(config: Config, plugins: PluginHost | None) -> Iterator[ConfigError]:
    for workflow in config.workflows.values():
        here: KeyPath = ("workflows", workflow.name)
        for key in ("start_script", "end_script"):
            script = getattr(workflow, key)
            if script is not None and (problem := _script_problem(script)) is not None:
                yield error_at(config, (*here, key), problem)
        if plugins is not None:
            yield from _step_problems(config, workflow, plugins)


def _step_problems(
    config: Config, workflow: WorkflowConfig, plugins: PluginHost
) -> Iterator[ConfigError]:
    for index, step in enumerate(workflow.steps):
        here: KeyPath = ("workflows", workflow.name, "steps", index)
        action = plugins.actions.get(step.action)
        if action is None:
            yield error_at(config, (*here, "action"), _unknown_action(step.action, plugins))
        elif action.params is not None:
            for where, problem in _param_problems(step, action):
                yield error_at(config, (*here, *where), problem)


def _unknown_action(name: str, plugins: PluginHost) -> str:
    close = difflib.get_close_matches(name, list(plugins.actions), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    loaded = ", ".join(sorted(plugins.actions)) or "none"
    broken = [f"{i.file or i.name}: {i.error}" for i in plugins.infos() if i.error is not None]
    failed = f"; plugins that failed to load: {'; '.join(broken)}" if broken else ""
    return f"unknown action {name!r}{hint} (loaded: {loaded}{failed})"


def _param_problems(step: StepConfig, action: Action) -> Iterator[tuple[KeyPath, str]]:
    """``(key path below the step, problem)`` for each param that breaks the declaration."""
    declared = {param.name: param for param in action.params or ()}
    given: Mapping[str, Any] = step.params
    for name, value in given.items():
        param = declared.get(name)
        if param is None:
            close = difflib.get_close_matches(name, list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(declared) or "none"
            yield (
                ("params", name),
                f"action {action.name!r} takes no param {name!r}{hint} (it takes: {known})",
            )
        elif (problem := param.problem(value)) is not None:
            yield ("params", name), f"action {action.name!r}: {problem}"
    for name, param in declared.items():
        if param.required and name not in given:
            yield ("params",), f"action {action.name!r} needs param {name!r} ({param.type})"


# --------------------------------------------------------------------------- schedules


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
