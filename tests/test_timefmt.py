"""jobd.core.timefmt: ISO 8601 with a zone in, ISO 8601 UTC out, durations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobd.core.errors import ValidationError
from jobd.core.timefmt import format_duration, format_time, parse_duration, parse_time

NOW = 1_767_261_600.0  # 2026-01-01T10:00:00Z


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-01T10:00:00Z", NOW),
        ("2026-01-01T10:00:00+00:00", NOW),
        ("2026-01-01T11:00:00+01:00", NOW),
        ("2026-01-01T05:30-04:30", NOW),
        ("2026-01-01T10:00:00.250Z", NOW + 0.25),
        ("  2026-01-01T10:00Z ", NOW),
        ("now", NOW),
        ("NOW", NOW),
        ("+30s", NOW + 30),
        ("+5m", NOW + 300),
        ("+2h", NOW + 7200),
        ("+1d", NOW + 86400),
        ("+1h30m", NOW + 5400),
        ("+90", NOW + 90),
        ("-5m", NOW - 300),
        ("-1h30m", NOW - 5400),
    ],
)
def test_parse_time_accepts_zoned_iso_now_and_relative(text: str, expected: float) -> None:
    assert parse_time(text, now=NOW) == pytest.approx(expected)


def test_a_time_without_a_zone_is_refused_with_the_fix() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_time("2026-01-01T10:00")
    assert caught.value.message == "time '2026-01-01T10:00' has no zone; add Z or +01:00"


@pytest.mark.parametrize(
    "text", ["2026-01-01", "tomorrow", "", "10:00Z", "+", "+5x", "+-5m", "2026-13-01T10:00Z"]
)
def test_unparseable_times_are_validation_errors(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_time(text, now=NOW)


def test_format_time_is_utc_with_an_explicit_offset() -> None:
    assert format_time(None) is None
    assert format_time(NOW) == "2026-01-01T10:00:00+00:00"
    assert format_time(NOW + 0.5) == "2026-01-01T10:00:00.500000+00:00"
    assert format_time(0) == "1970-01-01T00:00:00+00:00"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_format_then_parse_is_the_same_instant(ts: float) -> None:
    text = format_time(ts)
    assert text is not None
    assert abs(parse_time(text) - ts) <= 1e-6


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90", 90),
        ("1.5", 1.5),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("1.5h", 5400),
        (" 10S ", 10),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "-5", "5x", "1h30", "abc", "1e5", "m", "9" * 400 + "d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (44.6, "45s"),
        (725, "12m05s"),
        (11220, "3h07m"),
        (187200, "2d04h"),
        (-3, "0s"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_time_never_raises_on_a_time_out_of_range() -> None:
    assert format_time(1.9e211) is None
    assert format_time(float("inf")) is None
