"""The ``jobd`` command: the daemon (``jobd run``) and its client (everything else). SPEC §6.

Exit codes: 0 ok; 1 refused or failed (the reason on stderr); 2 usage;
3 daemon unreachable; 130 interrupted.

Start-up cost matters (an operator types ``jobd list`` dozens of times an
hour), so this package imports only the standard library and jobd's light
modules: requests go through :mod:`jobd.client.wire` (stdlib sockets, not
httpx), ``rich`` arrives only to draw a table on a terminal (a pipe gets plain
lines from :mod:`jobd.client.textui`), and the daemon stack (FastAPI, uvicorn,
APScheduler, aiosqlite, the engine) only with ``jobd run``; a test checks that.

The parts: :mod:`.argv` (the line before parsing), :mod:`.fast` (plain ``list``
and ``show`` lines, read without argparse), :mod:`.parser` (argparse machinery),
:mod:`.commands` (every command and its options), :mod:`.argtypes` (option
values), :mod:`.common` (exit codes, client, output); the commands by area in
:mod:`.jobs` (submit, list, show, edit), :mod:`.operations`, :mod:`.logs`,
:mod:`.watch`, :mod:`.views` (queue, locks, resources, bookings, schedules,
plugins) and :mod:`.admin` (run, version, check-config, reload, db, ui). Only
the module of the command being run is imported, and argparse only when the
line is not a plain ``list`` or ``show``.
"""

from __future__ import annotations

import os
import sys

from jobd.client.cli.argv import join_dash_values as _join_dash_values
from jobd.client.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    UsageError,
    err,
)
from jobd.client.cli.fast import parse as parse_plain
from jobd.client.remote import ApiError, DaemonUnreachable

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from jobd.client.cli.common import Command

#: Names of the former single module that its callers use, each imported on first use
#: (argparse's side is not loaded by a plain ``list`` or ``show``): name -> (module, name).
_LAZY = {
    "build_parser": ("commands", "build_parser"),
    "OPERATIONS": ("commands", "OPERATIONS"),
    "_submit_body": ("jobs", "submit_body"),
    "_wait_for": ("jobs", "wait_for"),
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attribute = _LAZY[name]
    return getattr(_module(module), attribute)


def main(argv: list[str] | None = None) -> int:
    """Run one ``jobd`` command; returns the exit code (argparse's own exits included)."""
    argv = _join_dash_values(sys.argv[1:] if argv is None else argv)
    plain = parse_plain(argv)
    if plain is not None:
        args: Any = _Args(plain)
        return _dispatch(_resolve(plain["func"]), args)
    parser = _module("commands").build_parser(argv)
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


class _Args:
    """A plain line's options as attributes, as argparse's ``Namespace`` holds them
    (without importing :mod:`types` for ``SimpleNamespace``)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.__dict__.update(options)


def _module(name: str) -> Any:
    """This package's module ``name``, imported now (``__import__``: importing importlib
    for ``import_module`` costs more)."""
    qualified = f"{__name__}.{name}"
    __import__(qualified)
    return sys.modules[qualified]


def _resolve(func: str) -> Command:
    """``"jobs:cmd_list"`` → the function, its module imported now (and only now)."""
    module, _, name = func.partition(":")
    found: Command = getattr(_module(module), name)
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
