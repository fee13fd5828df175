"""The ``jobd`` command: the daemon (``jobd run``) and its client (everything else). SPEC §6.

Exit codes: 0 ok; 1 refused or failed (the reason on stderr); 2 usage;
3 daemon unreachable; 130 interrupted.

Start-up cost matters (an operator types ``jobd list`` dozens of times an
hour), so this package imports only the standard library and jobd's light
modules: requests go through :mod:`jobd.client.wire` (stdlib sockets, not
httpx), ``rich`` arrives only to draw a table on a terminal (a pipe gets plain
lines from :mod:`jobd.client.textui`), and the daemon stack (FastAPI, uvicorn,
APScheduler, aiosqlite, the engine) only with ``jobd run``; a test checks that.

The parts: :mod:`.parser` (argparse machinery), :mod:`.commands` (every command
and its options), :mod:`.argtypes` (option values), :mod:`.common` (exit codes,
client, output); the commands by area in :mod:`.jobs` (submit, list, show,
edit), :mod:`.operations`, :mod:`.logs`, :mod:`.watch`, :mod:`.views` (queue,
locks, resources, bookings, schedules, plugins) and :mod:`.admin` (run,
version, check-config, reload, db, ui). Only the module of the command being
run is imported.
"""

from __future__ import annotations

import os
import sys

from jobd.client.cli.commands import OPERATIONS, build_parser
from jobd.client.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Command,
    UsageError,
    err,
)
from jobd.client.cli.jobs import submit_body as _submit_body
from jobd.client.cli.jobs import wait_for as _wait_for
from jobd.client.cli.parser import join_dash_values as _join_dash_values
from jobd.client.remote import ApiError, DaemonUnreachable

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "OPERATIONS",
    "_join_dash_values",  # the names the single module had, kept for its callers
    "_submit_body",
    "_wait_for",
    "build_parser",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    """Run one ``jobd`` command; returns the exit code (argparse's own exits included)."""
    argv = _join_dash_values(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: str | None = getattr(args, "func", None)
    if getattr(args, "version", False):
        func = "admin:cmd_version"
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _dispatch(_resolve(func), args)


def _resolve(func: str) -> Command:
    """``"jobs:cmd_list"`` → the function, its module imported now (and only now)."""
    module, _, name = func.partition(":")
    qualified = f"{__name__}.{module}"
    __import__(qualified)  # not importlib.import_module: importing importlib costs more
    found: Command = getattr(sys.modules[qualified], name)
    return found


def _dispatch(func: Command, args: argparse.Namespace) -> int:
    try:
        return func(args)
    except UsageError as exc:
        err(f"error: {exc}")
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        err(str(exc))
        return EXIT_UNREACHABLE
    except ApiError as exc:
        err(exc.message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `jobd list | head`: the reader left; say nothing more, and tell Python not to either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
