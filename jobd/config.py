"""TOML configuration (one file + ``jobd.d/*.toml`` drop-ins) → a validated, frozen :class:`Config`.

SPEC §5. Every error names the file, the key path and the problem
(:class:`jobd.errors.ConfigError`); an unknown key is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

DEFAULT_CONFIG_PATH = Path("/etc/jobd/jobd.toml")


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

    @property
    def db_path(self) -> Path:
        return self.state_dir / "jobd.db"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    socket: Path = Path("/run/jobd/jobd.sock")
    socket_mode: int = 0o660
    listen: str | None = None
    token_file: Path | None = None


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


def load_config(path: Path) -> Config:
    """Read ``path`` and ``<its folder>/jobd.d/*.toml`` (name order), merge, validate.

    Raises :class:`jobd.errors.ConfigError` naming the file, key path and problem.
    """
    raise NotImplementedError
