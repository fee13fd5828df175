"""The client's JSON (:mod:`jobd.client.jsonio`) and times (:func:`jobd.client.render.local_time`)
read without the standard library's ``json`` and ``datetime``: the same results as those,
and a plain ``jobd list`` / ``jobd show`` against a real daemon imports neither."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from jobd.client import jsonio
from jobd.client.render import local_time
from jobd.core.timefmt import format_time
from tests.test_cli import Daemon, daemon  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parent.parent
VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, False, 'é\n"\\\t\u2603\U0001f600'], "b": {}, "c": []},
    [],
    "",
    "x",
    0,
    -17,
    10**30,
    1e300,
    -0.0,
    0.1,
    float("inf"),
    {"nested": {"deep": [[[{"k": "v"}]]]}},
    {"1": 1, "": None},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_dumps_is_json_dumps(value: Any, ensure_ascii: bool) -> None:
    assert jsonio.dumps(value, ensure_ascii=ensure_ascii) == json.dumps(
        value, ensure_ascii=ensure_ascii
    )
    assert jsonio.dumps(value, ensure_ascii=ensure_ascii, indent=2) == json.dumps(
        value, ensure_ascii=ensure_ascii, indent=2
    )


def test_dumps_refuses_what_json_refuses_and_recovers() -> None:
    loop: list[Any] = []
    loop.append(loop)
    for bad in (object(), {"k": {1, 2}}, loop):
        with pytest.raises((TypeError, ValueError)):
            json.dumps(bad)
        with pytest.raises((TypeError, ValueError)):
            jsonio.dumps(bad)
    shared = [1]
    assert jsonio.dumps([shared, shared]) == "[[1], [1]]"  # not mistaken for a cycle


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_loads_is_json_loads(value: Any) -> None:
    for text in (json.dumps(value), json.dumps(value, indent=1), f" \n\t{json.dumps(value)}\r\n"):
        assert repr(jsonio.loads(text)) == repr(json.loads(text))
        assert repr(jsonio.loads(text.encode())) == repr(json.loads(text.encode()))
    assert jsonio.loads(b"\xef\xbb\xbf[1]") == json.loads(b"\xef\xbb\xbf[1]") == [1]
    assert str(jsonio.loads("NaN")) == "nan"


@pytest.mark.parametrize("bad", ["", " ", "{", "[1,]", "[1] x", "nul", '"\x01"', "{'a': 1}"])
def test_loads_refuses_what_json_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        json.loads(bad)
    with pytest.raises(ValueError):
        jsonio.loads(bad)


@pytest.fixture
def zones() -> Iterator[list[str]]:
    old = os.environ.get("TZ")
    yield ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_local_time_is_datetimes_in_every_zone(zones: list[str]) -> None:
    rng = random.Random(11)
    for zone in zones:
        os.environ["TZ"] = zone
        time.tzset()
        for i in range(2000):
            ts = rng.uniform(-2e9, 4e9) if i % 2 else float(rng.randint(-(2 * 10**9), 4 * 10**9))
            iso = format_time(ts)
            assert iso is not None
            expected = datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M:%S")
            assert local_time(iso) == expected, (zone, iso)


@pytest.mark.parametrize(
    "text",
    [
        "2026-01-01T10:00:00+01:00",
        "2026-01-01T10:00:00Z",
        "2026-02-29T10:00:00+00:00",
        "2026-13-01T10:00:00+00:00",
        "2026-01-01 10:00:00+00:00",
        "2026-01-01T10:00:00.5+00:00",
        "not a time",
    ],
)
def test_other_shapes_are_read_by_datetime_or_shown_as_they_are(text: str) -> None:
    try:
        expected = datetime.fromisoformat(text).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        expected = text
    assert local_time(text) == expected
    assert local_time(None) == local_time("") == "-"


#: The console script's body (``-m jobd`` would add runpy's imports).
MAIN = "import sys; from jobd.client.cli import main; sys.exit(main(sys.argv[1:]))"


def _imports(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    found = re.finditer(r"^import time:.*\|\s*(\S+)\s*$", result.stderr, re.MULTILINE)
    return result, {m.group(1).strip() for m in found}


def test_plain_list_and_show_import_neither_json_nor_re_nor_datetime(
    daemon: Daemon,  # noqa: F811 (the fixture)
) -> None:
    assert daemon.jobd("submit", "quick", "--wait", "--start", "+0s") == 0
    _, bare = _imports("-c", "pass")
    costly = {"json", "re", "enum", "datetime", "collections", "typing", "types", "functools"}
    for command in (["list"], ["show", "1"]):
        result, modules = _imports("-c", MAIN, "--socket", str(daemon.sock), *command)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "quick" in result.stdout and "completed" in result.stdout
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.stdout)  # a time shown
        assert "jobd.client.render" in modules  # the measurement works
        assert sorted((modules - bare) & costly) == [], command
