"""Bookings and live windows with the real daemon and the real CLI (subprocesses).

Readiness is READY=1 on our own NOTIFY_SOCKET (tests/e2e.py); nothing sleeps.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests import e2e

WORKFLOWS = (
    e2e.DEMO_WORKFLOWS
    + """
[resources.studio]
capacity = 1

[resources.enc-1]
[resources.enc-2]

[pools.encoders]
members = ["enc-1", "enc-2"]
"""
)


SCHEDULE = """
[[schedules]]
name = "every-second"
workflow = "hold"
interval = 1
overlap = "skip"
params = {{ path = "{gate}" }}
"""


def iso(hour: int, minute: int = 0) -> str:
    return f"2099-01-01T{hour:02d}:{minute:02d}:00+01:00"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_conflicts_bookings_resources_schedules_and_a_live_window(base: Path) -> None:
    gate = base / "gate"
    config = WORKFLOWS + SCHEDULE.format(gate=gate)
    with e2e.running_daemon(base, workflows=config) as daemon:

        def book(*args: str) -> str:
            done = daemon.cli("submit", "demo", "-p", "who=x", "--tentative", *args)
            assert done.returncode == 0, done.stderr
            return done.stdout.strip()

        first = book(
            "--resource", "studio", "--start", iso(10), "--end", iso(11), "--name", "morning"
        )
        clash = daemon.cli(
            "submit",
            "demo",
            "-p",
            "who=x",
            "--resource",
            "studio",
            "--start",
            iso(10, 30),
            "--end",
            iso(12),
        )
        assert clash.returncode == 1, clash.stdout + clash.stderr
        assert f"jobs {first}" in clash.stderr and "studio" in clash.stderr
        # Touching is no conflict; preroll reaching back into the first booking is.
        second = book("--resource", "studio", "--start", iso(11), "--end", iso(12))
        clash = daemon.cli(
            "submit",
            "demo",
            "-p",
            "who=x",
            "--resource",
            "studio",
            "--start",
            iso(12, 30),
            "--end",
            iso(13),
            "--preroll",
            "31m",
        )
        assert clash.returncode == 1 and f"jobs {second}" in clash.stderr
        pooled = book("--pool", "encoders", "--start", iso(10), "--end", iso(11))
        # The conflict on an operation names the job too.
        draft = daemon.cli(
            "submit",
            "demo",
            "-p",
            "who=x",
            "--draft",
            "--resource",
            "studio",
            "--start",
            iso(10),
            "--end",
            iso(11),
        )
        assert draft.returncode == 0
        refused = daemon.cli("confirm", draft.stdout.strip())
        assert refused.returncode == 1 and f"jobs {first}" in refused.stderr

        listed = daemon.cli_json("bookings", "--from", iso(10), "--to", iso(11))["items"]
        assert [(str(b["job_id"]), b["resource"]) for b in listed] == [
            (pooled, "enc-1"),
            (first, "studio"),
        ]
        morning = next(b for b in listed if str(b["job_id"]) == first)
        assert morning["job_name"] == "morning" and morning["state"] == "tentative"
        assert utc(morning["start"]) == utc(iso(10)) and utc(morning["end"]) == utc(iso(11))
        later = daemon.cli_json("bookings", "--from", iso(11), "--to", iso(13))["items"]
        assert [str(b["job_id"]) for b in later] == [second]
        table = daemon.cli("bookings", "--from", iso(10), "--to", iso(13))
        assert table.returncode == 0 and "morning" in table.stdout

        resources = {r["name"]: r for r in daemon.cli_json("resources")["items"]}
        assert resources["studio"]["capacity"] == 1
        assert resources["studio"]["upcoming"] == 2
        assert resources["enc-1"]["pools"] == ["encoders"]
        assert (resources["enc-1"]["upcoming"], resources["enc-2"]["upcoming"]) == (1, 0)

        # A live window of about two seconds, booked and run to its end.
        done = daemon.cli(
            "submit",
            "demo",
            "-p",
            "who=w",
            "--resource",
            "studio",
            "--start",
            "+1s",
            "--end",
            "+2s",
            "--wait",
        )
        assert done.returncode == 0, done.stderr
        job = daemon.cli_json("show", done.stdout.split()[0])
        assert job["state"] == "completed"
        assert [h["to"] for h in job["history"]] == ["confirmed", "queued", "running", "completed"]
        assert utc(job["history"][-1]["at"]) >= utc(job["end_at"])
        assert job["reservations"] == []

        # The schedule's first job still holds (it waits for the gate): firings are skipped,
        # on record.
        def skipped() -> bool:
            found = daemon.cli_json("schedules")["items"][0]
            return bool(found["skipped"] >= 1)

        e2e.wait_until(skipped, what="a skipped firing")
        schedule = daemon.cli_json("schedules")["items"][0]
        assert schedule["name"] == "every-second" and schedule["last_job_id"] is not None
        assert any(
            e["kind"] == "skipped" and "still running" in e["reason"] for e in schedule["recent"]
        )
        assert all(utc(e["fire_time"]) <= utc(e["at"]) for e in schedule["recent"])
        table = e2e.run_cli(
            "schedules", env=e2e.jobd_env(JOBD_SOCKET=str(daemon.layout.socket), COLUMNS="200")
        )
        assert table.returncode == 0 and "every-second" in table.stdout
        gate.touch()
        e2e.wait_until(
            lambda: daemon.cli_json("show", str(schedule["last_job_id"]))["state"] == "completed",
            what="the scheduled job completed",
        )
