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


# --------------------------------------------------------------------------- jobd run refuses

NAP_PLUGIN = """
import pathlib

import jobd

# Each execution of this file leaves a line: a reload must not run an unchanged file again.
with open(pathlib.Path(__file__).with_suffix(".loads"), "a") as out:
    out.write("loaded\\n")


async def nap(ctx, minutes=0):
    return {"napped": minutes, "version": VERSION}


@jobd.hookimpl
def jobd_actions():
    return [jobd.Action("nap", nap, "nap", params=(jobd.Param("minutes", "number"),))]
"""


def nap_plugin(version: int) -> str:
    return NAP_PLUGIN + f"\nVERSION = {version}\n"


NAP_WORKFLOW = (
    '\n[workflows.nap]\nsteps = [{ name = "n", action = "nap", params = { minutes = 2 } }]\n'
)


@pytest.mark.parametrize(
    ("workflows", "words"),
    [
        ('[workflows.x]\nsteps = [{ name = "a", action = "e2e_nope" }]\n', ["unknown action"]),
        ("[workflows.x]\nsteps = []\n", ["non-empty array"]),
        (
            '[workflows.x]\nsteps = [{ name = "a", action = "sleep",'
            ' params = { seconds = "two" } }]\n',
            ["workflows.x.steps[0].params.seconds", "expected a number, got 'two'"],
        ),
        (
            '[workflows.x]\nstart_script = "/etc/passwd"\n'
            'steps = [{ name = "a", action = "e2e_echo" }]\n',
            ["workflows.x.start_script", "not executable"],
        ),
    ],
    ids=["unknown-action", "no-steps", "bad-param", "script-not-executable"],
)
def test_jobd_run_refuses_what_the_config_names_before_creating_anything(
    base: Path, workflows: str, words: list[str]
) -> None:
    layout = e2e.write_layout(base, workflows=workflows)
    done = e2e.run_daemon_to_exit(layout.config)
    assert done.returncode == 1, done.stderr
    assert f"jobd: {layout.config}: " in done.stderr
    for word in words:
        assert word in done.stderr
    assert not layout.socket.exists() and not layout.state.exists()


# --------------------------------------------------------------------------- reload


def test_a_reload_loads_new_and_changed_plugin_files_and_says_so(base: Path) -> None:
    with e2e.running_daemon(base) as daemon:
        plugins, config = daemon.layout.plugins, daemon.layout.config
        good = config.read_text()
        (plugins / "nap.py").write_text(nap_plugin(1))
        config.write_text(good + NAP_WORKFLOW)
        done = daemon.cli("reload")
        assert done.returncode == 0, done.stderr
        assert f"loaded new plugin {plugins / 'nap.py'} (actions: nap)" in done.stdout
        job = daemon.cli_json("submit", "nap", "--wait")
        assert job["state"] == "completed"
        assert job["steps"][0]["outputs"] == {"napped": 2, "version": 1}

        (plugins / "nap.py").write_text(nap_plugin(2))
        done = daemon.cli("reload")
        assert f"reloaded changed plugin {plugins / 'nap.py'}" in done.stdout, done.stdout
        job = daemon.cli_json("submit", "nap", "--wait")
        assert job["steps"][0]["outputs"]["version"] == 2

        done = daemon.cli("reload")  # nothing changed: the file is not executed again
        assert done.returncode == 0 and "plugin" not in done.stdout, done.stdout
        assert (plugins / "nap.loads").read_text().splitlines() == ["loaded", "loaded"]
        reloaded = [e for e in daemon.log_events() if e.get("event") == "config reloaded"]
        assert [len(e["plugins"]) for e in reloaded] == [1, 1, 0]


def test_a_reload_refuses_a_config_its_plugins_do_not_satisfy(base: Path) -> None:
    with e2e.running_daemon(base) as daemon:
        config = daemon.layout.config
        config.write_text(config.read_text() + NAP_WORKFLOW)  # no plugin offers "nap" yet
        done = daemon.cli("reload")
        assert done.returncode == 1
        assert "workflows.nap.steps[0].action: unknown action 'nap'" in done.stderr
        refused = [e for e in daemon.log_events() if "refused" in str(e.get("event"))]
        assert refused and "unknown action 'nap'" in refused[-1]["error"]
        done = daemon.cli("submit", "demo", "-p", "who=x", "--wait")  # the old config runs on
        assert done.returncode == 0, done.stderr
        assert daemon.cli("submit", "nap").returncode == 1
