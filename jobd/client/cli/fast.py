"""``jobd list`` and ``jobd show ID`` parsed without argparse: the commands typed most.

Importing argparse and building a command's parser is about a sixth of what
``jobd list`` costs (~14 of ~113 million instructions, 39 of them the bare
interpreter's). This module reads only the plainest command lines: the command
word, the connection options, ``--json``, and for ``list`` its filters,
``--limit`` and ``--cursor``, each as ``--opt VALUE`` or ``--opt=VALUE``.
Anything else (``-h``, ``--version``, an unknown or abbreviated option, a value
argparse would refuse or read otherwise, a second argument ...) gives ``None``
and argparse parses the line, so help and every error are argparse's own.
``tests/test_cli.py`` holds each result to argparse's, and this table to the
options :mod:`.commands` declares for the two commands.
"""

from __future__ import annotations

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

#: The job states' names, in SPEC's order: ``jobd.core.states.JobState`` is their definition
#: (``tests/test_cli_fast.py`` holds the two equal); importing it costs ~40 ms of start-up.
STATES = (
    "draft",
    "tentative",
    "confirmed",
    "pending",
    "queued",
    "waiting-for-lock",
    "running",
    "cancel-requested",
    "paused",
    "completed",
    "failed",
    "timed-out",
    "canceled",
    "ready-for-invoice",
    "invoiced",
)
#: The connection options every command takes (before or after it; the last one wins).
CONNECTION = frozenset({"--socket", "--url", "--token", "--config"})
#: Per command: its function, its defaults, and each option's dest and kind.
COMMANDS: dict[str, tuple[str, dict[str, Any], dict[str, tuple[str, str]]]] = {
    "list": (
        "jobs:cmd_list",
        {
            "json": False,
            "state": [],
            "workflow": None,
            "asset": None,
            "resource": None,
            "since": None,
            "until": None,
            "search": None,
            "limit": 50,
            "cursor": None,
        },
        {
            "--json": ("json", "flag"),
            "--state": ("state", "state"),
            "--workflow": ("workflow", "text"),
            "--asset": ("asset", "text"),
            "--resource": ("resource", "text"),
            "--since": ("since", "time"),
            "--until": ("until", "time"),
            "--search": ("search", "text"),
            "--limit": ("limit", "count"),
            "--cursor": ("cursor", "count"),
        },
    ),
    "show": ("jobs:cmd_show", {"json": False}, {"--json": ("json", "flag")}),
}


class _Unplain(Exception):
    """The line is not one this module reads: argparse parses it."""


def parse(argv: list[str]) -> dict[str, Any] | None:
    """The namespace argparse would give for ``argv`` (as a dict), or ``None`` when ``argv``
    is not a plain ``list``/``show`` line (then argparse must parse it)."""
    try:
        return _parse(argv)
    except _Unplain:
        return None


def _parse(argv: list[str]) -> dict[str, Any]:
    words = iter(argv)
    found: dict[str, Any] = {}
    command = None
    options: dict[str, tuple[str, str]] = {}
    positionals: list[str] = []
    for word in words:
        flag, sep, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if not word.startswith("-"):
            if command is None:
                command = word
                func, defaults, options = COMMANDS.get(word) or _refuse()
                found.update(version=False, command=word, **defaults, func=func)
            else:
                positionals.append(word)
            continue
        if flag in CONNECTION:
            found[flag[2:]] = value if sep else _value_of(next(words, None))
        elif flag in options:
            dest, kind = options[flag]
            if kind == "flag":
                found[dest] = True if not sep else _refuse()
            else:
                _store(found, dest, kind, value if sep else _value_of(next(words, None)))
        else:
            _refuse()
    return _finish(found, command, positionals)


def _finish(found: dict[str, Any], command: str | None, positionals: list[str]) -> dict[str, Any]:
    if command is None:
        _refuse()
    if command == "show":
        if len(positionals) != 1:
            _refuse()
        found["job_id"] = _count(positionals[0])
    elif positionals:
        _refuse()
    if "state" in found:
        found["state"] = list(found["state"])  # a list of its own, as argparse copies it
    return found


def _store(found: dict[str, Any], dest: str, kind: str, value: str) -> None:
    if kind == "state":
        found[dest] = [*found[dest], value if value in STATES else _refuse()]
    elif kind == "count":
        found[dest] = _count(value)
    elif kind == "time":
        found[dest] = _time(value)
    else:
        found[dest] = value


def _value_of(word: str | None) -> str:
    """The word after an option, as its value: argparse reads one that starts with ``-``
    as an option (or a negative number), and none at the end as an error."""
    if word is None or word.startswith("-"):
        _refuse()
    return word


def _count(text: str) -> int:
    """What :func:`.argtypes.positive_int` accepts, in its plainest spelling."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        _refuse()
    return int(text)


def _time(text: str) -> str:
    """:func:`.argtypes.time_arg`'s conversion; argparse says what is wrong with a bad one."""
    from jobd.core.errors import ValidationError
    from jobd.core.timefmt import format_time, parse_time

    try:
        return str(format_time(parse_time(text)))
    except ValidationError:
        _refuse()


def _refuse() -> NoReturn:
    raise _Unplain
