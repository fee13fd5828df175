r"""What a plugin's ``jobd_actions()`` must return: a list of valid :class:`Action`\ s.

Checked when the plugin loads (in the daemon and again in an isolation worker),
so a bad action is the plugin's load error, not a failure of the first job using it.
"""

from __future__ import annotations

import inspect
import re

from jobd.plugin.action import PARAM_TYPES, Action, Param

ACTION_NAME = re.compile(r"^[a-z][a-z0-9_.-]*$")


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
