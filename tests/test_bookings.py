from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobd.config import PoolConfig, ResourceConfig
from jobd.core.errors import BookingConflict, ValidationError
from jobd.core.models import Reservation
from jobd.plan.bookings import BookingIndex


def make_index(
    capacities: dict[str, int], pools: dict[str, tuple[str, ...]] | None = None
) -> BookingIndex:
    resources = {n: ResourceConfig(name=n, capacity=c) for n, c in capacities.items()}
    pool_cfg = {n: PoolConfig(name=n, members=m) for n, m in (pools or {}).items()}
    return BookingIndex(resources, pool_cfg)


def res(job: int, resource: str, start: float, end: float, pool: str | None = None) -> Reservation:
    return Reservation(job_id=job, resource=resource, start=start, end=end, pool=pool)


# -- conflict matrix, capacity 1, existing booking [100, 200) -------------------


@pytest.mark.parametrize(
    ("start", "end", "conflicts"),
    [
        (150, 250, [1]),  # overlaps the end
        (50, 150, [1]),  # overlaps the start
        (200, 300, []),  # touches the end: half-open, no conflict
        (0, 100, []),  # touches the start
        (120, 180, [1]),  # contained in the existing booking
        (50, 250, [1]),  # contains the existing booking
        (100, 200, [1]),  # identical
        (300, 400, []),  # disjoint
        (150, 150, [1]),  # an instant inside it
        (100, 100, [1]),  # the instant it starts
        (200, 200, []),  # the instant it ends (not held any more)
    ],
)
def test_conflict_matrix(start: float, end: float, conflicts: list[int]) -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 100, 200)])
    assert index.check("enc", start, end) == conflicts


def test_zero_length_reservations_conflict_at_their_instant() -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 100, 100)])
    assert index.check("enc", 100, 100) == [1]
    assert index.check("enc", 50, 101) == [1]
    assert index.check("enc", 50, 100) == []
    assert index.check("enc", 100.5, 200) == []


def test_capacity_two_with_two_then_three_overlapping() -> None:
    index = make_index({"studio": 2})
    index.add([res(1, "studio", 0, 100)])
    assert index.check("studio", 50, 150) == []
    index.add([res(2, "studio", 50, 150)])
    assert index.check("studio", 60, 70) == [1, 2]
    # Overlaps only job 2 at [100, 120): load there is 1, so it fits.
    assert index.check("studio", 100, 120) == []


def test_capacity_two_counts_concurrent_load_not_overlap_count() -> None:
    index = make_index({"studio": 2})
    index.add([res(1, "studio", 0, 100), res(2, "studio", 100, 200)])
    # Both overlap [50, 150) but never each other: at most 1 at any instant.
    assert index.check("studio", 50, 150) == []
    index.add([res(3, "studio", 50, 150)])
    assert index.check("studio", 90, 110) == [1, 2, 3]
    assert index.check("studio", 40, 60) == [1, 3]


def test_ignore_job_rechecks_an_edit() -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 100, 200)])
    assert index.check("enc", 150, 250) == [1]
    assert index.check("enc", 150, 250, ignore_job=1) == []


def test_remove_job_frees_the_resource() -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 100, 200), res(2, "enc", 300, 400)])
    index.remove_job(1)
    assert index.check("enc", 100, 200) == []
    assert index.for_job(1) == []
    assert index.count("enc") == 1
    index.remove_job(1)  # idempotent


def test_remove_longest_lowers_the_scan_bound_correctly() -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 0, 10_000), res(2, "enc", 5_000, 5_010)])
    index.remove_job(1)
    assert index.check("enc", 5_005, 5_006) == [2]
    assert index.check("enc", 0, 4_000) == []


def test_unknown_resource_and_bad_span_are_validation_errors() -> None:
    index = make_index({"enc": 1}, {"encoders": ("enc",)})
    with pytest.raises(ValidationError, match="unknown resource 'nope'"):
        index.check("nope", 0, 1)
    with pytest.raises(ValidationError) as err:
        index.plan(1, ["nope"], ["missing"], 0, 1)
    assert err.value.problems == ["unknown resource 'nope'", "unknown pool 'missing'"]
    with pytest.raises(ValidationError, match="before it starts"):
        index.check("enc", 10, 5)


# -- plan -------------------------------------------------------------------------


