"""pluggy markers and the hook specifications of SPEC §4 (filled in by the plugins work)."""

from __future__ import annotations

import pluggy

PROJECT = "jobd"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
