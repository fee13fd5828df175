"""What every ``jobd`` command shares: exit codes, the usage error, the daemon client for
the connection options, and how output and messages are printed.

Light to import (jobd's HTTP client only; JSON through :mod:`jobd.client.jsonio`, not the
standard library's ``json``): a command's start-up is what a person waits for.
"""

from __future__ import annotations

import sys

from jobd.client.jsonio import dumps
from jobd.client.remote import Client, resolve_endpoint

# Annotations only: importing typing and pathlib costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    Command = Callable[[argparse.Namespace], int]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: States after which a job does not run again by itself: ``submit --wait`` and ``logs -f`` stop.
FINISHED = frozenset(
    {"completed", "failed", "timed-out", "canceled", "ready-for-invoice", "invoiced"}
)

#: The list filters (SPEC §6, §7): flag → its key in the query / the batch filter.
FILTERS = ("state", "workflow", "asset", "resource", "since", "until", "search")


class UsageError(Exception):
    """A combination of options argparse cannot express (exit 2)."""


def filters_of(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given (none: empty)."""
    return {key: getattr(args, key) for key in FILTERS if getattr(args, key, None)}


def err(message: str) -> None:
    """``jobd: MESSAGE`` on stderr."""
    print(f"jobd: {message}", file=sys.stderr)


def client_for(args: argparse.Namespace) -> Client:
    """The daemon's client for ``--socket``/``--url``/``--token``/``--config`` (or the
    environment, or the config's socket: :func:`~jobd.client.remote.resolve_endpoint`)."""
    endpoint = resolve_endpoint(
        socket=getattr(args, "socket", None),
        url=getattr(args, "url", None),
        token=getattr(args, "token", None),
        config=getattr(args, "config", None),
    )
    return Client(endpoint)


def config_path(args: argparse.Namespace) -> Path:
    """``--config``, else ``$JOBD_CONFIG``, else ``/etc/jobd/jobd.toml`` (as the daemon does)."""
    from jobd.config import resolve_config_path

    return resolve_config_path(getattr(args, "config", None))


def emit(item: Any, *, stderr: bool = False) -> None:
    """Print a table or line of :mod:`jobd.client.textui` (rich only on a terminal)."""
    from jobd.client.textui import emit as show

    show(item, stderr=stderr)


def print_json(data: Any) -> None:
    print(dumps(data, indent=2, ensure_ascii=False))


def error_suffix(job: dict[str, Any]) -> str:
    """``: CODE: MESSAGE`` of a job's error overlay, or nothing."""
    error = job.get("error")
    return f": {error.get('code')}: {error.get('message')}" if isinstance(error, dict) else ""
