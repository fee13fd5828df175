"""Every ``jobd`` command and its options (SPEC §6), in the order ``--help`` lists them.

Each command names the function that runs it as ``"module:function"`` inside
:mod:`jobd.client.cli` (imported only when it runs; see :mod:`.parser`).
"""

from __future__ import annotations

from jobd.client.cli.argtypes import (
    duration_arg,
    json_object,
    key_value,
    port_arg,
    positive_int,
    priority_arg,
    state_arg,
    time_arg,
)
from jobd.client.cli.parser import command, new_parser

# Annotations only: importing typing costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: Operations that take job ids (SPEC §2), in the order ``--help`` lists them.
OPERATIONS = {
    "cancel": "cancel jobs (a running job runs its end script first)",
    "stop": "end the live window of running jobs now (end script, then completed)",
    "pause": "pause jobs; resume continues from the interrupted step",
    "resume": "resume paused jobs",
    "retry": "run the failed steps of failed or timed-out jobs again",
    "restart": "run failed, timed-out or paused jobs again from the first step",
    "confirm": "confirm draft or tentative jobs",
    "tentative": "book draft jobs tentatively",
    "unconfirm": "make confirmed jobs tentative again",
    "resubmit": "submit new jobs with the same spec",
    "invoice-ready": "mark completed or canceled jobs ready for invoice",
    "invoiced": "mark jobs invoiced",
    "delete": "delete draft or finished jobs",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole ``jobd`` command line. Given ``argv``, only the command it names gets its
    options (the others are listed, for ``--help`` and "invalid choice")."""
    parser, sub, _ = new_parser(argv)
    _add_daemon_commands(sub)
    _add_submit(sub)
    _add_job_commands(sub)
    _add_edit(sub)
    _add_operations(sub)
    _add_inspect_commands(sub)
    _add_ui_command(sub)
    _add_db_commands(sub)
    return parser


def _add_daemon_commands(sub: Any) -> None:
    command(sub, "run", "admin:cmd_run", "run the daemon in the foreground")
    command(
        sub,
        "check-config",
        "admin:cmd_check_config",
        "validate the configuration and summarise it",
    )
    command(sub, "reload", "admin:cmd_reload", "make the daemon re-read its configuration")


def _add_submit(sub: Any) -> None:
    cmd = command(sub, "submit", "jobs:cmd_submit", "create a job", reading=True)
    cmd.add_argument("workflow", nargs="?", help="the workflow (not with --file)")
    cmd.add_argument(
        "--file",
        metavar="F",
        help="submit every job of a JSON Lines file (one submit body per line; - for stdin)",
    )
    cmd.add_argument(
        "-p",
        "--param",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a job parameter (string value); repeatable",
    )
    cmd.add_argument(
        "--params-json",
        type=json_object,
        metavar="JSON",
        help="parameters as a JSON object (-p values override its keys)",
    )
    for flag, dest, what in (
        ("--asset", "assets", "an asset to hold exclusively"),
        ("--shared-asset", "shared_assets", "an asset to hold shared"),
        ("--resource", "resources", "a resource to book"),
        ("--pool", "pools", "book any one free member of this pool"),
    ):
        cmd.add_argument(
            flag,
            dest=dest,
            action="append",
            default=[],
            metavar=flag[2:].upper(),
            help=f"{what}; repeatable",
        )
    _add_submit_timing(cmd)


def _add_submit_timing(cmd: argparse.ArgumentParser) -> None:
    """``submit``'s times, durations, priority, name, state and ``--wait``."""
    cmd.add_argument(
        "--start",
        type=time_arg,
        metavar="T",
        help="start time: ISO 8601 with a zone, 'now' or +30s/+5m/+2h",
    )
    cmd.add_argument("--end", type=time_arg, metavar="T", help="end of the live window")
    _add_durations(cmd)
    cmd.add_argument("--priority", type=priority_arg, metavar="N", help="-1000..1000 (0)")
    cmd.add_argument("--name", help="a name for the job")
    state = cmd.add_mutually_exclusive_group()
    state.add_argument("--draft", action="store_true", help="submit as draft (nothing booked)")
    state.add_argument(
        "--tentative",
        action="store_true",
        help="submit tentative (booked, not run until confirmed)",
    )
    cmd.add_argument(
        "--wait", action="store_true", help="follow the job to its end; exit 0 only if it completed"
    )


def _add_durations(cmd: argparse.ArgumentParser) -> None:
    for flag in ("--preroll", "--postroll", "--timeout", "--lock-timeout"):
        cmd.add_argument(flag, type=duration_arg, metavar="S", help="seconds, or 30s/5m/2h")


def _add_filters(cmd: argparse.ArgumentParser, *, acting: bool = False) -> None:
    """``--state S``... ``--workflow W`` ``--asset A`` ``--resource R`` ``--since T``
    ``--until T`` ``--search TEXT``; every one given must hold."""
    which = "act on" if acting else "only"
    group = cmd.add_argument_group("filters (every one given must hold)")
    group.add_argument(
        "--state",
        action="append",
        type=state_arg,
        default=[],
        metavar="S",
        help=f"{which} jobs in state S; repeatable",
    )
    group.add_argument("--workflow", metavar="W", help=f"{which} jobs of workflow W")
    group.add_argument("--asset", metavar="A", help=f"{which} jobs holding asset A")
    group.add_argument(
        "--resource", metavar="R", help=f"{which} jobs asking for or booked on resource (or pool) R"
    )
    group.add_argument(
        "--since", type=time_arg, metavar="T", help="start (else creation) at or after T"
    )
    group.add_argument(
        "--until", type=time_arg, metavar="T", help="start (else creation) at or before T"
    )
    group.add_argument("--search", metavar="TEXT", help="name contains TEXT (any case)")


def _add_job_commands(sub: Any) -> None:
    cmd = command(sub, "list", "jobs:cmd_list", "list jobs, newest first", reading=True)
    _add_filters(cmd)
    cmd.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="at most N jobs (50)"
    )
    cmd.add_argument(
        "--cursor",
        type=positive_int,
        metavar="ID",
        help="continue below this job id (printed when more remain)",
    )
    cmd = command(
        sub, "show", "jobs:cmd_show", "one job: steps, reservations, history", reading=True
    )
    cmd.add_argument("job_id", type=positive_int, metavar="ID")
    cmd = command(sub, "logs", "logs:cmd_logs", "a job's log lines", reading=True)
    cmd.add_argument("job_id", type=positive_int, metavar="ID")
    cmd.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines, following the job's events, until it has finished",
    )
    cmd.add_argument(
        "--tail", type=positive_int, metavar="N", help="only the last N lines (then -f goes on)"
    )


