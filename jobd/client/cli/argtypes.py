"""The ``type=`` converters of the ``jobd`` options: each turns one argument into its value
or raises :class:`argparse.ArgumentTypeError` with the one line the user sees."""

from __future__ import annotations

import argparse

from jobd.core.errors import ValidationError
from jobd.core.timefmt import format_time, parse_duration, parse_time

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def time_arg(text: str) -> str:
    """``--start``/``--end``/``--from``/``--to``: ISO with a zone, ``now`` or ``+5m`` → ISO UTC."""
    try:
        return str(format_time(parse_time(text)))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def duration_arg(text: str) -> float:
    """Seconds, or ``30s``/``5m``/``2h``."""
    try:
        return parse_duration(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def priority_arg(text: str) -> int:
    """An integer in -1000..1000."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"priority {text!r} is not an integer") from None
    if not -1000 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"priority {value} is outside -1000..1000")
    return value


def state_arg(text: str) -> str:
    """``--state S``: one of the job states (a usage error before any request)."""
    from jobd.client.cli.fast import STATES

    if text not in STATES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} (one of: {', '.join(STATES)})")
    return text


def positive_int(text: str) -> int:
    """A job id, a limit: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def key_value(text: str) -> tuple[str, str]:
    """``-p KEY=VALUE``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"parameter {text!r} is not key=value")
    return key, value


def json_object(text: str) -> dict[str, Any]:
    """``--params-json``: a JSON object."""
    import json  # only for this option: json imports re

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--params-json is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params-json must be a JSON object")
    return value


def port_arg(text: str) -> int:
    """``jobd ui --port``: 0..65535."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return int(text)
