"""The transition table: every (state, operation) pair, allowed and refused."""

from __future__ import annotations

import pytest

from jobd.core.errors import InvalidTransition
from jobd.core.states import (
    PUBLIC_OPERATIONS,
    TRANSITIONS,
    JobState,
    allowed_operations,
    check_transition,
)

S = JobState

# SPEC §2, written out again on purpose: the table in states.py must match it.
EXPECTED_SOURCES = {
    "tentative": {S.DRAFT},
    "confirm": {S.DRAFT, S.TENTATIVE},
    "unconfirm": {S.CONFIRMED},
    "cancel": set(S) - {S.COMPLETED, S.CANCELED, S.READY_FOR_INVOICE, S.INVOICED},
    "stop": {S.RUNNING},
    "pause": {S.CONFIRMED, S.PENDING, S.QUEUED, S.WAITING_FOR_LOCK, S.RUNNING},
    "resume": {S.PAUSED},
    "retry": {S.FAILED, S.TIMED_OUT},
    "restart": {S.FAILED, S.TIMED_OUT, S.PAUSED},
    "resubmit": set(S),
    "invoice-ready": {S.COMPLETED, S.CANCELED},
    "invoiced": {S.READY_FOR_INVOICE},
    "delete": {S.DRAFT, S.COMPLETED, S.FAILED, S.TIMED_OUT, S.CANCELED},
}


def test_state_values_are_the_spec_names() -> None:
    assert [s.value for s in S] == [
        "draft",
        "tentative",
        "confirmed",
        "pending",
        "queued",
        "waiting-for-lock",
        "running",
        "cancel-requested",
        "paused",
        "completed",
        "failed",
        "timed-out",
        "canceled",
        "ready-for-invoice",
        "invoiced",
    ]


def test_public_operations_are_the_spec_operations() -> None:
    assert set(PUBLIC_OPERATIONS) == set(EXPECTED_SOURCES)


@pytest.mark.parametrize("operation", sorted(EXPECTED_SOURCES))
@pytest.mark.parametrize("state", list(S))
def test_every_pair(operation: str, state: JobState) -> None:
    if state in EXPECTED_SOURCES[operation]:
        check_transition(operation, state)
        assert operation in allowed_operations(state)
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(operation, state)
        message = str(info.value)
        assert state.value in message
        for allowed in allowed_operations(state):
            assert allowed in message
        assert operation not in allowed_operations(state)


@pytest.mark.parametrize(
    ("operation", "source", "target"),
    [
        ("due", S.CONFIRMED, S.QUEUED),
        ("due", S.CONFIRMED, S.PENDING),
        ("admitted", S.PENDING, S.QUEUED),
        ("picked", S.QUEUED, S.RUNNING),
        ("picked", S.QUEUED, S.WAITING_FOR_LOCK),
        ("lock-granted", S.WAITING_FOR_LOCK, S.RUNNING),
        ("finished", S.RUNNING, S.COMPLETED),
        ("finished", S.RUNNING, S.FAILED),
        ("finished", S.RUNNING, S.TIMED_OUT),
        ("finished", S.CANCEL_REQUESTED, S.CANCELED),
    ],
)
def test_scheduler_transitions(operation: str, source: JobState, target: JobState) -> None:
    check_transition(operation, source, target)


def test_wrong_target_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="cannot lead from confirmed to running"):
        check_transition("due", S.CONFIRMED, S.RUNNING)


def test_unknown_operation_is_refused() -> None:
    with pytest.raises(InvalidTransition, match="unknown operation"):
        check_transition("explode", S.DRAFT)


def test_never_run_again_states_cannot_be_resumed_or_retried() -> None:
    for state in (S.COMPLETED, S.CANCELED, S.READY_FOR_INVOICE, S.INVOICED):
        for op in ("resume", "retry", "restart", "confirm"):
            assert op not in allowed_operations(state)
    assert set(TRANSITIONS["submit"].targets) == {S.DRAFT, S.TENTATIVE, S.CONFIRMED}
