"""jobd: a job scheduler daemon for media operations.

Plugin authors import from here: ``jobd.hookimpl``, ``jobd.Action``,
``jobd.Param``, ``jobd.ActionContext``, ``jobd.ActionError``.

The names are loaded on first use (PEP 562): a CLI command such as ``jobd
list`` imports this package but none of the plugin API (pluggy, anyio), and
its start-up is what a person waits for.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: importing typing costs the CLI's start-up (mypy knows the name).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from jobd.core.errors import ActionError
    from jobd.plugin.action import Action, ActionContext, Param
    from jobd.plugin.hookspecs import hookimpl, hookspec
    from jobd.plugin.roots import resolve_in_roots

__version__ = "0.1.0"
__all__ = [
    "Action",
    "ActionContext",
    "ActionError",
    "Param",
    "__version__",
    "hookimpl",
    "hookspec",
    "resolve_in_roots",
]

#: Where each lazily loaded name lives.
_LAZY = {
    "Action": "jobd.plugin.action",
    "ActionContext": "jobd.plugin.action",
    "Param": "jobd.plugin.action",
    "ActionError": "jobd.core.errors",
    "hookimpl": "jobd.plugin.hookspecs",
    "hookspec": "jobd.plugin.hookspecs",
    "resolve_in_roots": "jobd.plugin.roots",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'jobd' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups are plain attribute reads
    return value