def _add_edit(sub: Any) -> None:
    cmd = command(
        sub, "edit", "jobs:cmd_edit", "change a draft, tentative or confirmed job", reading=True
    )
    cmd.add_argument("job_id", type=positive_int, metavar="ID")
    cmd.add_argument(
        "-p",
        "--param",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="set one parameter (the others stay); repeatable",
    )
    for flag, dest, what in (
        ("--asset", "assets", "the assets to hold exclusively"),
        ("--shared-asset", "shared_assets", "the assets to hold shared"),
        ("--resource", "resources", "the resources to book"),
        ("--pool", "pools", "the pools to book from"),
    ):
        cmd.add_argument(
            flag,
            dest=dest,
            action="append",
            metavar=flag[2:].upper(),
            help=f"{what} (replaces the list); repeatable",
        )
    cmd.add_argument("--start", type=time_arg, metavar="T", help="new start time")
    cmd.add_argument("--end", type=time_arg, metavar="T", help="new end of the live window")
    _add_durations(cmd)
    cmd.add_argument("--priority", type=priority_arg, metavar="N", help="-1000..1000")
    cmd.add_argument("--name", help="a new name")


def _add_operations(sub: Any) -> None:
    for name, help_text in OPERATIONS.items():
        cmd = command(sub, name, "operations:cmd_operation", help_text)
        cmd.add_argument(
            "job_ids",
            nargs="*",
            type=positive_int,
            metavar="ID",
            help="the jobs; or none, and filters: every job that matches",
        )
        _add_filters(cmd, acting=True)
        cmd.set_defaults(operation=name)


def _add_inspect_commands(sub: Any) -> None:
    command(sub, "queue", "views:cmd_queue", "the run queue and workers", reading=True)
    command(sub, "locks", "views:cmd_locks", "asset locks: holders and waiters", reading=True)
    command(sub, "resources", "views:cmd_resources", "resources and their use", reading=True)
    cmd = command(
        sub, "bookings", "views:cmd_bookings", "reservations in a time range", reading=True
    )
    cmd.add_argument("--from", dest="start", type=time_arg, metavar="T")
    cmd.add_argument("--to", dest="end", type=time_arg, metavar="T")
    cmd = command(
        sub,
        "schedules",
        "views:cmd_schedules",
        "schedules: next and last firing, missed and skipped; run, pause or resume one",
        reading=True,
    )
    cmd.add_argument(
        "action",
        nargs="?",
        choices=("run", "pause", "resume"),
        help="run: fire NAME now; pause/resume: stop and restart its firings",
    )
    cmd.add_argument("name", nargs="?", metavar="NAME", help="the schedule")
    command(
        sub, "plugins", "views:cmd_plugins", "plugins, their actions and load errors", reading=True
    )
    command(
        sub,
        "nodes",
        "views:cmd_nodes",
        "the cluster's nodes: tags, state, last renewal, running jobs, workers",
        reading=True,
    )
    _add_watch(sub)


def _add_watch(sub: Any) -> None:
    cmd = command(sub, "watch", "watch:cmd_watch", "a live view of the queue and jobs (Ctrl-C)")
    cmd.add_argument(
        "--interval",
        type=duration_arg,
        default=2.0,
        metavar="S",
        help="refresh at least this often (2 s)",
    )
    cmd.add_argument("--limit", type=positive_int, default=15, metavar="N", help="jobs shown (15)")


def _add_ui_command(sub: Any) -> None:
    cmd = command(
        sub,
        "ui",
        "admin:cmd_ui",
        "serve the web monitor on 127.0.0.1 through the Unix socket; prints a one-time URL",
    )
    cmd.add_argument(
        "--port", type=port_arg, default=0, metavar="N", help="port on 127.0.0.1 (0: any free)"
    )


def _add_db_commands(sub: Any) -> None:
    cmd = command(
        sub,
        "db",
        "admin:cmd_db",
        "database maintenance: `db copy --to URL` moves a stopped installation's SQLite"
        " database into an empty PostgreSQL one",
    )
    cmd.add_argument("action", choices=["copy"])
    cmd.add_argument(
        "--to", required=True, metavar="URL", help="postgresql:// URL of an empty database"
    )
