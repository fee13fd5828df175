"""The configuration's records: frozen dataclasses, one per section (SPEC §5).

Their fields are the keys each section accepts: :mod:`jobd.config.sections` builds
its checkers from them (:func:`jobd.config.checks.checkers_for`), so a key added
here and not checked there fails at import. Defaults here are the documented
defaults of the keys.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: A key path: table keys and array indexes from the root, e.g. ("workflows", "x", "steps", 1).
KeyPath = tuple[str | int, ...]


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
    #: Tags a node must have (``[daemon] tags``) to run this workflow's jobs (SPEC §10).
    requires: tuple[str, ...] = ()


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
    #: Which file set each key path, for errors found after loading
    #: (:func:`jobd.config.error_at`).
    origins: Mapping[KeyPath, Path] = field(default_factory=dict, compare=False, repr=False)
