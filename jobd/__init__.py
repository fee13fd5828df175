"""jobd: a job scheduler daemon for media operations.

Plugin authors import from here: ``jobd.hookimpl``, ``jobd.Action``,
``jobd.ActionContext``, ``jobd.ActionError``.
"""

from __future__ import annotations

from jobd.action import Action, ActionContext
from jobd.errors import ActionError
from jobd.hookspecs import hookimpl, hookspec

__version__ = "0.1.0"
__all__ = ["Action", "ActionContext", "ActionError", "__version__", "hookimpl", "hookspec"]
