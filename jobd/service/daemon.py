"""The composition root: ``jobd run``.

One process, one anyio task group::

    main(): config (exit 1 before anything exists if invalid) → logging → state lock
      └─ anyio.run(Daemon.run)
           open_store → PluginHost.load → Engine + Metrics → create_app
           task group: signals · engine.run · API on the Unix socket (· TCP + token)
                       · watchdog pings (+ a store probe) when systemd asks for them

Signals (SPEC §8): the first SIGTERM/SIGINT drains (no new admissions, running
steps get ``shutdown_grace``, then they are interrupted and recorded), the API
stays up meanwhile so operators can watch, then everything stops and jobd
exits 0; a second one forces the stop at once. SIGHUP reloads the config,
the same way ``POST /v1/reload`` does.
"""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from jobd import __version__
from jobd.config import Config, keep_restart_only, load_config, resolve_config_path
from jobd.config.access import Access, Token, load_tokens
from jobd.core.errors import ConfigError, JobdError
from jobd.engine import Engine
from jobd.logging import configure_logging, set_job_log_sink
from jobd.plugin.host import PluginHost
from jobd.service.api import create_app, end_event_streams
from jobd.service.configcheck import check_config, load_checked, load_plugins
from jobd.service.httpserver import parse_listen, serve
from jobd.service.metrics import Metrics
from jobd.service.systemd import Notifier, forget_notify_env, watchdog_interval, watchdog_loop
from jobd.store import Store, open_store