def test_plan_books_resources_and_raises_conflict_with_details() -> None:
    index = make_index({"enc": 1, "studio": 1})
    planned = index.plan(1, ["enc", "studio"], [], 0, 3600)
    assert planned == [res(1, "enc", 0, 3600), res(1, "studio", 0, 3600)]
    index.add(planned)
    with pytest.raises(BookingConflict) as err:
        index.plan(2, ["studio"], [], 1800, 7200)
    assert err.value.job_ids == [1]
    assert err.value.resource == "studio"
    assert "1970-01-01T00:30:00+00:00" in err.value.message
    assert "1970-01-01T02:00:00+00:00" in err.value.message


def test_plan_is_all_or_nothing_and_adds_nothing() -> None:
    index = make_index({"a": 1, "b": 1})
    index.add([res(1, "b", 0, 100)])
    with pytest.raises(BookingConflict):
        index.plan(2, ["a", "b"], [], 0, 100)
    assert index.count("a") == 0
    assert index.plan(2, ["a"], [], 0, 100) == [res(2, "a", 0, 100)]
    assert index.count("a") == 0  # plan never adds


def test_plan_ignores_the_jobs_own_old_reservations() -> None:
    index = make_index({"enc": 1})
    index.add([res(1, "enc", 0, 100)])
    assert index.plan(1, ["enc"], [], 50, 150) == [res(1, "enc", 50, 150)]


def test_plan_does_not_double_book_a_resource_named_twice() -> None:
    index = make_index({"enc": 1, "studio": 2})
    with pytest.raises(BookingConflict) as err:
        index.plan(7, ["enc", "enc"], [], 0, 10)
    assert err.value.job_ids == [7]
    assert len(index.plan(7, ["studio", "studio"], [], 0, 10)) == 2


def test_pool_member_named_explicitly_is_not_chosen_again() -> None:
    index = make_index({"e1": 1, "e2": 1}, {"encoders": ("e1", "e2")})
    planned = index.plan(1, ["e1"], ["encoders"], 0, 10)
    assert [(r.resource, r.pool) for r in planned] == [("e1", None), ("e2", "encoders")]
    planned = index.plan(1, [], ["encoders", "encoders"], 0, 10)
    assert [r.resource for r in planned] == ["e1", "e2"]


def test_pool_picks_fewest_bookings_then_name() -> None:
    index = make_index({"e1": 1, "e2": 1, "e3": 1}, {"encoders": ("e1", "e2", "e3")})
    index.add([res(10, "e1", 1000, 1100), res(11, "e2", 2000, 2100), res(12, "e1", 3000, 3100)])
    (chosen,) = index.plan(1, [], ["encoders"], 0, 10)
    assert (chosen.resource, chosen.pool) == ("e3", "encoders")
    index.add([chosen, res(13, "e3", 5000, 5100)])
    # Loads now e1=2, e2=1, e3=2: e2 wins.
    assert index.plan(2, [], ["encoders"], 0, 10)[0].resource == "e2"


def test_pool_select_hook_override_and_invalid_answers() -> None:
    index = make_index({"e1": 1, "e2": 1, "e3": 1}, {"encoders": ("e1", "e2", "e3")})
    index.add([res(10, "e3", 0, 10)])
    seen: list[tuple[str, list[str]]] = []

    def prefer_e2(pool: str, candidates: list[str]) -> str | None:
        seen.append((pool, candidates))
        return "e2"

    assert index.plan(1, [], ["encoders"], 0, 10, select=prefer_e2)[0].resource == "e2"
    assert seen == [("encoders", ["e1", "e2"])]  # e3 is busy: not a candidate
    for answer in ("e3", "bogus", None):

        def fixed(pool: str, candidates: list[str], answer: str | None = answer) -> str | None:
            return answer

        assert index.plan(1, [], ["encoders"], 0, 10, select=fixed)[0].resource == "e1"


def test_pool_exhausted_names_the_pool_and_the_jobs() -> None:
    index = make_index({"e1": 1, "e2": 1, "other": 1}, {"encoders": ("e1", "e2")})
    index.add([res(10, "e1", 0, 100), res(11, "e2", 50, 150), res(12, "other", 0, 100)])
    with pytest.raises(BookingConflict) as err:
        index.plan(1, [], ["encoders"], 60, 70)
    assert err.value.job_ids == [10, 11]
    assert "pool encoders" in err.value.message


# -- queries ------------------------------------------------------------------------


def test_between_for_job_and_count() -> None:
    index = make_index({"a": 1, "b": 1})
    index.load([res(1, "b", 100, 200), res(2, "a", 100, 150), res(3, "a", 300, 400)])
    assert [r.job_id for r in index.between(None, None)] == [2, 1, 3]
    assert [r.job_id for r in index.between(150, 300)] == [1]
    assert [r.job_id for r in index.between(None, 100)] == []
    assert [r.job_id for r in index.between(350, None)] == [3]
    assert [r.job_id for r in index.between(None, None, ["a"])] == [2, 3]
    assert [r.job_id for r in index.between(None, None, ["b", "a", "b", "zz"])] == [2, 1, 3]
    assert index.between(None, None, []) == []
    assert index.for_job(2) == [res(2, "a", 100, 150)]
    assert index.count("a") == 2
    assert index.count("unknown") == 0


