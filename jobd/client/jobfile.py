"""``jobd submit --file F``: a JSON Lines file of submit bodies, sent in batches (SPEC §6).

Each non-blank line is one ``POST /v1/jobs`` body (``{"workflow": ...}``).
The lines go to ``POST /v1/batch/jobs`` in batches of at most
:data:`BATCH` jobs and :data:`BATCH_BYTES` bytes (the daemon's limits); each
batch is stored all or nothing. A refusal names the file and the line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence

from jobd.client.remote import ApiError, Client

# Annotations only: importing typing costs the CLI's start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

#: Jobs per request: the daemon's limit for ``POST /v1/batch/jobs``.
BATCH = 10_000
#: Bytes per request, under the daemon's 16 MiB body limit for that route.
BATCH_BYTES = 15 * 1024 * 1024
#: A file with more jobs than this shows a progress bar (when stderr is a terminal).
PROGRESS_FROM = 1_000


class JobFileError(Exception):
    """The file cannot be read or a line is not a job; the message names file and line."""


class Line:
    """One job of the file: its line number, body, and encoded size."""

    __slots__ = ("body", "number", "size")

    def __init__(self, number: int, body: dict[str, Any], size: int) -> None:
        self.number, self.body, self.size = number, body, size


def read_jobs(name: str, stream: TextIO) -> list[Line]:
    """Every job of the file; :class:`JobFileError` at the first line that is not one."""
    jobs: list[Line] = []
    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise JobFileError(f"{name}:{number}: not valid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise JobFileError(f"{name}:{number}: a job is a JSON object, not {text.strip()[:40]}")
        jobs.append(Line(number, body, len(text)))
    if not jobs:
        raise JobFileError(f"{name}: no jobs (one JSON object per line)")
    return jobs


def batches(jobs: Sequence[Line]) -> Iterator[list[Line]]:
    """Consecutive runs of at most :data:`BATCH` jobs and about :data:`BATCH_BYTES`."""
    batch: list[Line] = []
    size = 0
    for job in jobs:
        if batch and (len(batch) >= BATCH or size + job.size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(job)
        size += job.size + 2
    if batch:
        yield batch


def submit_all(
    client: Client,
    name: str,
    jobs: Sequence[Line],
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Submit every batch in order; the stored jobs. A refused batch raises
    :class:`JobFileError` saying which line, and that the earlier batches were stored."""
    stored: list[dict[str, Any]] = []
    for batch in batches(jobs):
        try:
            answer = client.submit_batch([line.body for line in batch])
        except ApiError as exc:
            raise JobFileError(_refusal(name, batch, exc, len(stored))) from None
        stored.extend(answer.get("items") or [])
        if progress is not None:
            progress(len(stored), len(jobs))
    return stored


def _refusal(name: str, batch: list[Line], exc: ApiError, stored: int) -> str:
    index = _index_of(exc)
    where, message = name, exc.message
    if isinstance(index, int) and 0 <= index < len(batch):
        where = f"{name}:{batch[index].number}"
        message = message.removeprefix(f"jobs[{index}]: ")
    span = f"lines {batch[0].number}-{batch[-1].number}"
    kept = f"the {stored} jobs before line {batch[0].number} were submitted" if stored else ""
    return f"{where}: {message}\nnothing of {span} was stored" + (f"; {kept}" if kept else "")


def _index_of(exc: ApiError) -> int | None:
    """Which job of the batch was refused: ``details.index`` (the engine's checks), else the
    ``loc`` of the first body error (``["body", "jobs", 3, "priority"]``)."""
    index = exc.details.get("index")
    if isinstance(index, int):
        return index
    for error in exc.details.get("errors") or []:
        loc = error.get("loc") or []
        if len(loc) > 2 and loc[:2] == ["body", "jobs"] and str(loc[2]).isdigit():
            return int(loc[2])
    return None


class ProgressBar:
    """``submitted [##########----------] 50,000/100,000`` redrawn in place on stderr."""

    WIDTH = 30

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int) -> None:
        filled = self.WIDTH * done // max(total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\rsubmitted [{bar}] {done:,}/{total:,}{end}")
        self.stream.flush()
