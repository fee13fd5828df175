"""What every part of the engine shares: infrastructure, not the state of any part.

The configuration (swapped on reload), the store, the plugins, the clock, the
task group the parts start their tasks in, and the two lifecycle flags the
façade sets. Each part owns its own state; this holds nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from anyio.abc import TaskGroup

from jobd.config import Config
from jobd.plugin.host import PluginHost
from jobd.store import Store


class Context:
    def __init__(
        self, config: Config, store: Store, plugins: PluginHost, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.store = store
        self.plugins = plugins
        self.clock = clock
        #: The engine's task group while it runs (None before and after).
        self.tg: TaskGroup | None = None
        #: False while starting and while draining: due jobs stay in the store.
        self.accepting = False
        #: Draining: workers start nothing new.
        self.draining = False

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start ``fn(*args)`` in the engine's task group (nothing when it is not running)."""
        if self.tg is not None:
            self.tg.start_soon(fn, *args)
