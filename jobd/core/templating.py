"""Fill ``{name}`` placeholders in step params from the job's params, never through a shell.

Strings are filled element by element (lists and maps are walked), so an
``argv`` list stays a list: a value with spaces or quotes is one argument.
A string that is exactly one placeholder takes the value as it is (a number
stays a number). ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from jobd.core.errors import ValidationError

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


def placeholders(value: Any) -> set[str]:
    """Every placeholder name used anywhere in ``value``."""
    if isinstance(value, str):
        return {m.group(1) for m in _PLACEHOLDER.finditer(value) if m.group(1)}
    if isinstance(value, Mapping):
        return set().union(*(placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(placeholders(v) for v in value)) if value else set()
    return set()


def render(value: Any, params: Mapping[str, Any], *, where: str = "params") -> Any:
    """``value`` with placeholders filled; raises ValidationError naming a missing parameter."""
    if isinstance(value, str):
        return _render_string(value, params, where)
    if isinstance(value, Mapping):
        return {k: render(v, params, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, params, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _render_string(text: str, params: Mapping[str, Any], where: str) -> Any:
    whole = _PLACEHOLDER.fullmatch(text)
    if whole and whole.group(1):
        return _lookup(whole.group(1), params, where)

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "{{":
            return "{"
        if match.group(0) == "}}":
            return "}"
        return str(_lookup(match.group(1), params, where))

    return _PLACEHOLDER.sub(substitute, text)


def _lookup(name: str, params: Mapping[str, Any], where: str) -> Any:
    if name not in params:
        raise ValidationError(
            f"missing parameter {name!r} (used in {where}); pass it with -p {name}=...",
            field=f"params.{name}",
        )
    return params[name]
