"""State-change events: what observers, the SSE stream and metrics receive, after the commit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobd.core.states import JobState


@dataclass(slots=True)
class JobEvent:
    """One committed transition of one job (or a step/progress change when ``kind`` says so).

    Read-only by convention, not ``frozen``: a frozen dataclass is built several times
    slower, and jobd makes six of these for every job it runs."""

    job_id: int
    kind: str  # "state" | "step" | "progress" | "deleted" | "error"
    at: float
    from_state: JobState | None = None
    to_state: JobState | None = None
    cause: str = ""
    actor: str = ""
    step: str | None = None
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "at": self.at,
            "from": None if self.from_state is None else str(self.from_state),
            "to": None if self.to_state is None else str(self.to_state),
            "cause": self.cause,
            "actor": self.actor,
            "step": self.step,
            "data": self.data,
        }
