"""jobd: a job scheduler daemon for media operations.

Plugin authors import from here: ``jobd.hookimpl``, ``jobd.Action``,
``jobd.Param``, ``jobd.ActionContext``, ``jobd.ActionError``.
"""

from __future__ import annotations

from jobd.action import Action, ActionContext, Param
from jobd.errors import ActionError
from jobd.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = [
    "Action",
    "ActionContext",
    "ActionError",
    "Param",
    "__version__",
    "hookimpl",
    "hookspec",
]
