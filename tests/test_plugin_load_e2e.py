"""The real daemon with broken and changing drop-in plugins: its log, start-up and reloads."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import e2e

BROKEN_PLUGIN = """
import jobd

secret_local = "s3cr3t-local-value"
numbers = list(range(40))
raise RuntimeError("broken on purpose")
"""


@pytest.fixture
def base() -> Iterator[Path]:
    folder = e2e.short_dir()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def start_with_broken_plugin(base: Path, fmt: str, level: str) -> e2e.Daemon:
    layout = e2e.write_layout(base)
    (layout.plugins / "broken.py").write_text(BROKEN_PLUGIN)
    text = layout.config.read_text()
    text = text.replace('format = "json"', f'format = "{fmt}"')
    layout.config.write_text(text.replace('level = "info"', f'level = "{level}"'))
    return e2e.start_daemon(layout)


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_broken_drop_in_is_one_log_line_at_the_default_level(base: Path, fmt: str) -> None:
    daemon = start_with_broken_plugin(base, fmt, "info")
    try:
        assert daemon.stop() == 0
    finally:
        daemon.notify.close()
    text = daemon.log_text()
    lines = [line for line in text.splitlines() if "broken" in line]
    assert len(lines) == 1, text
    assert "plugin failed to load" in lines[0]
    assert str(daemon.layout.plugins / "broken.py") in lines[0]
    assert "RuntimeError: broken on purpose" in lines[0]
    assert "Traceback" not in text and "s3cr3t-local-value" not in text


def test_the_traceback_of_a_broken_drop_in_is_logged_at_debug(base: Path) -> None:
    daemon = start_with_broken_plugin(base, "json", "debug")
    try:
        assert daemon.stop() == 0
    finally:
        daemon.notify.close()
    events = [e for e in daemon.log_events() if e.get("plugin") == "broken"]
    assert [e["event"] for e in events] == ["plugin failed to load", "plugin load traceback"]
    assert "Traceback" in events[1]["exception"]
    assert "broken on purpose" in events[1]["exception"]
