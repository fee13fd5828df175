from __future__ import annotations

import logging
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog

from jobd import logging as jlog
from tests import e2e
from tests.enginekit import pid_gone


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture
def pidfile(tmp_path: Path) -> Iterator[Path]:
    """Where a child writes its grandchild's pid; the grandchild is killed if a test fails."""
    path = tmp_path / "grandchild.pid"
    yield path
    pid = read_pid(path)
    if pid is not None and not pid_gone(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def base() -> Iterator[Path]:
    """A short folder for a real daemon's files (a Unix socket path must stay short)."""
    path = e2e.short_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def logging_restored() -> Iterator[None]:
    """Leave structlog, the root logger and the noisy libraries' levels as they were."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    levels = {n: logging.getLogger(n).level for n in ("uvicorn.access", "apscheduler", "aiosqlite")}
    try:
        yield
    finally:
        jlog.set_job_log_sink(None)
        if jlog._state.handler is not None:
            root.removeHandler(jlog._state.handler)
            jlog._state.handler = None
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lvl in levels.items():
            logging.getLogger(name).setLevel(lvl)
        structlog.reset_defaults()


class ListLog:
    """A structlog-shaped logger that keeps what it is given."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.records.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.records.append(("warning", event, kw))

    def lines(self, stream: str | None = None) -> list[str]:
        """Lines a process printed (on ``stream``, or on either)."""
        return [
            kw["line"]
            for _, event, kw in self.records
            if event == "process output" and stream in (None, kw["stream"])
        ]

    def output(self) -> list[dict[str, Any]]:
        """What a workflow script printed, one record per line."""
        return [kw for _, event, kw in self.records if event == "script output"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium (Debian's, through Playwright) per browser test module. Not per session:
    Playwright's sync API holds an asyncio loop while it lives, which the async tests of
    the modules that follow must not find."""
    from playwright.sync_api import sync_playwright

    from tests.webkit import launch_options

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**launch_options())
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A real PostgreSQL server (tests/pgserver.py says which): its maintenance URL."""
    from tests import pgserver

    with pgserver.server() as url:
        yield url


@pytest.fixture(scope="session")
def pg_template(pg_server: str) -> Iterator[str]:
    """A database migrated once per test process by the store (tests/pgserver.py): its name."""
    from tests import pgserver

    with pgserver.migrated_template(pg_server) as name:
        yield name


@pytest.fixture
def pg_url(pg_server: str, pg_template: str) -> Iterator[str]:
    """A fresh database on the test server for one test, dropped after it: a copy of
    ``pg_template``, so it holds this jobd's schema and no row (the migrations are run
    once per process, not per test; ``pg_empty_url`` for a database with no schema)."""
    from tests import pgserver

    with pgserver.fresh_database(pg_server, pg_template) as url:
        yield url


@pytest.fixture
def pg_empty_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database for one test (no schema yet), dropped after it."""
    from tests import pgserver

    with pgserver.fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def cluster(pg_url: str, base: Path) -> Iterator[Any]:
    """A :class:`tests.cluster.Cluster` on a fresh database, no node started yet; every node
    still running at the end is stopped (tests/cluster.py)."""
    from tests.cluster import Cluster

    nodes = Cluster(pg_url, base)
    try:
        yield nodes
    finally:
        nodes.close()
