"""The ``jobd`` command: the daemon (``jobd run``) and its client (everything else). SPEC §6.

Exit codes: 0 ok; 1 refused or failed (the reason on stderr); 2 usage;
3 daemon unreachable; 130 interrupted.

Start-up cost matters (an operator types ``jobd list`` dozens of times an
hour), so this module imports only the standard library and jobd's light
modules: requests go through :mod:`jobd.client.wire` (stdlib sockets, not httpx),
``rich`` arrives only to draw a table on a terminal (a pipe gets plain
lines from :mod:`jobd.client.textui`), and the daemon stack (FastAPI, uvicorn,
APScheduler, aiosqlite, the engine) only with ``jobd run``; a test checks that.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator

from jobd.client.remote import ApiError, Client, DaemonUnreachable, resolve_endpoint
from jobd.core.errors import JobdError, ValidationError
from jobd.core.timefmt import format_time, parse_duration, parse_time

# Annotations only: importing typing and pathlib costs start-up (see jobd.client.wire).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

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
#: States after which a job does not run again by itself: ``submit --wait`` and ``logs -f`` stop.
FINISHED = frozenset(
    {"completed", "failed", "timed-out", "canceled", "ready-for-invoice", "invoiced"}
)

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A combination of options argparse cannot express (exit 2)."""


# --------------------------------------------------------------------------- argument types


def _time_arg(text: str) -> str:
    """``--start``/``--end``/``--from``/``--to``: ISO with a zone, ``now`` or ``+5m`` → ISO UTC."""
    try:
        return str(format_time(parse_time(text)))
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _priority_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"priority {text!r} is not an integer") from None
    if not -1000 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"priority {value} is outside -1000..1000")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"parameter {text!r} is not key=value")
    return key, value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--params-json is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--params-json must be a JSON object")
    return value


# --------------------------------------------------------------------------- parser


def _common_options() -> argparse.ArgumentParser:
    """Where the daemon is; accepted before and after the command (SUPPRESS keeps either)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection")
    group.add_argument(
        "--socket",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="daemon's Unix socket (env JOBD_SOCKET)",
    )
    group.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="daemon's TCP URL, e.g. http://host:8470 (env JOBD_URL)",
    )
    group.add_argument(
        "--token", default=argparse.SUPPRESS, help="bearer token for --url (env JOBD_TOKEN)"
    )
    group.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help="config file (env JOBD_CONFIG; default /etc/jobd/jobd.toml)",
    )
    return common


class Parser(argparse.ArgumentParser):
    """argparse, but a bad value prints its one useful line and a hint, not the usage block:
    ``jobd submit: error: argument --start: time ... has no zone; add Z or +01:00``."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        print(f"{self.prog}: see '{self.prog} --help'", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


#: Options whose value may start with "-" (``--start -5m``: five minutes ago).
_TIME_OPTIONS = frozenset({"--start", "--end", "--from", "--to", "--since", "--until"})


def _join_dash_values(argv: list[str]) -> list[str]:
    """``--start -5m`` → ``--start=-5m``: argparse would take ``-5m`` for an option."""
    out: list[str] = []
    values = iter(argv)
    for arg in values:
        if arg in _TIME_OPTIONS:
            value = next(values, None)
            if value is not None and value.startswith("-") and value != "--":
                out.append(f"{arg}={value}")
                continue
            out.append(arg)
            if value is not None:
                out.append(value)
            continue
        out.append(arg)
    return out


#: Options of the main parser that take a value (skipped when looking for the command).
_VALUE_OPTIONS = frozenset({"--socket", "--url", "--token", "--config"})


def _command_word(argv: list[str]) -> str | None:
    """The command ``argv`` names (its first word that is not an option or an option's value)."""
    values = iter(argv)
    for arg in values:
        if arg in _VALUE_OPTIONS:
            next(values, None)
        elif arg == "--":
            return next(values, None)
        elif not arg.startswith("-"):
            return arg
    return None


class _Skipped(argparse.ArgumentParser):
    """Stands in for the parser of a command that is not being run: its options are not
    built (a tenth of ``jobd list``'s start-up went to building the other 30 commands')."""

    def __init__(self) -> None:  # nothing to set up: only the no-ops below are called
        pass

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def add_mutually_exclusive_group(self, *args: Any, **kwargs: Any) -> Any:
        return self

    def set_defaults(self, **kwargs: Any) -> None:
        pass


