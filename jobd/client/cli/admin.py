"""The commands about the daemon itself: ``run``, ``--version``, ``check-config``,
``reload``, ``db copy`` and ``ui``.

The daemon's stack (FastAPI, uvicorn, APScheduler, the engine, the stores) is
imported inside ``run``, ``check-config``, ``db`` and ``ui`` only.
"""

from __future__ import annotations

import importlib

from jobd.client.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    client_for,
    config_path,
    err,
)
from jobd.client.remote import ApiError, DaemonUnreachable
from jobd.core.errors import JobdError

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse


def cmd_run(args: argparse.Namespace) -> int:
    """``jobd run``: the daemon stack is imported here and nowhere else in the CLI."""
    daemon = importlib.import_module("jobd.service.daemon")
    # The daemon resolves --config / $JOBD_CONFIG / the default path itself.
    return int(daemon.main(getattr(args, "config", None)))


def cmd_version(args: argparse.Namespace) -> int:
    """``jobd --version``: this client's version, then the daemon's if one answers (exit 0
    either way: the client's version is known)."""
    from jobd import __version__

    print(f"jobd {__version__} (client)")
    try:
        with client_for(args) as client:
            health = client.health()
        print(f"jobd {health.get('version', '?')} (daemon at {client.endpoint.describe()})")
    except (DaemonUnreachable, ApiError) as exc:
        print(f"daemon: not reachable: {str(exc).splitlines()[0]}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Load the config and its plugins as ``jobd run`` does, check all it names, summarise."""
    from structlog.testing import capture_logs

    from jobd.config import summarize
    from jobd.config.access import load_tokens
    from jobd.service.configcheck import describe_plugins, load_checked

    path = config_path(args)
    try:
        # The plugin loader's log lines are the daemon's; here the summary names each
        # broken plugin and a problem names the broken ones an action may come from.
        with capture_logs():
            config, plugins = load_checked(path)
        load_tokens(config.api)  # unreadable, empty or loosely-moded token files
    except (JobdError, OSError) as exc:
        for line in str(exc).splitlines():  # one problem a line
            err(line)
        return EXIT_FAILED
    print(f"{path}: OK")
    print(summarize(config))
    print("\n".join(describe_plugins(plugins)))
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    """``jobd db copy --to URL``: with the state directory locked (no daemon may run), every
    record of ``<state_dir>/jobd.db`` into the empty PostgreSQL database at URL."""
    import anyio

    from jobd.config import load_config
    from jobd.service.daemon import StateLock
    from jobd.store.copy import copy_sqlite_to_postgres

    if not args.to.startswith(("postgresql://", "postgres://")):
        err(f"--to: expected a postgresql:// URL, got {args.to!r}")
        return EXIT_FAILED
    try:
        config = load_config(config_path(args))
        if not config.daemon.db_path.exists():
            err(f"no database to copy: {config.daemon.db_path} does not exist")
            return EXIT_FAILED
        with StateLock.acquire(config.daemon.state_dir):
            done = anyio.run(copy_sqlite_to_postgres, config.daemon.db_path, args.to, err)
    except (JobdError, OSError) as exc:
        err(str(exc))
        return EXIT_FAILED
    print(
        f"copied {done.jobs} jobs, {done.steps} steps, {done.reservations} reservations,"
        f" {done.log_lines} log lines, {done.history} history entries,"
        f" {done.schedules} schedules ({done.schedule_events} events)"
    )
    print(f'next: set [daemon] database = "{args.to}" and start jobd')
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        answer = client.reload()
    print("configuration reloaded")
    for change in answer.get("plugins") or []:  # new, changed, removed, broken plugin files
        print(change)
    for warning in answer.get("warnings") or []:
        err(f"warning: {warning}")
    return EXIT_OK


def cmd_ui(args: argparse.Namespace) -> int:
    """``jobd ui``: relay 127.0.0.1:PORT to the daemon's socket (docs/web.md says how it is
    guarded). The relay's stack (uvicorn, starlette) is imported only here."""
    with client_for(args) as client:
        endpoint = client.endpoint
        if endpoint.socket is None:
            err(f"jobd ui relays a Unix socket; this daemon is at {endpoint.url}: open that URL")
            return EXIT_USAGE
        client.health()  # unreachable: exit 3 with the usual message, before printing a URL
    from pathlib import Path

    from jobd.service.web.ui import run_ui

    return run_ui(Path(endpoint.socket), args.port)