def test_load_replaces_everything() -> None:
    index = make_index({"a": 1})
    index.add([res(1, "a", 0, 10)])
    index.load([res(2, "a", 20, 30)])
    assert index.for_job(1) == []
    assert index.check("a", 0, 10) == []
    assert index.check("a", 25, 26) == [2]


# -- reconfigure -----------------------------------------------------------------------


def test_reconfigure_reports_vanished_resources_and_capacity_drops() -> None:
    index = make_index({"gone": 1, "studio": 2, "ok": 1})
    index.add(
        [
            res(1, "gone", 0, 10),
            res(2, "studio", 0, 100),
            res(3, "studio", 50, 150),
            res(4, "studio", 200, 300),
            res(5, "ok", 0, 10),
        ]
    )
    problems = index.reconfigure(
        {"studio": ResourceConfig("studio", 1), "ok": ResourceConfig("ok", 1)}, {}
    )
    assert [job for job, _ in problems] == [1, 3]
    assert "resource gone no longer exists" in problems[0][1]
    assert "over its capacity 1" in problems[1][1]
    # Reservations stay until the engine removes them; the new config is in force.
    assert index.for_job(1) != []
    with pytest.raises(ValidationError):
        index.check("gone", 0, 1)
    assert index.check("studio", 250, 260) == [4]


# -- property: check agrees with a brute-force reference ------------------------------


def brute_force(
    existing: list[tuple[float, float, int]], capacity: int, start: float, end: float
) -> list[int]:
    """Check every instant that matters (each boundary inside the span) one by one."""

    def holds(a: float, b: float, t: float) -> bool:
        return a <= t < b if a != b else t == a

    instants = {start} | {a for a, _, _ in existing} | {b for _, b, _ in existing}
    culprits: set[int] = set()
    for t in instants:
        if not holds(start, end, t):
            continue
        present = [job for a, b, job in existing if holds(a, b, t)]
        if len(present) >= capacity:
            culprits.update(present)
    return sorted(culprits)


spans = st.tuples(st.integers(0, 60), st.integers(0, 20)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(
    existing=st.lists(spans, max_size=12),
    capacity=st.integers(1, 3),
    query=spans,
)
def test_check_matches_brute_force(
    existing: list[tuple[int, int]], capacity: int, query: tuple[int, int]
) -> None:
    index = make_index({"r": capacity})
    rows = [(float(a), float(b), job) for job, (a, b) in enumerate(existing, start=1)]
    index.add(res(job, "r", a, b) for a, b, job in rows)
    # Remove one to exercise the stale max-duration path.
    if rows:
        index.remove_job(rows[0][2])
        rows = rows[1:]
    assert index.check("r", query[0], query[1]) == brute_force(rows, capacity, *query)


def test_reconfigure_reports_pool_bookings_whose_pool_or_membership_went() -> None:
    index = make_index({"e1": 1, "e2": 1}, {"encoders": ("e1", "e2"), "spare": ("e2",)})
    index.add(
        [
            res(1, "e1", 0, 10, "encoders"),
            res(2, "e2", 0, 10, "spare"),
            res(3, "e2", 20, 30, "encoders"),
            res(4, "e1", 20, 30),
        ]
    )
    resources = {"e1": ResourceConfig("e1", 1), "e2": ResourceConfig("e2", 1)}
    problems = index.reconfigure(resources, {"encoders": PoolConfig("encoders", ("e1",))})
    assert problems == [
        (2, "pool spare no longer exists"),
        (3, "resource e2 is no longer in pool encoders"),
    ]


def test_occupancy_counts_current_holders_and_later_starts() -> None:
    index = BookingIndex({"enc": ResourceConfig("enc", capacity=3)}, {})
    index.add(
        [
            Reservation(1, "enc", 0.0, 10.0),
            Reservation(2, "enc", 10.0, 20.0),
            Reservation(3, "enc", 15.0, 30.0),
            Reservation(4, "enc", 5.0, 5.0),
        ]
    )
    assert index.occupancy("enc", 10.0) == ([2], 1)
    assert index.occupancy("enc", 0.0) == ([1], 3)
    assert index.occupancy("enc", 40.0) == ([], 0)
    assert index.occupancy("nothing", 1.0) == ([], 0)
