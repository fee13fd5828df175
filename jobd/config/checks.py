"""The validation kit: :class:`Table` checks one TOML table against the checkers of
its keys, and the checkers of single values (seconds, integers, names, paths, ...).

A checker takes the raw TOML value and the folder of the file it came from (for
relative paths) and returns the converted value or raises :class:`Bad`; the
table turns a :class:`Bad` into a :class:`jobd.core.errors.ConfigError` naming
the file, the key path and the problem. Used as ``checks.seconds()``,
``checks.path``, ... by :mod:`jobd.config.sections`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jobd.config.provenance import Context
from jobd.config.records import KeyPath

#: Checks one raw TOML value; gets the folder of the file the value came from
#: (for relative paths) and returns the converted value or raises Bad.
Checker = Callable[[Any, Path], Any]


class Bad(Exception):
    """A value is wrong; ``at`` is the key path below the checked key (array index...)."""

    def __init__(self, problem: str, at: KeyPath = ()) -> None:
        super().__init__(problem)
        self.problem, self.at = problem, at


class Table:
    """One TOML table under validation: refuses unknown keys at once, then hands out
    checked values. ``allowed`` maps each accepted key to its checker."""

    def __init__(
        self,
        ctx: Context,
        path: KeyPath,
        data: Any,
        allowed: Mapping[str, Checker],
    ) -> None:
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table, got {show(data)}")
        self.ctx, self.path, self.data, self.allowed = ctx, path, data, allowed
        for key in data:
            if key not in allowed:
                raise ctx.error((*path, key), f"unknown key {key!r}{suggest(key, allowed)}")

    def values(self, required: Iterable[str] = ()) -> dict[str, Any]:
        """The checked values of the keys present (absent keys keep dataclass defaults)."""
        for key in required:
            if key not in self.data:
                raise self.ctx.error((*self.path, key), f"missing required key {key!r}")
        return {key: self.check(key) for key in self.allowed if key in self.data}

    def check(self, key: str) -> Any:
        here = (*self.path, key)
        try:
            return self.allowed[key](self.data[key], self.ctx.file_of(here).parent)
        except Bad as bad:
            raise self.ctx.error((*here, *bad.at), bad.problem) from None


def checkers_for(cls: type[Any], **checkers: Checker) -> dict[str, Checker]:
    """``checkers`` after asserting they cover exactly ``cls``'s fields (``name`` aside,
    which for most sections is the table's key), so code and shape stay in step."""
    names = {f.name for f in dataclasses.fields(cls)} - ({"name"} - checkers.keys())
    assert names == checkers.keys(), f"{cls.__name__}: {names ^ checkers.keys()}"
    return checkers


def seconds(*, allow_zero: bool = False) -> Checker:
    def check(value: Any, _base: Path) -> float:
        ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise Bad(f"expected a number of seconds {bound}, got {show(value)}")
        return float(value)

    return check


def integer(low: int, high: int | None = None) -> Checker:
    def check(value: Any, _base: Path) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            span = f"from {low} up" if high is None else f"from {low} to {high}"
            raise Bad(f"expected an integer {span}, got {show(value)}")
        return value

    return check


def text(value: Any, _base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Bad(f"expected a non-empty string, got {show(value)}")
    return value


def name(value: Any, base: Path) -> str:
    """A name jobd shows and joins with commas (``JOBD_RESOURCES``): no blanks, no commas."""
    checked = text(value, base)
    if _BAD_NAME.search(checked):
        raise Bad(f"a name may not contain whitespace or commas, got {show(value)}")
    return checked


_BAD_NAME = re.compile(r"[\s,]")


def choice(*options: str, fold_case: bool = False) -> Checker:
    def check(value: Any, _base: Path) -> str:
        folded = value.lower() if fold_case and isinstance(value, str) else value
        if folded not in options:
            listed = ", ".join(repr(o) for o in options)
            hint = suggest(value, options) if isinstance(value, str) else ""
            raise Bad(f"expected one of {listed}, got {show(value)}{hint}")
        return str(folded)

    return check


def boolean(value: Any, _base: Path) -> bool:
    if not isinstance(value, bool):
        raise Bad(f"expected true or false, got {show(value)}")
    return value


def names(*, non_empty: bool = False) -> Checker:
    """An array of names, without repeats."""

    def check(value: Any, base: Path) -> tuple[str, ...]:
        if not isinstance(value, list) or (non_empty and not value):
            raise Bad(
                f"expected a{' non-empty' if non_empty else 'n'} array of names, got {show(value)}"
            )
        items = tuple(_each(value, name, base))
        for index, item in enumerate(items):
            if item in items[:index]:
                raise Bad(f"{item!r} is listed twice", (index,))
        return items

    return check


def path(value: Any, base: Path) -> Path:
    """A path; a relative one resolves against the folder of the file it came from."""
    return Path(os.path.normpath(base / text(value, base)))


def paths(value: Any, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise Bad(f"expected an array of paths, got {show(value)}")
    return tuple(_each(value, path, base))


def _each(items: list[Any], checker: Checker, base: Path) -> Iterator[Any]:
    for index, item in enumerate(items):
        try:
            yield checker(item, base)
        except Bad as bad:
            raise Bad(bad.problem, (index, *bad.at)) from None


def params(value: Any, _base: Path) -> dict[str, Any]:
    """Job parameters: a table of JSON-able values (they are stored and templated as JSON)."""
    if not isinstance(value, dict):
        raise Bad(f"expected a table, got {show(value)}")
    if (where := _find_datetime(value)) is not None:
        raise Bad("TOML dates and times are not allowed in params; quote them as strings", where)
    return value


def _find_datetime(value: Any, at: KeyPath = ()) -> KeyPath | None:
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return at
    children: Iterable[tuple[str | int, Any]] = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        if (found := _find_datetime(child, (*at, key))) is not None:
            return found
    return None


def octal_mode(value: Any, _base: Path) -> int:
    # Only a string: a bare TOML integer 660 would silently mean 0o1224.
    if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
        raise Bad(f'expected an octal mode string like "0660", got {show(value)}')
    return int(value, 8)


def listen(value: Any, base: Path) -> str:
    """``host:port`` (an IPv6 host in brackets: ``[::1]:8470``)."""
    host, sep, port = text(value, base).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise Bad(f'expected "host:port" with a port from 1 to 65535, got {show(value)}')
    return str(value)


def database(value: Any, base: Path) -> str:
    url = text(value, base)
    if not url.startswith(("postgresql://", "postgres://")):
        raise Bad(
            f'expected a PostgreSQL URL like "postgresql://jobd@dbhost/jobd", got {show(value)}'
        )
    return url


def lease(value: Any, base: Path) -> float:
    """At least a second: renewals come every third of it, and the watchdog must act in time."""
    checked = float(seconds()(value, base))
    if checked < 1:
        raise Bad(f"expected a number of seconds >= 1, got {show(value)}")
    return checked


def timezone(value: Any, base: Path) -> str:
    name = text(value, base)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = suggest(name, zoneinfo.available_timezones())
        raise Bad(f"unknown timezone {name!r}{hint}") from None
    return name


def suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def show(value: Any) -> str:
    """A value as an error message shows it: strings quoted, TOML spelling otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value) if isinstance(value, str) else str(value)


def _is_number(value: Any) -> bool:
    # Excludes booleans (an int subclass) and TOML's nan/inf.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