def _quick_gettext() -> None:
    """argparse asks gettext for each of its messages, and gettext looks for translation
    files on disk every time it finds none (~100 look-ups, several ``stat`` each, per
    ``jobd`` run). jobd's own messages are English: so are argparse's here."""
    setattr(argparse, "_", lambda message: message)  # noqa: B010 (not in typeshed)
    setattr(argparse, "ngettext", lambda one, many, n: one if n == 1 else many)  # noqa: B010


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The whole ``jobd`` command line. Given ``argv``, only the command it names gets its
    options (the others are listed, for ``--help`` and "invalid choice")."""
    _quick_gettext()
    common = _common_options()
    parser = Parser(
        prog="jobd",
        parents=[common],
        description="jobd: job scheduler daemon for media operations, and its client.",
        epilog="exit codes: 0 ok, 1 refused or failed, 2 usage, 3 daemon unreachable",
    )
    parser.add_argument(
        "--version",
        action="store_true",
        help="print the client's version, and the daemon's when it is reachable",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    setattr(sub, "jobd_only", None if argv is None else _command_word(argv))  # noqa: B010
    _add_daemon_commands(sub, common)
    _add_submit(sub, common)
    _add_job_commands(sub, common)
    _add_edit(sub, common)
    _add_operations(sub, common)
    _add_inspect_commands(sub, common)
    _add_ui_command(sub, common)
    _add_db_commands(sub, common)
    return parser


def _command(
    sub: Any,
    common: argparse.ArgumentParser,
    name: str,
    func: Command,
    help_text: str,
    *,
    reading: bool = False,
) -> argparse.ArgumentParser:
    only = getattr(sub, "jobd_only", None)
    if only is not None and name != only:
        sub.add_parser(name, help=help_text, add_help=False)
        return _Skipped()
    cmd: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=help_text, description=help_text
    )
    cmd.set_defaults(func=func)
    if reading:
        cmd.add_argument("--json", action="store_true", help="print the API's JSON")
    return cmd


def _add_daemon_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _command(sub, common, "run", cmd_run, "run the daemon in the foreground")
    _command(
        sub, common, "check-config", cmd_check_config, "validate the configuration and summarise it"
    )
    _command(sub, common, "reload", cmd_reload, "make the daemon re-read its configuration")


def _add_submit(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = _command(sub, common, "submit", cmd_submit, "create a job", reading=True)
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
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="a job parameter (string value); repeatable",
    )
    cmd.add_argument(
        "--params-json",
        type=_json_object,
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
    cmd.add_argument(
        "--start",
        type=_time_arg,
        metavar="T",
        help="start time: ISO 8601 with a zone, 'now' or +30s/+5m/+2h",
    )
    cmd.add_argument("--end", type=_time_arg, metavar="T", help="end of the live window")
    for flag in ("--preroll", "--postroll", "--timeout", "--lock-timeout"):
        cmd.add_argument(flag, type=_duration_arg, metavar="S", help="seconds, or 30s/5m/2h")
    cmd.add_argument("--priority", type=_priority_arg, metavar="N", help="-1000..1000 (0)")
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


#: The list filters (SPEC §6, §7): flag → its key in the query / the batch filter.
FILTERS = ("state", "workflow", "asset", "resource", "since", "until", "search")


def _add_filters(cmd: argparse.ArgumentParser, *, acting: bool = False) -> None:
    """``--state S``... ``--workflow W`` ``--asset A`` ``--resource R`` ``--since T``
    ``--until T`` ``--search TEXT``; every one given must hold."""
    which = "act on" if acting else "only"
    group = cmd.add_argument_group("filters (every one given must hold)")
    group.add_argument(
        "--state",
        action="append",
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
        "--since", type=_time_arg, metavar="T", help="start (else creation) at or after T"
    )
    group.add_argument(
        "--until", type=_time_arg, metavar="T", help="start (else creation) at or before T"
    )
    group.add_argument("--search", metavar="TEXT", help="name contains TEXT (any case)")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given (none: empty)."""
    return {key: getattr(args, key) for key in FILTERS if getattr(args, key, None)}


