"""The command line before it is parsed: values that start with "-", and which command
it names (light: no argparse, which the plain ``list``/``show`` lines never import)."""

from __future__ import annotations

#: Options whose value may start with "-" (``--start -5m``: five minutes ago).
_TIME_OPTIONS = frozenset({"--start", "--end", "--from", "--to", "--since", "--until"})


def join_dash_values(argv: list[str]) -> list[str]:
    """``--start -5m`` → ``--start=-5m``: argparse would take ``-5m`` for an option."""
    out: list[str] = []
    values = iter(argv)
    for arg in values:
        if arg in _TIME_OPTIONS:
            value = next(values, None)
            if value is not None and value.startswith("-") and value != "--":
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


#: Options of the main parser that take a value (skipped when looking for the command).
_VALUE_OPTIONS = frozenset({"--socket", "--url", "--token", "--config"})


def command_word(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option or an option's value)."""
    values = iter(argv)
    for arg in values:
        if arg in _VALUE_OPTIONS:
            next(values, None)
        elif arg == "--":
            return next(values, None)
        elif not arg.startswith("-"):
            return arg
    return None
