"""The plain ``jobd list`` / ``jobd show ID`` lines read without argparse
(``jobd/client/cli/fast.py``): the same namespace as argparse's, or none at all.

Whatever the fast reader accepts must parse exactly as argparse parses it, and
what it does not know it must leave to argparse (so ``--help`` and every error
stay argparse's); its table must name every option :mod:`jobd.client.cli.commands`
gives the two commands, with the same defaults.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobd.client import cli
from jobd.client.cli import fast

ROOT = Path(__file__).resolve().parent.parent

PLAIN = [
    ["list"],
    ["show", "7"],
    ["show", "007", "--json"],
    ["list", "--json", "--limit", "5", "--cursor=40"],
    ["list", "--state", "failed", "--state=queued", "--workflow", "ingest", "--search", "a b"],
    ["list", "--asset", "/mnt/a", "--resource=vtr-1", "--json", "--json"],
    ["list", "--since", "2026-01-01T00:00Z", "--until=2026-02-01T12:30:00+01:00"],
    ["--socket", "/run/s.sock", "list", "--socket", "/other.sock"],  # the last one wins
    ["--url", "http://h:1", "--token", "t", "show", "3", "--config", "/c.toml"],
    ["--config", "list", "show", "4"],  # "list" is --config's value, show the command
    ["--socket=", "list", "--workflow=-odd"],
]
NOT_PLAIN = [
    [],
    ["--help"],
    ["list", "-h"],
    ["show", "--help"],
    ["--version"],
    ["--version", "list"],
    ["submit", "w"],
    ["list", "extra"],
    ["show"],
    ["show", "1", "2"],
    ["show", "0"],
    ["show", "x"],
    ["show", "-3"],
    ["list", "--limit", "0"],
    ["list", "--limit", "+5"],
    ["list", "--lim", "5"],  # argparse's abbreviation: its to read
    ["list", "--limit"],
    ["list", "--workflow", "--json"],
    ["list", "--json=yes"],
    ["list", "--since", "yesterday"],
    ["list", "--since", "2026-01-01T00:00"],  # no zone: argparse says so
    ["--json", "list"],
    ["list", "--", "x"],
    ["show", "-", "1"],
    ["list", "--bogus"],
    ["list", "--state", "bogus"],  # argparse refuses it (exit 2), naming the states
    ["--socket"],
]


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_a_plain_line_parses_as_argparse_parses_it(argv: list[str]) -> None:
    argv = cli._join_dash_values(argv)
    got = fast.parse(argv)
    assert got is not None
    assert got == vars(cli.build_parser().parse_args(argv))


@pytest.mark.parametrize("argv", NOT_PLAIN, ids=" ".join)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast.parse(cli._join_dash_values(argv)) is None


def test_a_relative_time_is_read_by_the_same_conversion() -> None:
    got = fast.parse(cli._join_dash_values(["list", "--since", "-1h"]))
    assert got is not None and got["since"].endswith("+00:00")


@pytest.mark.parametrize("command", sorted(fast.COMMANDS))
def test_the_table_names_every_option_of_the_command(command: str) -> None:
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    declared = {
        option: action.default
        for action in sub.choices[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option not in {"--help", *fast.CONNECTION}
    }
    func, defaults, options = fast.COMMANDS[command]
    assert set(options) == set(declared)
    assert {option: defaults[dest] for option, (dest, _) in options.items()} == declared
    argv = [command, "1"] if command == "show" else [command]
    assert vars(cli.build_parser().parse_args(argv))["func"] == func


def test_a_plain_list_does_not_import_argparse(tmp_path: Path) -> None:
    code = (
        "import sys; from jobd.client.cli import main; code = main(sys.argv[1:]); "
        "print(code, 'argparse' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
    env["PYTHONPATH"] = str(ROOT)
    run = [sys.executable, "-c", code, "--socket", str(tmp_path / "none.sock")]
    plain = subprocess.run([*run, "list"], capture_output=True, text=True, env=env, timeout=60)
    assert plain.stdout.split() == ["3", "False"], plain.stderr  # unreachable, no argparse
    other = subprocess.run(
        [*run, "list", "-h"], capture_output=True, text=True, env=env, timeout=60
    )
    assert other.stdout.split()[-2:] == ["0", "True"]  # help: argparse's


def test_every_command_names_a_function_that_exists() -> None:
    """Commands name their function as ``"module:function"`` (imported when run): a typo
    would only show when someone runs that command."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    funcs = {name: parser.get_default("func") for name, parser in sub.choices.items()}
    assert all(isinstance(func, str) for func in funcs.values()), funcs
    for name, func in funcs.items():
        assert callable(cli._resolve(func)), f"jobd {name}: {func}"


def test_the_state_names_are_the_job_states() -> None:
    from jobd.core.states import JobState

    assert tuple(state.value for state in JobState) == fast.STATES
