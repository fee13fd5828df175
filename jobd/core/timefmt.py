"""Times and durations at the edge: the API and the CLI speak ISO 8601 with a zone.

Inside jobd every time is POSIX seconds (``float``, UTC). This module turns
text from people and HTTP clients into those floats and back. A time without
a zone is refused rather than guessed: "10:00" in a facility that spans
zones, or on a server set to UTC, is how a live feed gets booked an hour off.

Pure and cheap to import (the CLI uses it for ``--start`` and ``--end``).
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

from jobd.core.errors import ValidationError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
#: One or more ``<number><unit>`` parts, e.g. ``90``, ``30s``, ``1h30m``, ``1.5h``.
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhd]?)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"`` or ``"1h30m"``.

    A bare number is seconds. Negative, empty or otherwise malformed text raises
    :class:`ValidationError`.
    """
    cleaned = text.strip().lower()
    if not cleaned or _DURATION.fullmatch(cleaned) is None:
        raise ValidationError(
            f"duration {text!r} is not a number of seconds or a value like 30s, 5m, 2h, 1h30m"
        )
    parts = _DURATION_PART.findall(cleaned)
    # A bare number is only allowed alone: "1h30" is more likely a typo than 1h + 30 s.
    if len(parts) > 1 and any(unit == "" for _, unit in parts):
        raise ValidationError(f"duration {text!r} mixes a bare number with units")
    total = sum(float(number) * _UNITS[unit or "s"] for number, unit in parts)
    if not math.isfinite(total):
        raise ValidationError(f"duration {text!r} is too large")
    return total


def parse_time(text: str, *, now: float | None = None) -> float:
    """POSIX seconds from ISO 8601 *with a zone*, ``now``, or ``+``/``-<duration>`` from now.

    ``2026-01-01T10:00:00Z``, ``2026-01-01T11:00+01:00``, ``now``, ``+30s``,
    ``+5m``, ``+2h``, ``+1h30m``, ``-5m`` (five minutes ago). ``now`` defaults to
    the current time (tests pass their own). A time without a zone, or anything unparseable, raises
    :class:`ValidationError` saying how to fix it.
    """
    stripped = text.strip()
    current = time.time() if now is None else now
    if stripped.lower() == "now":
        return current
    if stripped.startswith("+"):
        return current + parse_duration(stripped[1:])
    if stripped.startswith("-"):
        return current - parse_duration(stripped[1:])
    try:
        parsed = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValidationError(
            f"time {text!r} is not ISO 8601 (e.g. 2026-01-01T10:00:00Z), 'now', +30s/+5m/+2h or -5m"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationError(f"time {text!r} has no zone; add Z or +01:00")
    return parsed.timestamp()


def format_time(ts: float | None) -> str | None:
    """ISO 8601 in UTC with an explicit ``+00:00`` (``None`` stays ``None``).

    Microseconds appear only when the time has them, so whole-second times
    read as ``2026-01-01T10:00:00+00:00``.
    """
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        # Out of the calendar's range: jobd refuses such times, but a row written by
        # something else must not make a job unreadable through the API.
        return None


def format_duration(seconds: float | None) -> str:
    """A short human form for tables: ``45s``, ``12m05s``, ``3h07m``, ``2d04h``; ``-`` for None."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
