"""JSON for the client without importing :mod:`json`: the C accelerators of ``_json``.

``import json`` costs a client command ~30 million instructions (callgrind), most of it
``re`` and what ``re`` imports (``enum``, ``functools``, ``collections``): ``json.decoder``,
``json.scanner`` and ``json.encoder`` each compile a regular expression at import, for the
pure-Python fallbacks that CPython's C scanner and encoder make unused. :func:`loads` and
:func:`dumps` drive those C functions (``_json.make_scanner``, ``_json.make_encoder``) the
way :class:`json.JSONDecoder` and :class:`json.JSONEncoder` do with their default options,
and give the same results (``tests/test_client_jsonio.py`` compares them). Where ``_json``
is missing (another interpreter) or for an indented document, :mod:`json` itself is used.
"""

from __future__ import annotations

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

try:
    import _json as _c
except ImportError:  # pragma: no cover (CPython has it)
    _c = None  # type: ignore[assignment]

#: What the C scanner treats as blank between tokens (as :data:`json.decoder.WHITESPACE`).
_BLANK = " \t\n\r"
_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Options:
    """The attributes ``_json.make_scanner`` reads: :class:`json.JSONDecoder`'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__
    memo: dict[str, str] = {}


_scan: Callable[[str, int], tuple[Any, int]] | None = (
    None if _c is None else _c.make_scanner(_Options())  # type: ignore[arg-type]
)


class DecodeError(ValueError):
    """Not a JSON document (a :class:`ValueError`, as :class:`json.JSONDecodeError` is)."""


def loads(data: str | bytes | bytearray) -> Any:
    """The value of the JSON document ``data`` (bytes are UTF-8), as :func:`json.loads`."""
    if isinstance(data, str):
        text = data
    else:  # UTF-8, a byte-order mark allowed (as json.loads; "utf-8-sig" is one more import)
        text = bytes(data).removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    start = len(text) - len(text.lstrip(_BLANK))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise DecodeError(f"expecting a value at character {exc.value}") from None
    if text[end:].strip(_BLANK):
        raise DecodeError(f"extra data at character {end}")
    return value


def _refuse(value: object) -> None:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _encoder(ensure_ascii: bool) -> Callable[[Any, int], Any]:
    """``json.JSONEncoder(ensure_ascii=...)``'s one-shot C encoder. A new one each time, as
    json makes one: its circular-reference markers stay behind when an encoding fails."""
    strings = _c.encode_basestring_ascii if ensure_ascii else _c.encode_basestring
    return _c.make_encoder({}, _refuse, strings, None, ": ", ", ", False, False, True)


def dumps(value: Any, *, ensure_ascii: bool = True, indent: int | None = None) -> str:
    """``json.dumps(value, ensure_ascii=..., indent=...)``."""
    if indent is not None or _c is None:
        import json

        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    return "".join(_encoder(ensure_ascii)(value, 0))
