"""Compact JSON, encoded by orjson: a tenth of the standard library encoder's CPU on a
job's JSON (12.8 → 1.1 µs a job, docs/performance.md), which was a third of what a
batch submission's answer cost.

The text is what the standard library writes with ``separators=(",", ":")`` for the
values jobd sends and stores, but for how a float is spelled (``1e16`` for ``1e+16``,
the same number) and non-ASCII text written as UTF-8 rather than ``\\u`` escapes. What
orjson refuses goes to the standard library's encoder, so that nothing encodable before
fails now: an integer beyond 64 bits, a key that is not a string, a lone surrogate.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

#: An answer's fallback: what Starlette's JSONResponse writes, but ASCII, so that a lone
#: surrogate is sent escaped (valid JSON) rather than failing to encode as UTF-8.
_ANSWER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
#: A stored value's fallback: what the store wrote before orjson.
_STORED = json.JSONEncoder(separators=(",", ":"))
_orjson_dumps = orjson.dumps
_Refused = orjson.JSONEncodeError


def dumps(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON, an answer's body. NaN and infinities, which JSON
    has no words for, become ``null`` (the standard library's encoder raised instead)."""
    try:
        return _orjson_dumps(value)
    except _Refused:
        return _ANSWER.encode(value).encode()


def dumps_text(value: Any) -> str:
    """``value`` as compact JSON text to store, read back as it was written: orjson writes
    NaN and infinities as ``null``, so a text with a ``null`` in it is written by the
    standard library's encoder instead (``NaN``, as before; a stored spec leaves out the
    fields that are null, so this is rare).

    The check is on the text, not the bytes: ``b"null" in out`` first tries the operand as
    an integer (``x in b"..."`` may ask for a byte value), which raises and clears a
    formatted TypeError: ~2,200 instructions a call, two calls a submitted job."""
    try:
        out = _orjson_dumps(value)
    except _Refused:
        return _STORED.encode(value)
    text = out.decode()
    return _STORED.encode(value) if "null" in text else text
