"""The keys a reload cannot change: the one place that says which they are.

A reload (SIGHUP, ``POST /v1/reload``) builds a new :class:`Config`;
:func:`keep_restart_only` gives it the running values of the keys bound at start-up
and names them, so the daemon can log that they wait for a restart.
"""

from __future__ import annotations

import dataclasses

from jobd.config.records import Config

#: ``[daemon]`` keys bound at start-up (the engine's workers and run queue, the database and
#: its ``synchronous``); with the ``[api]`` keys but those below they need a restart: a
#: reload keeps their running values (:func:`keep_restart_only`). ``plugin_dirs`` is not one:
#: a reload loads the plugins of the new configuration.
RESTART_ONLY_DAEMON_KEYS = (
    "state_dir",
    "workers",
    "run_queue_size",
    "synchronous",
    "database",
    "node",
    "lease",
    "tags",
)
#: ``[api]`` keys a reload applies at once (who may do what); the rest wait for a restart.
RELOADABLE_API_KEYS = frozenset({"viewers", "operators", "admins", "tokens", "token_file"})


def keep_restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the restart-only keys of ``old``, and the keys (``api.socket``,
    ``daemon.workers``, ...) whose new value waits for a restart. The one place that
    says which keys a reload cannot change."""
    fixed = [f.name for f in dataclasses.fields(old.api) if f.name not in RELOADABLE_API_KEYS]
    changed = [f"api.{key}" for key in fixed if getattr(old.api, key) != getattr(new.api, key)]
    kept = {key: getattr(old.daemon, key) for key in RESTART_ONLY_DAEMON_KEYS}
    changed += [f"daemon.{key}" for key, value in kept.items() if getattr(new.daemon, key) != value]
    if not changed:
        return new, []
    api = dataclasses.replace(new.api, **{key: getattr(old.api, key) for key in fixed})
    daemon = dataclasses.replace(new.daemon, **kept)
    return dataclasses.replace(new, api=api, daemon=daemon), changed
