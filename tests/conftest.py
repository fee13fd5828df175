from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

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
