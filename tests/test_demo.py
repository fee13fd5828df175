"""``scripts/demo`` for real, in a copy of the checkout's demo files (issue 9 items 17, 18).

The copy has the real ``scripts/demo``, ``config/`` and this checkout's
``.venv`` (linked); its ``scripts/setup`` is a no-op so nothing is installed.
The daemon it starts is the real one, on ``config/dev.toml``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import e2e


@pytest.fixture
def checkout() -> Iterator[Path]:
    root = e2e.short_dir()  # var/jobd.sock must stay a short path
    (root / "scripts").mkdir()
    shutil.copy2(e2e.ROOT / "scripts" / "demo", root / "scripts" / "demo")
    (root / "scripts" / "setup").write_text("#!/bin/sh\nexit 0\n")
    (root / "scripts" / "setup").chmod(0o755)
    shutil.copytree(e2e.ROOT / "config", root / "config", ignore=shutil.ignore_patterns("jobd.d"))
    (root / ".venv").symlink_to(e2e.ROOT / ".venv")
    try:
        yield root
    finally:
        pid = root / "var" / "jobd.pid"
        if pid.exists():
            demo(root, "stop")
        shutil.rmtree(root, ignore_errors=True)


def demo(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBD_")}
    return subprocess.run(
        ["bash", str(root / "scripts" / "demo"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_demo_appends_its_log_stops_cleanly_and_exports_the_config(checkout: Path) -> None:
    first = demo(checkout, "")
    assert first.returncode == 0, first.stdout + first.stderr
    sock, config = checkout / "var" / "jobd.sock", checkout / "config" / "dev.toml"
    assert f"export JOBD_SOCKET={sock} JOBD_CONFIG={config}" in first.stdout
    stopped = demo(checkout, "stop")
    assert stopped.returncode == 0 and "jobd stopped" in stopped.stdout, stopped.stderr
    log = checkout / "var" / "jobd.log"
    earlier = log.read_text()
    again = demo(checkout, "")
    assert again.returncode == 0, again.stdout + again.stderr
    assert log.read_text().startswith(earlier)  # appended, not truncated
    assert log.read_text().count("started by scripts/demo") == 2
    # The exported shell finds both the daemon and its config.
    env = e2e.jobd_env(JOBD_SOCKET=str(sock), JOBD_CONFIG=str(config))
    checked = e2e.run_cli("check-config", env=env)
    assert checked.returncode == 0 and f"{config}: OK" in checked.stdout, checked.stderr
    assert demo(checkout, "stop").returncode == 0


def test_demo_stop_with_a_stale_pidfile_says_so(checkout: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    (checkout / "var").mkdir()
    (checkout / "var" / "jobd.pid").write_text(f"{dead.pid}\n")
    stopped = demo(checkout, "stop")
    assert stopped.returncode == 0
    assert stopped.stderr == ""
    assert stopped.stdout.strip() == (
        f"jobd is not running (stale var/jobd.pid: no process {dead.pid}); removed the pidfile"
    )
    assert not (checkout / "var" / "jobd.pid").exists()
    assert demo(checkout, "stop").stdout.strip() == "jobd is not running (no var/jobd.pid)"