def _add_job_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = _command(sub, common, "list", cmd_list, "list jobs, newest first", reading=True)
    _add_filters(cmd)
    cmd.add_argument(
        "--limit", type=_positive_int, default=50, metavar="N", help="at most N jobs (50)"
    )
    cmd.add_argument(
        "--cursor",
        type=_positive_int,
        metavar="ID",
        help="continue below this job id (printed when more remain)",
    )
    cmd = _command(
        sub, common, "show", cmd_show, "one job: steps, reservations, history", reading=True
    )
    cmd.add_argument("job_id", type=_positive_int, metavar="ID")
    cmd = _command(sub, common, "logs", cmd_logs, "a job's log lines", reading=True)
    cmd.add_argument("job_id", type=_positive_int, metavar="ID")
    cmd.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new lines, following the job's events, until it has finished",
    )
    cmd.add_argument(
        "--tail", type=_positive_int, metavar="N", help="only the last N lines (then -f goes on)"
    )


def _add_edit(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = _command(
        sub, common, "edit", cmd_edit, "change a draft, tentative or confirmed job", reading=True
    )
    cmd.add_argument("job_id", type=_positive_int, metavar="ID")
    cmd.add_argument(
        "-p",
        "--param",
        action="append",
        type=_key_value,
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
    cmd.add_argument("--start", type=_time_arg, metavar="T", help="new start time")
    cmd.add_argument("--end", type=_time_arg, metavar="T", help="new end of the live window")
    for flag in ("--preroll", "--postroll", "--timeout", "--lock-timeout"):
        cmd.add_argument(flag, type=_duration_arg, metavar="S", help="seconds, or 30s/5m/2h")
    cmd.add_argument("--priority", type=_priority_arg, metavar="N", help="-1000..1000")
    cmd.add_argument("--name", help="a new name")


def _add_operations(sub: Any, common: argparse.ArgumentParser) -> None:
    for name, help_text in OPERATIONS.items():
        cmd = _command(sub, common, name, cmd_operation, help_text)
        cmd.add_argument(
            "job_ids",
            nargs="*",
            type=_positive_int,
            metavar="ID",
            help="the jobs; or none, and filters: every job that matches",
        )
        _add_filters(cmd, acting=True)
        cmd.set_defaults(operation=name)


def _add_db_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = _command(
        sub,
        common,
        "db",
        cmd_db,
        "database maintenance: `db copy --to URL` moves a stopped installation's SQLite"
        " database into an empty PostgreSQL one",
    )
    cmd.add_argument("action", choices=["copy"])
    cmd.add_argument(
        "--to", required=True, metavar="URL", help="postgresql:// URL of an empty database"
    )


def _add_inspect_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    _command(sub, common, "queue", cmd_queue, "the run queue and workers", reading=True)
    _command(sub, common, "locks", cmd_locks, "asset locks: holders and waiters", reading=True)
    _command(sub, common, "resources", cmd_resources, "resources and their use", reading=True)
    cmd = _command(
        sub, common, "bookings", cmd_bookings, "reservations in a time range", reading=True
    )
    cmd.add_argument("--from", dest="start", type=_time_arg, metavar="T")
    cmd.add_argument("--to", dest="end", type=_time_arg, metavar="T")
    cmd = _command(
        sub,
        common,
        "schedules",
        cmd_schedules,
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
    _command(
        sub, common, "plugins", cmd_plugins, "plugins, their actions and load errors", reading=True
    )
    _command(
        sub,
        common,
        "nodes",
        cmd_nodes,
        "the cluster's nodes: tags, state, last renewal, running jobs, workers",
        reading=True,
    )
    cmd = _command(sub, common, "watch", cmd_watch, "a live view of the queue and jobs (Ctrl-C)")
    cmd.add_argument(
        "--interval",
        type=_duration_arg,
        default=2.0,
        metavar="S",
        help="refresh at least this often (2 s)",
    )
    cmd.add_argument("--limit", type=_positive_int, default=15, metavar="N", help="jobs shown (15)")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run one ``jobd`` command; returns the exit code (argparse's own exits included)."""
    argv = _join_dash_values(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    func: Command | None = getattr(args, "func", None)
    if getattr(args, "version", False):
        func = cmd_version
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return _dispatch(func, args, parser)


def _dispatch(func: Command, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return func(args)
    except UsageError as exc:
        _err(f"error: {exc}")
        return EXIT_USAGE
    except DaemonUnreachable as exc:
        _err(str(exc))
        return EXIT_UNREACHABLE
    except ApiError as exc:
        _err(exc.message)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `jobd list | head`: the reader left; say nothing more, and tell Python not to either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _err(message: str) -> None:
    print(f"jobd: {message}", file=sys.stderr)


def _client(args: argparse.Namespace) -> Client:
    endpoint = resolve_endpoint(
        socket=getattr(args, "socket", None),
        url=getattr(args, "url", None),
        token=getattr(args, "token", None),
        config=getattr(args, "config", None),
    )
    return Client(endpoint)


def _config_path(args: argparse.Namespace) -> Path:
    """``--config``, else ``$JOBD_CONFIG``, else ``/etc/jobd/jobd.toml`` (as the daemon does)."""
    from jobd.config import resolve_config_path

    return resolve_config_path(getattr(args, "config", None))


def _emit(item: Any, *, stderr: bool = False) -> None:
    from jobd.client.textui import emit

    emit(item, stderr=stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


# --------------------------------------------------------------------------- daemon side


def cmd_run(args: argparse.Namespace) -> int:
    """``jobd run``: the daemon stack is imported here and nowhere else in the CLI."""
    daemon = importlib.import_module("jobd.service.daemon")
    # The daemon resolves --config / $JOBD_CONFIG / the default path itself.
    return int(daemon.main(getattr(args, "config", None)))


def cmd_version(args: argparse.Namespace) -> int:
    """``jobd --version``: this client's version, then the daemon's if one answers (exit 0
    either way: the client's version is known)."""
    from jobd import __version__

    print(f"jobd {__version__} (client)")
    try:
        with _client(args) as client:
            health = client.health()
        print(f"jobd {health.get('version', '?')} (daemon at {client.endpoint.describe()})")
    except (DaemonUnreachable, ApiError) as exc:
        print(f"daemon: not reachable: {str(exc).splitlines()[0]}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """Load the config and its plugins as ``jobd run`` does, check all it names, summarise."""
    from structlog.testing import capture_logs

    from jobd.config import summarize
    from jobd.config.access import load_tokens
    from jobd.service.configcheck import describe_plugins, load_checked

    path = _config_path(args)
    try:
        # The plugin loader's log lines are the daemon's; here the summary names each
        # broken plugin and a problem names the broken ones an action may come from.
        with capture_logs():
            config, plugins = load_checked(path)
        load_tokens(config.api)  # unreadable, empty or loosely-moded token files
    except (JobdError, OSError) as exc:
        for line in str(exc).splitlines():  # one problem a line
            _err(line)
        return EXIT_FAILED
    print(f"{path}: OK")
    print(summarize(config))
    print("\n".join(describe_plugins(plugins)))
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    """``jobd db copy --to URL``: with the state directory locked (no daemon may run), every
    record of ``<state_dir>/jobd.db`` into the empty PostgreSQL database at URL."""
    import anyio

    from jobd.config import load_config
    from jobd.service.daemon import StateLock
    from jobd.store.copy import copy_sqlite_to_postgres

    if not args.to.startswith(("postgresql://", "postgres://")):
        _err(f"--to: expected a postgresql:// URL, got {args.to!r}")
        return EXIT_FAILED
    try:
        config = load_config(_config_path(args))
        if not config.daemon.db_path.exists():
            _err(f"no database to copy: {config.daemon.db_path} does not exist")
            return EXIT_FAILED
        with StateLock.acquire(config.daemon.state_dir):
            done = anyio.run(copy_sqlite_to_postgres, config.daemon.db_path, args.to, _err)
    except (JobdError, OSError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    print(
        f"copied {done.jobs} jobs, {done.steps} steps, {done.reservations} reservations,"
        f" {done.log_lines} log lines, {done.history} history entries,"
        f" {done.schedules} schedules ({done.schedule_events} events)"
    )
    print(f'next: set [daemon] database = "{args.to}" and start jobd')
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    with _client(args) as client:
        answer = client.reload()
    print("configuration reloaded")
    for change in answer.get("plugins") or []:  # new, changed, removed, broken plugin files
        print(change)
    for warning in answer.get("warnings") or []:
        _err(f"warning: {warning}")
    return EXIT_OK


# --------------------------------------------------------------------------- submit


def _submit_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``POST /v1/jobs`` body from the flags; unset flags are left to the daemon's defaults."""
    params: dict[str, Any] = dict(args.params_json or {})
    params.update(dict(args.param))
    body: dict[str, Any] = {"workflow": args.workflow, "params": params}
    for key in ("assets", "shared_assets", "resources", "pools"):
        if getattr(args, key):
            body[key] = getattr(args, key)
    optional = {
        "start_at": args.start,
        "end_at": args.end,
        "preroll": args.preroll,
        "postroll": args.postroll,
        "timeout": args.timeout,
        "lock_timeout": args.lock_timeout,
        "priority": args.priority,
        "name": args.name,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if args.draft:
        body["state"] = "draft"
    elif args.tentative:
        body["state"] = "tentative"
    return body


def cmd_submit(args: argparse.Namespace) -> int:
    if args.file is not None:
        return _submit_file(args)
    if not args.workflow:
        raise UsageError("submit needs a WORKFLOW, or --file F")
    if args.wait and (args.draft or args.tentative):
        raise UsageError("--wait needs a confirmed job: a draft or tentative job never runs")
    with _client(args) as client:
        job = client.submit(_submit_body(args))
        if not args.wait:
            _print_json(job) if args.json else print(job["id"])
            return EXIT_OK
        if not args.json:
            print(job["id"], flush=True)
        final = _wait_for(client, int(job["id"]))
    if args.json:
        _print_json(final)
    state = final.get("state")
    print(f"job {final.get('id')} {state}" + _error_suffix(final), file=sys.stderr)
    return EXIT_OK if state == "completed" else EXIT_FAILED


def _submit_file(args: argparse.Namespace) -> int:
    """``submit --file F``: the file's jobs in batches (:mod:`jobd.client.jobfile`); their ids on
    stdout (``--json``: the jobs), a count on stderr, a progress bar on a terminal."""
    from jobd.client import jobfile
    from jobd.client.textui import is_terminal

    if args.workflow or args.wait:
        raise UsageError("--file takes the jobs from the file: no WORKFLOW, no --wait")
    name = "stdin" if args.file == "-" else args.file
    try:
        if args.file == "-":
            jobs = jobfile.read_jobs(name, sys.stdin)
        else:
            with open(args.file, encoding="utf-8") as stream:
                jobs = jobfile.read_jobs(name, stream)
    except OSError as exc:
        _err(f"{name}: {exc.strerror or exc}")
        return EXIT_FAILED
    except (jobfile.JobFileError, UnicodeDecodeError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    big = len(jobs) >= jobfile.PROGRESS_FROM and is_terminal(sys.stderr)
    try:
        with _client(args) as client:
            stored = jobfile.submit_all(client, name, jobs, jobfile.ProgressBar() if big else None)
    except jobfile.JobFileError as exc:
        for line in str(exc).splitlines():
            _err(line)
        return EXIT_FAILED
    if args.json:
        _print_json({"items": stored})
    else:
        print("\n".join(str(job.get("id")) for job in stored))
    _err(f"submitted {len(stored)} jobs from {name}")
    return EXIT_OK


def _error_suffix(job: dict[str, Any]) -> str:
    error = job.get("error")
    return f": {error.get('code')}: {error.get('message')}" if isinstance(error, dict) else ""


def _wait_for(client: Client, job_id: int) -> dict[str, Any]:
    """Follow ``job_id``'s events (printed on stderr) until it has finished; the final job.

    The stream is opened before the state is read, so a job that finishes in
    between is seen either in the state or in the stream, never missed. A
    stream the daemon ends early (it drops a reader that falls behind) is
    reopened; a daemon that is gone raises :class:`DaemonUnreachable`.
    """
    from jobd.client.render import event_line

    last_line = ""
    while True:
        with client.events(job_id) as events:
            job = client.get_job(job_id)
            if job.get("state") in FINISHED:
                return job
            for event in events:
                line = event_line(event)
                if line.plain != last_line:  # a step re-saved in the same state says nothing new
                    _emit(line, stderr=True)
                    last_line = line.plain
                if event.get("kind") == "deleted":
                    raise ApiError(404, "not-found", f"job {job_id} was deleted while waiting")
                if event.get("kind") == "state" and event.get("to") in FINISHED:
                    return client.get_job(job_id)
        time.sleep(0.5)  # the stream ended early: reconnect at a modest pace


# --------------------------------------------------------------------------- jobs


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        page = client.list_jobs(limit=args.limit, cursor=args.cursor, filters=_filters(args))
    if args.json:
        _print_json(page)
        return EXIT_OK
    from jobd.client.render import jobs_table

    _emit(jobs_table(page.get("items") or []))
    if page.get("next_cursor"):
        _err(f"more jobs: --cursor {page['next_cursor']}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get_job(args.job_id)
    if args.json:
        _print_json(job)
        return EXIT_OK
    from jobd.client.render import job_detail

    _emit(job_detail(job))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """A job's lines (``--tail N``: the last N); ``-f`` follows the job's event stream."""
    with _client(args) as client:
        lines, after = _existing_lines(client, args.job_id, args.tail)
        if args.json and not args.follow:
            _print_json({"items": lines, "next_cursor": None})
            return EXIT_OK
        for line in lines:
            _print_log_line(line, as_json=args.json)
        if args.follow:
            for line in _follow_lines(client, args.job_id, after):
                _print_log_line(line, as_json=args.json)
    return EXIT_OK


def _print_log_line(line: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(line, ensure_ascii=False), flush=True)
        return
    from jobd.client.render import log_line

    _emit(log_line(line))


def _new_lines(client: Client, job_id: int, after: int) -> Iterator[dict[str, Any]]:
    """Every line with ``seq > after``, page by page."""
    while True:
        page = client.job_log(job_id, after)
        for line in page.get("items") or []:
            after = max(after, int(line.get("seq", after)))
            yield line
        if not page.get("next_cursor"):
            return


def _existing_lines(
    client: Client, job_id: int, tail: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The job's lines so far (only the last ``tail`` if given) and the last ``seq`` read."""
    from collections import deque

    kept: deque[dict[str, Any]] = deque(maxlen=tail)
    after = 0
    for line in _new_lines(client, job_id, 0):
        after = max(after, int(line.get("seq", after)))
        kept.append(line)
    return list(kept), after


#: ``logs -f``: while the event stream is quiet, look for new lines this often (a step's
#: output changes no state, so it raises no event).
QUIET_REFRESH = 1.0


def _follow_lines(client: Client, job_id: int, after: int) -> Iterator[dict[str, Any]]:
    """New lines as the job's events arrive (``GET /v1/events?job=ID``), until it finished.

    The stream is opened before the state is read, so a job that finishes in
    between is seen one way or the other; its final state is read *before*
    the last fetch, so that fetch has every line the job will write. A stream
    the daemon ends early is reopened.
    """
    import queue

    while True:
        with client.events(job_id) as events:
            inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
            _pump_events(events, inbox)
            while True:
                finished = client.get_job(job_id).get("state") in FINISHED
                for line in _new_lines(client, job_id, after):
                    after = max(after, int(line.get("seq", after)))
                    yield line
                if finished:
                    return
                try:
                    if inbox.get(timeout=QUIET_REFRESH) is None:
                        break  # the stream ended: reopen it
                except queue.Empty:
                    pass
        time.sleep(0.5)  # reconnect at a modest pace


def _pump_events(events: Iterator[dict[str, Any]], inbox: Any) -> None:
    """Read ``events`` on a daemon thread into ``inbox``; ``None`` when the stream ends."""
    import threading

    def pump() -> None:
        try:
            for event in events:
                inbox.put(event)
        except (DaemonUnreachable, ApiError, OSError, ValueError):
            pass
        inbox.put(None)

    threading.Thread(target=pump, name="jobd-logs-events", daemon=True).start()


# --------------------------------------------------------------------------- edit


def _edit_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PATCH`` body: only what was given (``-p`` merges into the params later)."""
    given = {
        "start_at": args.start,
        "end_at": args.end,
        "preroll": args.preroll,
        "postroll": args.postroll,
        "timeout": args.timeout,
        "lock_timeout": args.lock_timeout,
        "priority": args.priority,
        "name": args.name,
        "assets": args.assets,
        "shared_assets": args.shared_assets,
        "resources": args.resources,
        "pools": args.pools,
    }
    return {key: value for key, value in given.items() if value is not None}


def cmd_edit(args: argparse.Namespace) -> int:
    """``PATCH /v1/jobs/{id}`` with the fields given; ``-p`` sets single parameters on top
    of the job's current ones (the API replaces ``params`` whole)."""
    changes = _edit_changes(args)
    if not changes and not args.param:
        raise UsageError("nothing to change: give at least one option (see jobd edit --help)")
    with _client(args) as client:
        if args.param:
            params = dict(client.get_job(args.job_id).get("params") or {})
            params.update(dict(args.param))
            changes["params"] = params
        job = client.edit_job(args.job_id, changes)
    if args.json:
        _print_json(job)
    else:
        print(f"job {args.job_id}: edited ({', '.join(sorted(changes))}); {job.get('state')}")
    return EXIT_OK


# --------------------------------------------------------------------------- operations


def cmd_operation(args: argparse.Namespace) -> int:
    """Apply one operation to each id; report each; exit 1 if any was refused.

    With filters and no ids: the operation on every job that matches, in one
    ``POST /v1/batch/{operation}`` (:func:`_operate_matching`)."""
    filters = _filters(args)
    if filters and args.job_ids:
        raise UsageError("give job ids or filters, not both")
    if filters:
        return _operate_matching(args, filters)
    if not args.job_ids:
        raise UsageError(f"{args.operation} needs job ids, or filters (--state S, ...)")
    refused = 0
    with _client(args) as client:
        for job_id in args.job_ids:
            try:
                job = client.operate(job_id, args.operation)
            except ApiError as exc:
                refused += 1
                prefix = f"job {job_id}"
                _err(exc.message if exc.message.startswith(prefix) else f"{prefix}: {exc.message}")
                continue
            print(_operation_report(job_id, args.operation, job))
    return EXIT_FAILED if refused else EXIT_OK


def _operate_matching(args: argparse.Namespace, filters: dict[str, Any]) -> int:
    """The batch route by filter: how many matched, were changed and were refused (each
    refusal on stderr); exit 1 if any was refused. Nothing matching changes nothing."""
    with _client(args) as client:
        answer = client.operate_batch(args.operation, filters=filters)
    done, refused = answer.get("done") or [], answer.get("refused") or []
    matched = answer.get("matched", len(done) + len(refused))
    for item in refused:
        message = str((item.get("error") or {}).get("message", "refused"))
        prefix = f"job {item.get('id')}"
        _err(message if message.startswith(prefix) else f"{prefix}: {message}")
    if not matched:
        print(f"{args.operation}: no job matches; nothing changed")
        return EXIT_OK
    created = answer.get("created")
    extra = f" (new jobs: {_id_list(created)})" if created else ""
    print(
        f"{args.operation}: {len(done)} changed, {len(refused)} refused, "
        f"of {matched} matching{extra}"
    )
    return EXIT_FAILED if refused else EXIT_OK


def _id_list(ids: list[Any]) -> str:
    shown = ", ".join(str(i) for i in ids[:20])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > 20 else "")


def _operation_report(job_id: int, operation: str, job: dict[str, Any] | None) -> str:
    if job is None:
        return f"job {job_id}: deleted"
    if operation == "resubmit":
        return f"job {job_id}: resubmitted as job {job.get('id')} ({job.get('state')})"
    return f"job {job_id}: {job.get('state')}" + _error_suffix(job)


# --------------------------------------------------------------------------- inspection


def _show(
    args: argparse.Namespace,
    fetch: Callable[[Client], dict[str, Any]],
    render: Callable[[dict[str, Any]], Any],
) -> int:
    """Fetch, then print JSON (``--json``) or the rendered table."""
    with _client(args) as client:
        data = fetch(client)
    if args.json:
        _print_json(data)
    else:
        _emit(render(data))
    return EXIT_OK


def cmd_queue(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.queue, render.queue_view)


def cmd_locks(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.locks, lambda data: render.locks_table(data.get("items") or []))


def cmd_resources(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(
        args, Client.resources, lambda data: render.resources_table(data.get("items") or [])
    )


def cmd_bookings(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(
        args,
        lambda client: client.bookings(args.start, args.end),
        lambda data: render.bookings_table(data.get("items") or []),
    )


def cmd_schedules(args: argparse.Namespace) -> int:
    """The schedules table; or ``run|pause|resume NAME`` (``POST /v1/schedules/NAME/...``)."""
    from jobd.client import render

    if args.action is not None:
        return _schedule_control(args)
    return _show(
        args, Client.schedules, lambda data: render.schedules_table(data.get("items") or [])
    )


def _schedule_control(args: argparse.Namespace) -> int:
    if not args.name:
        raise UsageError(f"schedules {args.action} needs the schedule's NAME")
    with _client(args) as client:
        answer = client.schedule_control(args.name, args.action)
    if args.json:
        _print_json(answer)
    elif args.action == "run":
        print(f"schedule {args.name}: fired now as job {answer.get('id')} ({answer.get('state')})")
    elif args.action == "pause":
        print(f"schedule {args.name}: paused (no firings until 'jobd schedules resume')")
    else:
        from jobd.client.render import local_time

        print(
            f"schedule {args.name}: resumed; next firing {local_time(answer.get('next_fire_at'))}"
        )
    return EXIT_OK


def cmd_plugins(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.plugins, render.plugins_view)


def cmd_nodes(args: argparse.Namespace) -> int:
    from jobd.client import render

    return _show(args, Client.nodes, lambda data: render.nodes_table(data.get("items") or []))


# --------------------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    """Redraw the queue and latest jobs on every event, and at least every ``--interval`` s.

    A background thread follows the event stream and wakes the drawing loop;
    when the daemon goes away the view says so and keeps retrying. Ctrl-C
    ends it (exit 0). When stdout is not a terminal there is nothing to
    redraw: one line per event instead (:func:`_watch_lines`).
    """
    from jobd.client.textui import is_terminal, rich_console

    if not is_terminal():
        return _watch_lines(args)
    from rich.live import Live

    follower = _EventFollower(args)
    follower.start()
    try:
        with _client(args) as client, Live(auto_refresh=False, console=rich_console()) as live:
            _watch_loop(args, client, live, follower)
    except KeyboardInterrupt:
        pass
    finally:
        follower.stop.set()
    return EXIT_OK


def _watch_lines(args: argparse.Namespace) -> int:
    """``jobd watch`` into a pipe or file: each event as one line,
    flushed at once; a stream the daemon ends is reopened. Ctrl-C ends it (exit 0)."""
    from jobd.client.render import event_line

    try:
        with _client(args) as client:
            while True:
                with client.events() as events:
                    _err(f"watching events at {client.endpoint.describe()} (Ctrl-C to stop)")
                    for event in events:
                        print(event_line(event).plain, flush=True)
                time.sleep(0.5)  # the stream ended early: reconnect at a modest pace
    except KeyboardInterrupt:
        return EXIT_OK


def _watch_loop(
    args: argparse.Namespace, client: Client, live: Any, follower: _EventFollower
) -> None:
    from jobd.client.render import watch_view
    from jobd.client.textui import to_rich

    queue: dict[str, Any] = {}
    jobs: list[dict[str, Any]] = []
    while True:
        problem = None
        try:
            queue = client.queue()
            jobs = client.list_jobs(limit=args.limit).get("items") or []
        except (DaemonUnreachable, ApiError) as exc:
            problem = str(exc)  # keep showing the last view, with the reason
        view = watch_view(queue, jobs, list(follower.recent), problem)
        live.update(to_rich(view), refresh=True)
        follower.wake.wait(args.interval)
        follower.wake.clear()


class _EventFollower:
    """Watch's event thread: keeps the latest events and wakes the view on each one.

    A daemon thread, so an exiting CLI never waits for it; after ``stop`` is
    set it ends at the next event or when the stream closes, and never
    reconnects.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        import threading
        from collections import deque

        self.args = args
        self.recent: deque[dict[str, Any]] = deque(maxlen=8)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobd-watch-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with _client(self.args) as client:
                    for event in client.stream_events():
                        self.recent.append(event)
                        self.wake.set()
                        if self.stop.is_set():
                            return
            except (DaemonUnreachable, ApiError):
                pass
            self.stop.wait(2.0)  # daemon away: retry at a human pace


# --------------------------------------------------------------------------- jobd ui


def _port_arg(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return int(text)


def _add_ui_command(sub: Any, common: argparse.ArgumentParser) -> None:
    cmd = _command(
        sub,
        common,
        "ui",
        cmd_ui,
        "serve the web monitor on 127.0.0.1 through the Unix socket; prints a one-time URL",
    )
    cmd.add_argument(
        "--port", type=_port_arg, default=0, metavar="N", help="port on 127.0.0.1 (0: any free)"
    )


def cmd_ui(args: argparse.Namespace) -> int:
    """``jobd ui``: relay 127.0.0.1:PORT to the daemon's socket (docs/web.md says how it is
    guarded). The relay's stack (uvicorn, starlette) is imported only here."""
    with _client(args) as client:
        endpoint = client.endpoint
        if endpoint.socket is None:
            _err(f"jobd ui relays a Unix socket; this daemon is at {endpoint.url}: open that URL")
            return EXIT_USAGE
        client.health()  # unreachable: exit 3 with the usual message, before printing a URL
    from pathlib import Path

    from jobd.service.web.ui import run_ui

    return run_ui(Path(endpoint.socket), args.port)
