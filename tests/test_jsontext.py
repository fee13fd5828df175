"""JSON text by orjson (jobd.core.jsontext) reads back as the standard library's did, and
what orjson refuses is still written, by the standard library's encoder."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from jobd.core.jsontext import dumps, dumps_text
from jobd.core.models import JobSpec
from jobd.core.states import JobState
from jobd.store import spec_from_json, spec_to_json

VALUES: list[Any] = [
    {"a": 1, "b": [1.5, -0.0, 1e16, None, True], "c": {"d": "é ✓"}},
    {"big": 10**30},  # beyond 64 bits: orjson refuses, the standard library writes it
    {1: "an integer key"},  # orjson refuses, the standard library writes "1"
    [JobState.QUEUED, ("a", "b")],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_text_reads_back_as_the_standard_librarys(value: Any) -> None:
    expected = json.loads(json.dumps(value))
    assert json.loads(dumps(value)) == expected
    assert json.loads(dumps_text(value)) == expected


def test_an_answer_is_compact_utf8_and_nan_is_null() -> None:
    assert dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'.encode()
    assert json.loads(dumps({"x": math.nan, "y": math.inf})) == {"x": None, "y": None}


def test_a_lone_surrogate_is_escaped_as_before() -> None:
    assert dumps_text({"x": "\ud800"}) == '{"x":"\\ud800"}'
    assert dumps({"x": "\ud800"}) == b'{"x":"\\ud800"}'


def test_stored_nan_reads_back_as_nan() -> None:
    value = json.loads(dumps_text({"x": math.nan, "y": None}))
    assert math.isnan(value["x"]) and value["y"] is None


def test_a_spec_reads_back_as_it_was() -> None:
    spec = JobSpec(
        "w",
        name="clip ✓",
        params={"n": 10**20, "f": 0.1, "nested": {"x": [1, None]}},
        assets=("tape-1",),
        start_at=1_800_000_000.25,
        priority=-5,
        state=JobState.TENTATIVE,
    )
    assert spec_from_json(spec_to_json(spec)) == spec
