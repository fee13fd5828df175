"""The argparse machinery of ``jobd``: the parser class, the connection options, the
argv rewrites, and building only the command being run.

:mod:`jobd.client.cli.commands` declares the commands with :func:`command`; each
command's function is named by a ``"module:function"`` reference inside this
package, imported only when that command runs (so ``jobd list`` does not load
the code of ``watch``, ``submit --file`` or the daemon's commands).
"""

from __future__ import annotations

import argparse
import sys

from jobd.client.cli.argv import command_word
from jobd.client.cli.common import EXIT_USAGE

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def common_options() -> argparse.ArgumentParser:
    """Where the daemon is; accepted before and after the command (SUPPRESS keeps either)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="daemon's Unix socket (env JOBD_SOCKET)",
    )
    group.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="daemon's TCP URL, e.g. http://host:8470 (env JOBD_URL)",
    )
    group.add_argument(
        "--token", default=argparse.SUPPRESS, help="bearer token for --url (env JOBD_TOKEN)"
    )
    group.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="config file (env JOBD_CONFIG; default /etc/jobd/jobd.toml)",
    )
    return common


class Parser(argparse.ArgumentParser):
    """argparse, but a bad value prints its one useful line and a hint, not the usage block:
    ``jobd submit: error: argument --start: time ... has no zone; add Z or +01:00``.

    It also spares start-up what ``add_argument`` does not need: argparse checks each
    new option's metavar with a help formatter, whose constructor imports ``shutil``
    (and with it ``bz2``, ``lzma``, ``fnmatch``) to ask the terminal's width. That
    check gets a formatter of a fixed width; help and usage get the real one."""

    _jobd_adding = False

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"{self.prog}: see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        self._jobd_adding = True
        try:
            return super().add_argument(*args, **kwargs)
        finally:
            self._jobd_adding = False

    def _get_formatter(self) -> argparse.HelpFormatter:
        if self._jobd_adding:  # only its metavar check runs: the width changes nothing
            return argparse.HelpFormatter(prog=self.prog, width=80)
        return super()._get_formatter()


class _Skipped(argparse.ArgumentParser):
    """Stands in for the parser of a command that is not being run: its options are not
    built (a tenth of ``jobd list``'s start-up went to building the other 30 commands')."""

    def __init__(self) -> None:  # nothing to set up: only the no-ops below are called
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        pass


def _list_only(sub: Any, name: str, help_text: str) -> None:
    """What ``sub.add_parser(name, help=help_text)`` registers for ``--help`` and "invalid
    choice", without building a parser for a command that is not run: a parser costs
    ~40 registrations, and ``jobd`` has 30 commands. argparse's own parts, used as
    ``add_parser`` uses them (a test compares the parse and help with the full build)."""
    sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help_text))
    placeholder = getattr(sub, "jobd_placeholder", None)
    if placeholder is None:  # chosen only if argparse saw another command than ours
        placeholder = Parser(prog=f"jobd {name}", add_help=False)
        setattr(sub, "jobd_placeholder", placeholder)  # noqa: B010
    sub._name_parser_map[name] = placeholder


def quick_gettext() -> None:
    """argparse asks gettext for each of its messages, and gettext looks for translation
    files on disk every time it finds none (~100 look-ups, several ``stat`` each, per
    ``jobd`` run). jobd's own messages are English: so are argparse's here."""
    setattr(argparse, "_", lambda message: message)  # noqa: B010 (not in typeshed)
    setattr(argparse, "ngettext", lambda one, many, n: one if n == 1 else many)  # noqa: B010


def new_parser(argv: list[str] | None) -> tuple[argparse.ArgumentParser, Any, Any]:
    """The main parser, its subparsers action (remembering which command ``argv`` names, if
    given) and the connection options every command accepts too."""
    quick_gettext()
    common = common_options()
    parser = Parser(
        prog="jobd",
        parents=[common],
        description="jobd: job scheduler daemon for media operations, and its client.",
        epilog="exit codes: 0 ok, 1 refused or failed, 2 usage, 3 daemon unreachable",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the client's version, and the daemon's when it is reachable",
    )
    # prog given: else argparse formats a usage line (with a help formatter) to find "jobd".
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="jobd")
    # Given argv, only its command is built; none when it names none (``jobd --help``).
    only = None if argv is None else (command_word(argv) or "")
    setattr(sub, "jobd_only", only)  # noqa: B010
    setattr(sub, "jobd_common", common)  # noqa: B010
    return parser, sub, common


def command(
    sub: Any, name: str, func: str, help_text: str, *, reading: bool = False
) -> argparse.ArgumentParser:
    """Declare command ``name`` run by ``func`` (``"module:function"`` in this package). When
    another command is being run, only its name and help are listed (``--help``, "invalid
    choice") and a stand-in that ignores the options is returned."""
    only = getattr(sub, "jobd_only", None)
    if only is not None and name != only:
        _list_only(sub, name, help_text)
        return _Skipped()
    cmd: argparse.ArgumentParser = sub.add_parser(
        name, parents=[sub.jobd_common], help=help_text, description=help_text
    )
    cmd.set_defaults(func=func)
    if reading:
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
    return cmd
