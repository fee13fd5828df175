"""Every ``$ jobd ...`` example of docs/bookings.md runs against config/dev.toml (issue 9 item 21).

The examples are run in the order of the page, each through ``bash`` (so
``a && b`` and ``\\`` continuations work), against the real daemon started on
a copy of ``config/dev.toml`` (its relative paths then point into the copy).
Checked: each command's exit status (0, or what the ``$ echo $?`` after it
shows), and the output lines that do not depend on the clock: bare job ids
and ``job N: ...`` reports on stdout, ``jobd...`` messages on stderr.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import e2e

DOC = e2e.ROOT / "docs" / "bookings.md"


@dataclass
class Example:
    command: str
    output: list[str] = field(default_factory=list)
    status: int = 0


def examples(text: str) -> list[Example]:
    """The ``$`` commands of the page's console blocks, with the output shown after each."""
    found: list[Example] = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = iter(block.splitlines())
        for line in lines:
            if line.startswith("$ echo $?"):
                found[-1].status = int(next(lines))
            elif line.startswith("$ "):
                command = line[2:]
                while command.endswith("\\"):
                    command = command[:-1] + " " + next(lines).strip()
                found.append(Example(command))
            elif found:
                found[-1].output.append(line)
    return found


def checked_lines(example: Example) -> list[str]:
    """The output lines that do not depend on when the page was written."""
    return [
        line
        for line in example.output
        if re.fullmatch(r"\d+", line) or re.match(r"(job \d+: |jobd)", line)
    ]


@pytest.fixture
def demo_daemon() -> Iterator[tuple[e2e.Daemon, Path]]:
    """The real daemon on a copy of config/dev.toml, and a folder with a ``jobd`` command."""
    base = e2e.short_dir()
    shutil.copytree(e2e.ROOT / "config", base / "config", ignore=shutil.ignore_patterns("jobd.d"))
    (base / "var" / "media").mkdir(parents=True)
    layout = e2e.Layout(base)
    layout.config = base / "config" / "dev.toml"
    layout.socket = base / "var" / "jobd.sock"
    bin_dir = base / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "jobd"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m jobd "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    daemon = e2e.start_daemon(layout)
    try:
        yield daemon, bin_dir
        assert daemon.stop() == 0, daemon.log_text()
    finally:
        if daemon.alive:
            daemon.proc.kill()
            daemon.proc.wait()
        daemon.notify.close()
        shutil.rmtree(base, ignore_errors=True)


def test_the_page_has_examples() -> None:
    found = examples(DOC.read_text())
    assert len(found) >= 10 and any(e.status for e in found)


def test_every_bookings_example_runs_against_the_demo_config(
    demo_daemon: tuple[e2e.Daemon, Path],
) -> None:
    daemon, bin_dir = demo_daemon
    env = e2e.jobd_env(JOBD_SOCKET=str(daemon.layout.socket))
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    for example in examples(DOC.read_text()):
        done = subprocess.run(
            ["bash", "-c", example.command],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        where = f"docs/bookings.md: $ {example.command}\n{done.stdout}{done.stderr}"
        assert done.returncode == example.status, where
        for line in checked_lines(example):
            stream = done.stderr if line.startswith("jobd") else done.stdout
            assert line in stream.splitlines(), f"{where}\nexpected: {line}"
