"""TOML configuration (one file + ``jobd.d/*.toml`` drop-ins) → a validated, frozen :class:`Config`.

SPEC §5. Every error names the file, the key path and the problem
(:class:`jobd.core.errors.ConfigError`); an unknown key is an error.

How a load goes:

1. :func:`_read_sources` parses the main file, then ``<its folder>/jobd.d/*.toml``
   in name order.
2. :func:`_merge` deep-merges them (tables recursively; arrays and scalars
   from later files replace; ``[[schedules]]`` is concatenated) and records,
   for every key it sets, the file it came from (``origins``).
3. :func:`_build` validates the merged tree section by section through
   :class:`_Table`, whose accepted keys are the fields of the dataclasses
   below, so the accepted keys and the config shape cannot drift apart.
4. :func:`_cross_check` checks what involves several sections (pool members,
   schedule workflows, ...).

What the configuration *names* is checked afterwards by :mod:`jobd.service.configcheck`
(the plugins and their actions, step params, scripts, files, cron expressions
with the timers' parser): ``jobd check-config``, ``jobd run`` and every reload
call both. :attr:`Config.origins` keeps each key's file for those errors.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import math
import os
import re
import socket
import tomllib
import zoneinfo
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from jobd.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/jobd/jobd.toml")
CONFIG_ENV = "JOBD_CONFIG"
DROPIN_DIR = "jobd.d"


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    state_dir: Path = Path("/var/lib/jobd")
    run_queue_size: int = 1000
    workers: int = 8
    shutdown_grace: float = 30.0
    kill_grace: float = 10.0
    plugin_dirs: tuple[Path, ...] = (Path("/etc/jobd/plugins.d"),)
    file_roots: tuple[Path, ...] = (Path("/srv/media"),)
    #: SQLite ``PRAGMA synchronous``: "full" (default, durable on power loss) or "normal".
    synchronous: Literal["full", "normal"] = "full"
    #: ``postgresql://...``: the jobs live in that PostgreSQL database (SPEC §10); None:
    #: SQLite in ``state_dir`` (the embedded default, no PostgreSQL needed).
    database: str | None = None
    #: This daemon's name among the nodes of a cluster (``database``); default the host name.
    node: str = field(default_factory=socket.gethostname)
    #: Seconds a node's lease lasts without a renewal (renewed every third of it).
    lease: float = 15.0
    #: What this node offers: a workflow's ``requires`` runs only on nodes with all of them.
    tags: tuple[str, ...] = ()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "jobd.db"


@dataclass(frozen=True, slots=True)
class TokenConfig:
    """One ``[[api.tokens]]`` entry: a named bearer token (read from ``file``) with a role."""

    name: str
    file: Path
    role: Literal["viewer", "operator", "admin"]


@dataclass(frozen=True, slots=True)
class ApiConfig:
    socket: Path = Path("/run/jobd/jobd.sock")
    socket_mode: int = 0o660
    listen: str | None = None
    #: The admin token named ``default`` (SPEC §11).
    token_file: Path | None = None
    tokens: tuple[TokenConfig, ...] = ()
    #: Socket users by role: user names and ``@group``s. None (unset) for all three:
    #: whoever can open the socket is admin.
    viewers: tuple[str, ...] | None = None
    operators: tuple[str, ...] | None = None
    admins: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    format: Literal["json", "console", "auto"] = "auto"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Defaults:
    timeout: float = 3600.0
    retries: int = 2
    retry_backoff: float = 5.0
    script_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class ResourceConfig:
    name: str
    capacity: int = 1


@dataclass(frozen=True, slots=True)
class PoolConfig:
    name: str
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StepConfig:
    name: str
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int | None = None
    retry_backoff: float | None = None
    isolation: Literal["inline", "process"] = "inline"


@dataclass(frozen=True, slots=True)
class WorkflowConfig:
    name: str
    steps: tuple[StepConfig, ...]
    start_script: Path | None = None
    end_script: Path | None = None
    script_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class ScheduleConfig:
    name: str
    workflow: str
    cron: str | None = None
    interval: float | None = None
    timezone: str = "UTC"
    params: dict[str, Any] = field(default_factory=dict)
    assets: tuple[str, ...] = ()
    shared_assets: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()
    priority: int = 0
    timeout: float | None = None
    overlap: Literal["skip", "queue", "allow"] = "skip"
    misfire: Literal["skip", "once", "all"] = "once"
    misfire_grace: float = 3600.0
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    defaults: Defaults = field(default_factory=Defaults)
    resources: dict[str, ResourceConfig] = field(default_factory=dict)
    pools: dict[str, PoolConfig] = field(default_factory=dict)
    workflows: dict[str, WorkflowConfig] = field(default_factory=dict)
    schedules: tuple[ScheduleConfig, ...] = ()
    #: The files this config was read from, in merge order (main file first).
    sources: tuple[Path, ...] = ()
    #: Which file set each key path, for errors found after loading (:func:`error_at`).
    origins: Mapping[KeyPath, Path] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- public API


def load_config(path: Path) -> Config:
    """Read ``path`` and ``<its folder>/jobd.d/*.toml`` (name order), merge, validate.

    Relative paths in a file resolve against that file's folder. Nothing on disk
    other than the TOML files is looked at: paths, scripts and plugin dirs need
    not exist yet (the daemon treats a missing plugin dir as empty).

    Raises :class:`jobd.core.errors.ConfigError` naming the file, key path and problem.
    """
    sources = _read_sources(Path(os.path.abspath(path)))
    merged: dict[str, Any] = {}
    origins: dict[_KeyPath, Path] = {}
    for file, data in sources:
        _merge(merged, data, (), file, origins)
    ctx = _Context(origins, fallback=sources[0][0])
    config = _build(ctx, merged, tuple(file for file, _ in sources))
    _cross_check(ctx, config)
    return dataclasses.replace(config, origins=origins)


def error_at(config: Config, path: KeyPath, problem: str) -> ConfigError:
    """A :class:`ConfigError` for ``path`` (e.g. ``("workflows", "x", "steps", 0, "action")``)
    naming the file that set it, for checks made after loading (:mod:`jobd.service.configcheck`)."""
    if not config.sources:  # built in code, not read from a file
        return ConfigError(None, _dotted(path) or None, problem)
    return _Context(config.origins, config.sources[0]).error(path, problem)


def resolve_config_path(cli_value: str | None) -> Path:
    """The config file to use: the CLI flag if given, else ``$JOBD_CONFIG``, else
    ``/etc/jobd/jobd.toml``. Empty values count as not given."""
    value = cli_value or os.environ.get(CONFIG_ENV)
    return Path(value).expanduser() if value else DEFAULT_CONFIG_PATH


def summarize(config: Config) -> str:
    """A human summary for ``jobd check-config``: files read, where state and the API
    live, capacity, and the named resources, pools, workflows and schedules."""
    daemon, api = config.daemon, config.api
    tcp = f"{api.listen} (tokens: {_describe_tokens(api)})" if api.listen else "off"
    lines = [
        "files read: " + (", ".join(map(str, config.sources)) or "(none)"),
        f"state_dir: {daemon.state_dir} (database {daemon.db_path})",
        f"socket: {api.socket} (mode {api.socket_mode:04o}); tcp: {tcp}",
        "socket roles: " + _describe_roles(api),
        f"workers: {daemon.workers}; run queue size: {daemon.run_queue_size}",
        "plugin dirs: " + _join(map(str, daemon.plugin_dirs)),
        "file roots: " + _join(map(str, daemon.file_roots)),
        f"logging: {config.logging.format}, level {config.logging.level}",
        _counted(
            "resources", [f"{r.name} (capacity {r.capacity})" for r in config.resources.values()]
        ),
        _counted("pools", [f"{p.name} = [{', '.join(p.members)}]" for p in config.pools.values()]),
        _counted(
            "workflows",
            [f"{w.name} ({_plural(len(w.steps), 'step')})" for w in config.workflows.values()],
        ),
        _counted("schedules", [_describe_schedule(s) for s in config.schedules]),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- reading, merging

#: A key path: table keys and array indexes from the root, e.g. ("workflows", "x", "steps", 1).
KeyPath = tuple[str | int, ...]
_KeyPath = KeyPath


def _read_sources(main: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The main file then its drop-ins in name order, each parsed; a missing drop-in
    folder is fine, a missing main file is not."""
    files = [main]
    dropins = main.parent / DROPIN_DIR
    if dropins.is_dir():
        files += sorted((p for p in dropins.glob("*.toml") if p.is_file()), key=lambda p: p.name)
    return [(file, _parse(file)) for file in files]


def _parse(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(str(file), None, f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(str(file), None, f"not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message already ends with "(at line L, column C)".
        raise ConfigError(str(file), None, f"invalid TOML: {exc}") from exc


def _merge(
    into: dict[str, Any],
    new: Mapping[str, Any],
    path: _KeyPath,
    source: Path,
    origins: dict[_KeyPath, Path],
) -> None:
    """Deep-merge ``new`` (from ``source``) into ``into``, recording where each key came from.

    Tables merge recursively; ``[[schedules]]`` is concatenated (each entry keeps
    its own file); anything else from a later file replaces the earlier value
    wholesale (a workflow's ``steps`` array included).
    """
    for key, value in new.items():
        here = (*path, key)
        old = into.get(key)
        if isinstance(old, dict) and isinstance(value, dict):
            origins[here] = source  # the last file to touch a table answers for it
            _merge(old, value, here, source, origins)
        elif here == ("schedules",) and isinstance(old, list) and isinstance(value, list):
            for item in value:
                origins[(*here, len(old))] = source
                old.append(item)
        else:
            for stale in [p for p in origins if p[: len(here)] == here]:
                del origins[stale]
            into[key] = value
            _record(value, here, source, origins)


def _record(value: Any, path: _KeyPath, source: Path, origins: dict[_KeyPath, Path]) -> None:
    """Record ``source`` for ``path`` and every key below it.

    Each key must answer for itself: were only the enclosing table recorded, a
    later file merging into that table (``[daemon] workers = 16`` in a drop-in)
    would become the origin of the keys it never set, and their relative paths
    would move to the drop-in's folder.
    """
    origins[path] = source
    if isinstance(value, dict):
        for key, child in value.items():
            _record(child, (*path, key), source, origins)


# --------------------------------------------------------------------------- validation kit

T = TypeVar("T")

#: Checks one raw TOML value; gets the folder of the file the value came from
#: (for relative paths) and returns the converted value or raises _Bad.
_Checker = Callable[[Any, Path], Any]


class _Bad(Exception):
    """A value is wrong; ``at`` is the key path below the checked key (array index...)."""

    def __init__(self, problem: str, at: _KeyPath = ()) -> None:
        super().__init__(problem)
        self.problem, self.at = problem, at


class _Context:
    """Where each key came from, so that every error can name its file."""

    def __init__(self, origins: Mapping[_KeyPath, Path], fallback: Path) -> None:
        self.origins, self.fallback = origins, fallback

    def file_of(self, path: _KeyPath) -> Path:
        """The file that set ``path`` or its nearest enclosing key (the main file at worst)."""
        for cut in range(len(path), 0, -1):
            if (found := self.origins.get(path[:cut])) is not None:
                return found
        return self.fallback

    def error(self, path: _KeyPath, problem: str) -> ConfigError:
        return ConfigError(str(self.file_of(path)), _dotted(path) or None, problem)


class _Table:
    """One TOML table under validation: refuses unknown keys at once, then hands out
    checked values. ``allowed`` maps each accepted key to its checker."""

    def __init__(
        self,
        ctx: _Context,
        path: _KeyPath,
        data: Any,
        allowed: Mapping[str, _Checker],
    ) -> None:
        if not isinstance(data, dict):
            raise ctx.error(path, f"expected a table, got {_show(data)}")
        self.ctx, self.path, self.data, self.allowed = ctx, path, data, allowed
        for key in data:
            if key not in allowed:
                raise ctx.error((*path, key), f"unknown key {key!r}{_suggest(key, allowed)}")

    def values(self, required: Iterable[str] = ()) -> dict[str, Any]:
        """The checked values of the keys present (absent keys keep dataclass defaults)."""
        for key in required:
            if key not in self.data:
                raise self.ctx.error((*self.path, key), f"missing required key {key!r}")
        return {key: self.check(key) for key in self.allowed if key in self.data}

    def check(self, key: str) -> Any:
        here = (*self.path, key)
        try:
            return self.allowed[key](self.data[key], self.ctx.file_of(here).parent)
        except _Bad as bad:
            raise self.ctx.error((*here, *bad.at), bad.problem) from None


def _fields(cls: type[Any], **checkers: _Checker) -> dict[str, _Checker]:
    """``checkers`` after asserting they cover exactly ``cls``'s fields (``name`` aside,
    which for most sections is the table's key), so code and shape stay in step."""
    names = {f.name for f in dataclasses.fields(cls)} - ({"name"} - checkers.keys())
    assert names == checkers.keys(), f"{cls.__name__}: {names ^ checkers.keys()}"
    return checkers


def _seconds(*, allow_zero: bool = False) -> _Checker:
    def check(value: Any, _base: Path) -> float:
        ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise _Bad(f"expected a number of seconds {bound}, got {_show(value)}")
        return float(value)

    return check


def _integer(low: int, high: int | None = None) -> _Checker:
    def check(value: Any, _base: Path) -> int:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < low
            or (high is not None and value > high)
        ):
            span = f"from {low} up" if high is None else f"from {low} to {high}"
            raise _Bad(f"expected an integer {span}, got {_show(value)}")
        return value

    return check


def _text(value: Any, _base: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"expected a non-empty string, got {_show(value)}")
    return value


def _name(value: Any, base: Path) -> str:
    """A name jobd shows and joins with commas (``JOBD_RESOURCES``): no blanks, no commas."""
    text = _text(value, base)
    if _BAD_NAME.search(text):
        raise _Bad(f"a name may not contain whitespace or commas, got {_show(value)}")
    return text


_BAD_NAME = re.compile(r"[\s,]")


def _choice(*options: str, fold_case: bool = False) -> _Checker:
    def check(value: Any, _base: Path) -> str:
        text = value.lower() if fold_case and isinstance(value, str) else value
        if text not in options:
            listed = ", ".join(repr(o) for o in options)
            hint = _suggest(value, options) if isinstance(value, str) else ""
            raise _Bad(f"expected one of {listed}, got {_show(value)}{hint}")
        return str(text)

    return check


def _boolean(value: Any, _base: Path) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"expected true or false, got {_show(value)}")
    return value


def _names(*, non_empty: bool = False) -> _Checker:
    """An array of names, without repeats."""

    def check(value: Any, base: Path) -> tuple[str, ...]:
        if not isinstance(value, list) or (non_empty and not value):
            raise _Bad(
                f"expected a{' non-empty' if non_empty else 'n'} array of names, got {_show(value)}"
            )
        items = tuple(_each(value, _name, base))
        for index, item in enumerate(items):
            if item in items[:index]:
                raise _Bad(f"{item!r} is listed twice", (index,))
        return items

    return check


def _path(value: Any, base: Path) -> Path:
    """A path; a relative one resolves against the folder of the file it came from."""
    return Path(os.path.normpath(base / _text(value, base)))


def _paths(value: Any, base: Path) -> tuple[Path, ...]:
    if not isinstance(value, list):
        raise _Bad(f"expected an array of paths, got {_show(value)}")
    return tuple(_each(value, _path, base))


def _each(items: list[Any], checker: _Checker, base: Path) -> Iterator[Any]:
    for index, item in enumerate(items):
        try:
            yield checker(item, base)
        except _Bad as bad:
            raise _Bad(bad.problem, (index, *bad.at)) from None


def _params(value: Any, _base: Path) -> dict[str, Any]:
    """Job parameters: a table of JSON-able values (they are stored and templated as JSON)."""
    if not isinstance(value, dict):
        raise _Bad(f"expected a table, got {_show(value)}")
    if (where := _find_datetime(value)) is not None:
        raise _Bad("TOML dates and times are not allowed in params; quote them as strings", where)
    return value


def _find_datetime(value: Any, at: _KeyPath = ()) -> _KeyPath | None:
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return at
    children: Iterable[tuple[str | int, Any]] = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, child in children:
        if (found := _find_datetime(child, (*at, key))) is not None:
            return found
    return None


def _octal_mode(value: Any, _base: Path) -> int:
    # Only a string: a bare TOML integer 660 would silently mean 0o1224.
    if not isinstance(value, str) or not re.fullmatch(r"0?[0-7]{3}", value):
        raise _Bad(f'expected an octal mode string like "0660", got {_show(value)}')
    return int(value, 8)


def _listen(value: Any, base: Path) -> str:
    """``host:port`` (an IPv6 host in brackets: ``[::1]:8470``)."""
    host, sep, port = _text(value, base).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _Bad(f'expected "host:port" with a port from 1 to 65535, got {_show(value)}')
    return str(value)


def _database(value: Any, base: Path) -> str:
    url = _text(value, base)
    if not url.startswith(("postgresql://", "postgres://")):
        raise _Bad(
            f'expected a PostgreSQL URL like "postgresql://jobd@dbhost/jobd", got {_show(value)}'
        )
    return url


def _lease(value: Any, base: Path) -> float:
    """At least a second: renewals come every third of it, and the watchdog must act in time."""
    seconds = float(_seconds()(value, base))
    if seconds < 1:
        raise _Bad(f"expected a number of seconds >= 1, got {_show(value)}")
    return seconds


def _timezone(value: Any, base: Path) -> str:
    name = _text(value, base)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = _suggest(name, zoneinfo.available_timezones())
        raise _Bad(f"unknown timezone {name!r}{hint}") from None
    return name


# --------------------------------------------------------------------------- sections

_DAEMON = _fields(
    DaemonConfig,
    state_dir=_path,
    run_queue_size=_integer(1),
    workers=_integer(1),
    shutdown_grace=_seconds(allow_zero=True),
    kill_grace=_seconds(allow_zero=True),
    plugin_dirs=_paths,
    file_roots=_paths,
    synchronous=_choice("full", "normal"),
    database=_database,
    node=_name,
    lease=_lease,
    tags=_names(),
)
_TOKEN = _fields(TokenConfig, name=_name, file=_path, role=_choice("viewer", "operator", "admin"))


def _tokens(value: Any, base: Path) -> tuple[TokenConfig, ...]:
    """``[[api.tokens]]``: each with ``name``, ``file`` and ``role``; names unique."""
    if not isinstance(value, list):
        raise _Bad(f"expected an array of tables ([[api.tokens]]), got {_show(value)}")
    built: list[TokenConfig] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _Bad(f"expected a table, got {_show(item)}", (index,))
        for key in item:
            if key not in _TOKEN:
                raise _Bad(f"unknown key {key!r}{_suggest(key, _TOKEN)}", (index, key))
        for key in _TOKEN:
            if key not in item:
                raise _Bad(f"missing required key {key!r}", (index, key))
        values = {}
        for key, check in _TOKEN.items():
            try:
                values[key] = check(item[key], base)
            except _Bad as bad:
                raise _Bad(bad.problem, (index, key, *bad.at)) from None
        if any(t.name == values["name"] for t in built):
            raise _Bad(f"duplicate token name {values['name']!r}", (index, "name"))
        built.append(TokenConfig(**values))
    return tuple(built)


def _principals(value: Any, base: Path) -> tuple[str, ...]:
    """``[api] viewers/operators/admins``: user names and ``@group``s."""
    if not isinstance(value, list):
        raise _Bad(f'expected an array of user names and "@group"s, got {_show(value)}')
    items: list[str] = []
    for index, item in enumerate(value):
        try:
            text = _name(item, base)
            if text.startswith("@"):
                _name(text[1:] or " ", base)
        except _Bad:
            raise _Bad(
                f'expected a user name or "@group" (no blanks or commas), got {_show(item)}',
                (index,),
            ) from None
        items.append(text)
    return tuple(items)


_API = _fields(
    ApiConfig,
    socket=_path,
    socket_mode=_octal_mode,
    listen=_listen,
    token_file=_path,
    tokens=_tokens,
    viewers=_principals,
    operators=_principals,
    admins=_principals,
)
_LOGGING = _fields(
    LoggingConfig,
    format=_choice("json", "console", "auto"),
    level=_choice("debug", "info", "warning", "error", fold_case=True),
)
_DEFAULTS = _fields(
    Defaults,
    timeout=_seconds(),
    retries=_integer(0),
    retry_backoff=_seconds(allow_zero=True),
    script_timeout=_seconds(),
)
_RESOURCE = _fields(ResourceConfig, capacity=_integer(1))
_POOL = _fields(PoolConfig, members=_names(non_empty=True))
_STEP = _fields(
    StepConfig,
    name=_name,
    action=_text,
    params=_params,
    timeout=_seconds(),
    retries=_integer(0),
    retry_backoff=_seconds(allow_zero=True),
    isolation=_choice("inline", "process"),
)
_WORKFLOW = _fields(
    WorkflowConfig,
    steps=lambda value, _base: value,  # checked item by item in _workflow
    start_script=_path,
    end_script=_path,
    script_timeout=_seconds(),
)
_SCHEDULE = _fields(
    ScheduleConfig,
    name=_name,
    workflow=_text,
    cron=_text,
    interval=_seconds(),
    timezone=_timezone,
    params=_params,
    assets=_names(),
    shared_assets=_names(),
    resources=_names(),
    pools=_names(),
    priority=_integer(-1000, 1000),
    timeout=_seconds(),
    overlap=_choice("skip", "queue", "allow"),
    misfire=_choice("skip", "once", "all"),
    misfire_grace=_seconds(allow_zero=True),
    enabled=_boolean,
)
_ROOT_KEYS = (
    "daemon",
    "api",
    "logging",
    "defaults",
    "resources",
    "pools",
    "workflows",
    "schedules",
)


def _build(ctx: _Context, merged: dict[str, Any], sources: tuple[Path, ...]) -> Config:
    """Validate each section of the merged tree into its dataclass."""
    _Table(ctx, (), merged, dict.fromkeys(_ROOT_KEYS, lambda v, _b: v))

    def section(key: str, allowed: Mapping[str, _Checker]) -> dict[str, Any]:
        return _Table(ctx, (key,), merged.get(key, {}), allowed).values()

    return Config(
        daemon=DaemonConfig(**section("daemon", _DAEMON)),
        api=ApiConfig(**section("api", _API)),
        logging=LoggingConfig(**section("logging", _LOGGING)),
        defaults=Defaults(**section("defaults", _DEFAULTS)),
        resources=_named(
            ctx, merged, "resources", lambda t, n: ResourceConfig(name=n, **t.values())
        ),
        pools=_named(ctx, merged, "pools", _pool),
        workflows=_named(ctx, merged, "workflows", _workflow),
        schedules=_schedules(ctx, merged.get("schedules", [])),
        sources=sources,
    )


_SECTION_CHECKERS: dict[str, Mapping[str, _Checker]] = {
    "resources": _RESOURCE,
    "pools": _POOL,
    "workflows": _WORKFLOW,
}


def _named(
    ctx: _Context,
    merged: dict[str, Any],
    key: str,
    build: Callable[[_Table, str], T],
) -> dict[str, T]:
    """A table of named tables (``[resources.X]``, ``[pools.X]``, ``[workflows.X]``)."""
    container = merged.get(key, {})
    if not isinstance(container, dict):
        raise ctx.error((key,), f"expected a table, got {_show(container)}")
    built: dict[str, T] = {}
    for name, data in container.items():
        path = (key, name)
        try:
            _name(name, Path())
        except _Bad as bad:
            raise ctx.error(path, bad.problem) from None
        built[name] = build(_Table(ctx, path, data, _SECTION_CHECKERS[key]), name)
    return built


def _pool(table: _Table, name: str) -> PoolConfig:
    return PoolConfig(name=name, **table.values(required=["members"]))


def _workflow(table: _Table, name: str) -> WorkflowConfig:
    """A workflow: at least one step (SPEC §4; a booking's job that only holds its
    resources can run a ``sleep`` of 0 s)."""
    values = table.values(required=["steps"])
    raw_steps = values.pop("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise table.ctx.error(
            (*table.path, "steps"),
            f"expected a non-empty array of step tables, got {_show(raw_steps)}",
        )
    steps: list[StepConfig] = []
    for index, raw in enumerate(raw_steps):
        path = (*table.path, "steps", index)
        step = StepConfig(**_Table(table.ctx, path, raw, _STEP).values(["name", "action"]))
        if any(s.name == step.name for s in steps):
            raise table.ctx.error(
                (*path, "name"), f"duplicate step name {step.name!r} in workflow {name!r}"
            )
        steps.append(step)
    return WorkflowConfig(name=name, steps=tuple(steps), **values)


def _schedules(ctx: _Context, raw: Any) -> tuple[ScheduleConfig, ...]:
    """``[[schedules]]`` entries; names are unique across all files."""
    if not isinstance(raw, list):
        raise ctx.error(
            ("schedules",), f"expected an array of tables ([[schedules]]), got {_show(raw)}"
        )
    built: list[ScheduleConfig] = []
    for index, data in enumerate(raw):
        path: _KeyPath = ("schedules", index)
        values = _Table(ctx, path, data, _SCHEDULE).values(required=["name", "workflow"])
        for earlier, other in enumerate(built):
            if other.name == values["name"]:
                raise ctx.error(
                    (*path, "name"),
                    (
                        f"duplicate schedule name {other.name!r} (first defined in "
                        f"{ctx.file_of(('schedules', earlier))} as schedules[{earlier}])"
                    ),
                )
        built.append(ScheduleConfig(**values))
    return tuple(built)


# --------------------------------------------------------------------------- cross checks


def _cross_check(ctx: _Context, config: Config) -> None:
    """Rules that span keys or sections; each error points at the key to fix."""
    api = config.api
    if api.listen is not None and api.token_file is None and not api.tokens:
        # Blame the file that turned TCP on: that is where the fix belongs.
        raise ConfigError(
            str(ctx.file_of(("api", "listen"))),
            "api.token_file",
            f"required when api.listen is set (listen = {api.listen!r}), "
            "unless [[api.tokens]] are given",
        )
    if api.token_file is not None and any(t.name == "default" for t in api.tokens):
        raise ctx.error(("api", "tokens"), "the token name 'default' is taken by api.token_file")
    for pool in config.pools.values():
        if pool.name in config.resources:
            raise ctx.error(
                ("pools", pool.name), f"name {pool.name!r} is used by both a resource and a pool"
            )
        _check_refs(
            ctx, ("pools", pool.name, "members"), pool.members, config.resources, "resource"
        )
    for index, schedule in enumerate(config.schedules):
        _check_schedule(ctx, ("schedules", index), schedule, config)


def _check_schedule(
    ctx: _Context, path: _KeyPath, schedule: ScheduleConfig, config: Config
) -> None:
    _check_refs(ctx, (*path, "workflow"), schedule.workflow, config.workflows, "workflow")
    _check_refs(ctx, (*path, "resources"), schedule.resources, config.resources, "resource")
    _check_refs(ctx, (*path, "pools"), schedule.pools, config.pools, "pool")
    if (schedule.cron is None) == (schedule.interval is None):
        both = "has both" if schedule.cron is not None else "needs one of"
        raise ctx.error(
            path, f"schedule {schedule.name!r} {both} 'cron' and 'interval'; give exactly one"
        )
    # The cron expression itself is parsed by jobd.service.configcheck with the timers' own
    # parser (the one that will run it), not here: one parser, and no APScheduler
    # import for the CLI commands that only read the socket path from this file.


def _check_refs(
    ctx: _Context,
    path: _KeyPath,
    names: str | tuple[str, ...],
    declared: Mapping[str, Any],
    kind: str,
) -> None:
    """Every name in ``names`` is a key of ``declared``; else an error at that item."""
    items = (
        [(path, names)]
        if isinstance(names, str)
        else [((*path, i), n) for i, n in enumerate(names)]
    )
    for where, name in items:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise ctx.error(
                where,
                f"{name!r} is not a declared {kind}{_suggest(name, declared)} (declared: {known})",
            )


# --------------------------------------------------------------------------- small helpers

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _dotted(path: _KeyPath) -> str:
    """``("workflows", "ingest", "steps", 1, "timeout")`` → ``workflows.ingest.steps[1].timeout``;
    keys that TOML would need to quote are quoted."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
            text += f".{key}" if text else key
    return text


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _show(value: Any) -> str:
    """A value as an error message shows it: strings quoted, TOML spelling otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value) if isinstance(value, str) else str(value)


def _is_number(value: Any) -> bool:
    # Excludes booleans (an int subclass) and TOML's nan/inf.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _join(items: Iterable[str]) -> str:
    return ", ".join(items) or "(none)"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _counted(kind: str, names: list[str]) -> str:
    return f"{kind} ({len(names)}): {_join(names)}"


def _describe_tokens(api: ApiConfig) -> str:
    named = [("default", api.token_file, "admin")] if api.token_file is not None else []
    named += [(t.name, t.file, t.role) for t in api.tokens]
    return _join(f"{name} ({role}, {file})" for name, file, role in named)


def _describe_roles(api: ApiConfig) -> str:
    lists = {"viewers": api.viewers, "operators": api.operators, "admins": api.admins}
    if all(value is None for value in lists.values()):
        return "not set: whoever can open the socket is admin"
    shown = [f"{key} = [{', '.join(value or ())}]" for key, value in lists.items()]
    return "; ".join(shown) + " (root and the daemon's own user are admins)"


def _describe_schedule(schedule: ScheduleConfig) -> str:
    when = (
        f"cron {schedule.cron!r} {schedule.timezone}"
        if schedule.cron is not None
        else f"every {schedule.interval:g} s"
    )
    off = "" if schedule.enabled else ", disabled"
    return f"{schedule.name} ({when} -> {schedule.workflow}{off})"


#: ``[daemon]`` keys bound at start-up (the engine's workers and run queue, the database and
#: its ``synchronous``); with the ``[api]`` keys but those below they need a restart: a
#: reload keeps their running values (:func:`keep_restart_only`). ``plugin_dirs`` is not one:
#: a reload loads the plugins of the new configuration.
RESTART_ONLY_DAEMON_KEYS = (
    "state_dir",
    "workers",
    "run_queue_size",
    "synchronous",
    "database",
    "node",
    "lease",
    "tags",
)
#: ``[api]`` keys a reload applies at once (who may do what); the rest wait for a restart.
RELOADABLE_API_KEYS = frozenset({"viewers", "operators", "admins", "tokens", "token_file"})


def keep_restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """``new`` with the restart-only keys of ``old``, and the keys (``api.socket``,
    ``daemon.workers``, ...) whose new value waits for a restart. The one place that
    says which keys a reload cannot change."""
    fixed = [f.name for f in dataclasses.fields(old.api) if f.name not in RELOADABLE_API_KEYS]
    changed = [f"api.{key}" for key in fixed if getattr(old.api, key) != getattr(new.api, key)]
    kept = {key: getattr(old.daemon, key) for key in RESTART_ONLY_DAEMON_KEYS}
    changed += [f"daemon.{key}" for key, value in kept.items() if getattr(new.daemon, key) != value]
    if not changed:
        return new, []
    api = dataclasses.replace(new.api, **{key: getattr(old.api, key) for key in fixed})
    daemon = dataclasses.replace(new.daemon, **kept)
    return dataclasses.replace(new, api=api, daemon=daemon), changed