log = structlog.get_logger("jobd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130


class AlreadyRunning(JobdError):
    """Another jobd holds the lock on the same state directory."""

    code = "already-running"

    def __init__(self, state_dir: Path, pid: str) -> None:
        holder = f" (pid {pid})" if pid else ""
        super().__init__(
            f"another jobd is already running on {state_dir}{holder}",
            {"state_dir": str(state_dir), "pid": pid},
        )


class StateLock:
    """An exclusive ``flock`` on ``<state_dir>/jobd.lock``, held for the process' lifetime.

    The kernel drops it when the process dies, however it dies, so a crash never
    leaves a stale lock. The file holds the owner's pid, for the error message.
    The descriptor is close-on-exec: steps and scripts must not inherit the lock.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def acquire(cls, state_dir: Path) -> StateLock:
        """Create ``state_dir`` if needed and lock it; raises :class:`AlreadyRunning`."""
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        path = state_dir / "jobd.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(state_dir, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Unlock (by closing). The file stays: unlinking it would race a starting daemon."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


class StoreProbe:
    """Proves the database writer still commits: an empty commit every ``interval`` s.

    :meth:`healthy` turns false when none has landed for two intervals, which
    withholds the watchdog ping so that systemd restarts a wedged daemon.
    """

    def __init__(self, flush: Callable[[], Awaitable[None]], interval: float) -> None:
        self._flush = flush
        self.interval = interval
        self.last_ok = time.monotonic()

    async def run(self) -> None:
        while True:
            with anyio.move_on_after(self.interval * 2):
                await self._flush()
                self.last_ok = time.monotonic()
            await anyio.sleep(self.interval)

    def healthy(self) -> bool:
        return time.monotonic() - self.last_ok < self.interval * 2


def _keep_restart_only(old: Config, new: Config) -> tuple[Config, list[str]]:
    """Keep what cannot change while running (``jobd.config.RESTART_ONLY_DAEMON_KEYS`` and
    ``[api]``), and say which changes wait for a restart."""
    new, changed = keep_restart_only(old, new)
    return new, [f"{', '.join(changed)}: take effect on restart"] if changed else []


class Daemon:
    """One running jobd: owns the task group, the reload path and the stop path."""

    def __init__(
        self,
        config_path: Path,
        config: Config,
        notifier: Notifier,
        *,
        plugins: PluginHost | None = None,
        watchdog: float | None = None,
        tokens: Sequence[Token] = (),
        tcp: tuple[str, int] | None = None,
    ) -> None:
        self.config_path = config_path
        self.config = config
        #: Loaded and checked with ``config`` (:func:`load_checked`); loaded in :meth:`run`
        #: when not given.
        self.plugins = plugins
        self.notifier = notifier
        self.watchdog = watchdog
        self.tcp = tcp
        #: Who may do what; shared by both listeners' apps, updated in place on reload.
        self.access = Access.from_config(config.api, tokens)
        self.started_at = time.time()
        self.engine: Engine | None = None
        self._tg: TaskGroup | None = None
        self._ready = False
        self._stopping = False
        self._reload_lock = anyio.Lock()

    # ------------------------------------------------------------------ start-up

    async def run(self) -> None:
        """Run until a signal stops it. Raises whatever makes start-up or a service fail."""
        daemon_cfg = self.config.daemon
        async with open_store(
            daemon_cfg.db_path,
            synchronous=daemon_cfg.synchronous,
            database=daemon_cfg.database,
            node=daemon_cfg.node,
        ) as store:
            if self.plugins is None:
                self.plugins = load_plugins(self.config)
            self.plugins.startup(self.config)
            try:
                await self._run_services(store, self.plugins)
            finally:
                self.plugins.shutdown()  # the ones running now (a reload may have swapped them)
        log.info("jobd stopped")

    async def _run_services(self, store: Store, plugins: PluginHost) -> None:
        engine = Engine(self.config, store, plugins)
        self.engine = engine
        metrics = Metrics(engine)
        engine.add_listener(metrics.observe)
        app = partial(
            create_app,
            engine,
            version=__version__,
            started_at=self.started_at,
            reload=self.reload,
            metrics=metrics,
            access=self.access,
        )
        api = self.config.api
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await tg.start(self._receive_signals)
            await tg.start(engine.run)
            # Building an app is ~0.1 s of Python on a quiet machine and seconds on a busy
            # one: in a thread, so that the loop keeps renewing a cluster node's lease
            # meanwhile (a node whose renewals stop past the lease's end kills itself).
            unix_app = await anyio.to_thread.run_sync(app)
            await tg.start(
                partial(
                    serve,
                    unix_app,
                    unix_socket=api.socket,
                    socket_mode=api.socket_mode,
                    on_stop=partial(end_event_streams, unix_app),
                )
            )
            if self.tcp is not None:
                tcp_app = await anyio.to_thread.run_sync(partial(app, tcp=True))
                await tg.start(
                    partial(
                        serve,
                        tcp_app,
                        unix_socket=None,
                        tcp=self.tcp,
                        on_stop=partial(end_event_streams, tcp_app),
                    )
                )
            self._announce_ready()
            if self.watchdog is not None:
                probe = StoreProbe(store.flush, self.watchdog)
                tg.start_soon(probe.run)
                tg.start_soon(watchdog_loop, self.notifier, self.watchdog, probe.healthy)

    def _status(self) -> str:
        where = str(self.config.api.socket)
        if self.tcp is not None:
            where += f" and {self.tcp[0]}:{self.tcp[1]}"
        return f"serving on {where}; {self.config.daemon.workers} workers"

    def _announce_ready(self) -> None:
        self._ready = True
        tune_gc()
        self.notifier.ready(self._status())
        log.info(
            "jobd ready",
            version=__version__,
            pid=os.getpid(),
            socket=str(self.config.api.socket),
            config=str(self.config_path),
            watchdog=self.watchdog,
        )

    # ------------------------------------------------------------------ signals

    async def _receive_signals(self, *, task_status: TaskStatus[None]) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                self._on_signal(signal.Signals(signum))

    def _on_signal(self, signum: signal.Signals) -> None:
        tg = self._tg
        assert tg is not None
        if signum == signal.SIGHUP:
            if self._ready and not self._stopping:
                tg.start_soon(self._reload_on_signal)
            else:
                log.warning(
                    "SIGHUP ignored: not serving", starting=not self._ready, stopping=self._stopping
                )
        elif self._stopping:
            log.warning("second stop signal: stopping now, without waiting", signal=signum.name)
            tg.cancel_scope.cancel()
        elif not self._ready:
            log.warning("stop signal during start-up: stopping now", signal=signum.name)
            self._stopping = True
            tg.cancel_scope.cancel()
        else:
            self._stopping = True
            tg.start_soon(self._stop_gracefully, signum)

    async def _stop_gracefully(self, signum: signal.Signals) -> None:
        """Drain the engine (the API keeps answering meanwhile), then end the task group."""
        grace = self.config.daemon.shutdown_grace
        self.notifier.stopping(f"draining: up to {grace:g} s for running steps")
        log.info("stopping: draining running jobs", signal=signum.name, grace=grace)
        engine = self.engine
        assert engine is not None and self._tg is not None
        await engine.drain(grace)
        log.info("drained; shutting down")
        self._tg.cancel_scope.cancel()

    # ------------------------------------------------------------------ reload

    async def _reload_on_signal(self) -> None:
        try:
            await self.reload()
        except JobdError:
            pass  # already logged by reload(); the old config stays
        except Exception:
            log.exception("config reload failed; keeping the running config")

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the config file and its plugins; swap them in if valid.

        Returns ``{"warnings": [...], "plugins": [...]}``: what needs attention,
        and what the reload did to the plugins (new, changed, removed, broken
        files). Raises :class:`ConfigError` for an invalid configuration (logged,
        the running config and plugins stay). Used by SIGHUP and ``POST
        /v1/reload``; reloads never overlap.
        """
        async with self._reload_lock:
            self.notifier.reloading("reloading configuration")
            try:
                return await self._reload()
            finally:
                self.notifier.ready(self._status())

    async def _reload(self) -> dict[str, list[str]]:
        old_plugins = self.plugins
        try:
            new, plugins = await anyio.to_thread.run_sync(
                load_checked, self.config_path, old_plugins
            )
        except ConfigError as exc:
            log.error(
                "config reload refused; keeping the running config",
                error=str(exc),
                config=str(self.config_path),
            )
            raise
        new, warnings = _keep_restart_only(self.config, new)
        try:
            tokens = await anyio.to_thread.run_sync(load_tokens, new.api)
        except ConfigError as exc:
            log.error("config reload refused; keeping the running config", error=str(exc))
            raise
        engine = self.engine
        assert engine is not None and old_plugins is not None
        warnings += await engine.reload(new, plugins)
        self.plugins = plugins
        old_plugins.shutdown(only=old_plugins.retired_by(plugins))
        plugins.startup(new, only=plugins.fresh())
        configure_logging(new.logging)
        self.access.update(new.api, tokens)
        self.config = new
        changes = plugins.changes()
        log.info(
            "config reloaded",
            config=str(self.config_path),
            warnings=warnings,
            plugins=changes,
            workflows=sorted(new.workflows),
        )
        return {"warnings": warnings, "plugins": changes}


# ---------------------------------------------------------------------- main


@dataclasses.dataclass(frozen=True)
class _Prepared:
    path: Path
    config: Config
    plugins: PluginHost
    tokens: list[Token]
    tcp: tuple[str, int] | None


def _prepare(config_path: str | None) -> _Prepared:
    """Everything that can be refused before jobd creates anything. Raises ConfigError.

    Logging is set up from the configuration before the plugins load, so that a
    broken plugin's line has the configured shape.
    """
    path = Path(os.path.abspath(resolve_config_path(config_path)))
    config = load_config(path)
    configure_logging(config.logging)
    plugins = load_plugins(config)
    check_config(config, plugins)
    tcp = parse_listen(config.api.listen) if config.api.listen else None
    # Read (and mode-checked) even without TCP: a bad token file is refused now, not
    # at the reload that turns TCP on.
    tokens = load_tokens(config.api)
    return _Prepared(path, config, plugins, tokens, tcp)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def _report_fatal(exc: BaseException) -> None:
    for leaf in _leaves(exc):
        if isinstance(leaf, JobdError):
            log.error("jobd stopped: " + leaf.message, code=leaf.code)
        else:
            log.error("jobd stopped on an unexpected error", exc_info=leaf)


def main(config_path: str | None) -> int:
    """``jobd run``: run the daemon in the foreground; returns the exit status.

    1 (reason on stderr) for an invalid config, a missing/unsafe token file, or
    another jobd on the same state directory, before a socket or database
    exists; 1 (reason in the log) for a fatal error later; 0 after a stop by
    signal.
    """
    try:
        ready = _prepare(config_path)
    except ConfigError as exc:
        for line in str(exc).splitlines():  # several problems: one a line
            print(f"jobd: {line}", file=sys.stderr)
        return EXIT_FAILURE
    config = ready.config
    try:
        lock = StateLock.acquire(config.daemon.state_dir)
    except (AlreadyRunning, OSError) as exc:
        print(
            f"jobd: {exc if isinstance(exc, AlreadyRunning) else _os_problem(exc)}", file=sys.stderr
        )
        return EXIT_FAILURE
    notifier = Notifier.from_env()
    interval = watchdog_interval()
    forget_notify_env()  # steps and scripts must not talk to systemd in our name
    _start_fencing(config)
    daemon = Daemon(
        ready.path,
        config,
        notifier,
        plugins=ready.plugins,
        watchdog=interval,
        tokens=ready.tokens,
        tcp=ready.tcp,
    )
    with lock:
        try:
            anyio.run(
                daemon.run, backend="asyncio", backend_options={"use_uvloop": _uvloop_available()}
            )
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except BaseException as exc:  # the process' last word: log it, exit 1
            _report_fatal(exc)
            return EXIT_FAILURE
        finally:
            set_job_log_sink(None)
            notifier.close()
    return EXIT_OK


def _start_fencing(config: Config) -> None:
    """A node of a cluster: fork its watchdog (``jobd.engine.fencing``) now, before the event
    loop and any thread exist (a fork copies only the calling thread)."""
    if config.daemon.database is not None:
        from jobd.engine import fencing

        fencing.start(config.daemon.lease)


#: Allocations between two collections of the garbage collector's young generation
#: (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Once the daemon is ready: what start-up built (modules, config, plugins, the booking
    index, the jobs recovered) leaves the collector's generations for good (``gc.freeze``;
    reference counting still frees it), and the young generation is collected every
    :data:`GC_YOUNG_THRESHOLD` allocations. A job's records are freed by their reference
    counts, not by the collector, whose passes over every live object took a fifth of the
    daemon's CPU on a batch submission (docs/performance.md)."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _uvloop_available() -> bool:
    """uvloop's event loop: about a tenth less CPU per job than asyncio's (bench/)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _os_problem(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
