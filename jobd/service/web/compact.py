"""Bookings in columns: the compact answer of ``GET /v1/bookings?form=columns``.

The timeline asks for every booking in its view, 10,000 and more. As items (SPEC §2) each
booking repeats its job's name, state and window and carries four ISO 8601 strings: about
270 bytes, and the daemon's time goes into formatting the times. In columns each job is
written once, resource and pool names once, and a booking is five numbers; times are Unix
milliseconds (integers, as JavaScript's ``Date`` counts), the one place the API does not write
ISO 8601, because this form exists to be cheap to make, send and read (an integer is written
four times faster than a float).

The shape (docs/api.md says the same)::

    {"form": "columns", "count": N,
     "jobs": {"id": [...], "name": [...], "state": [...], "start_at": [...], "end_at": [...]},
     "resources": [names], "pools": [names],
     "bookings": {"job": [...], "resource": [...], "pool": [...], "start": [...], "end": [...]}}

``bookings.job`` indexes ``jobs``; ``bookings.resource`` indexes ``resources``;
``bookings.pool`` indexes ``pools`` or is null (booked by resource name). Bookings keep the
order of the items form (by start); jobs are in the order of their first booking.
"""

from __future__ import annotations

from typing import Any

#: The values of ``form``: the list shape of SPEC §2, or columns.
FORMS = ("items", "columns")


def booking_resources(values: list[str] | None) -> list[str] | None:
    """``?resource=a&resource=b`` or ``?resource=a,b`` as names; None (every resource) when
    absent. A name that is not configured finds no booking (it is not an error: the page
    asks for the rows it shows, and a reload may have removed one)."""
    if values is None:
        return None
    return [name for raw in values for name in (v.strip() for v in raw.split(",")) if name]


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value * 1000)


def booking_columns(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns form of the engine's bookings (``Engine.bookings``: times as POSIX floats)."""
    jobs: dict[int, int] = {}
    job_cols: dict[str, list[Any]] = {k: [] for k in ("id", "name", "state", "start_at", "end_at")}
    names: dict[str, int] = {}
    pools: dict[str, int] = {}
    cols: dict[str, list[Any]] = {k: [] for k in ("job", "resource", "pool", "start", "end")}
    for b in items:
        job_id = b["job_id"]
        index = jobs.get(job_id)
        if index is None:
            index = jobs[job_id] = len(jobs)
            job_cols["id"].append(job_id)
            job_cols["name"].append(b["job_name"])
            job_cols["state"].append(b["state"])
            job_cols["start_at"].append(_ms(b["start_at"]))
            job_cols["end_at"].append(_ms(b["end_at"]))
        cols["job"].append(index)
        cols["resource"].append(names.setdefault(b["resource"], len(names)))
        pool = b["pool"]
        cols["pool"].append(None if pool is None else pools.setdefault(pool, len(pools)))
        cols["start"].append(round(b["start"] * 1000))
        cols["end"].append(round(b["end"] * 1000))
    return {
        "form": "columns",
        "count": len(items),
        "jobs": job_cols,
        "resources": list(names),
        "pools": list(pools),
        "bookings": cols,
    }
