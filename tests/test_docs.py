"""docs/plugins.md stays true: every hook documented and tested, its example plugin runs.

The pattern of datasette's tests/test_docs.py: a hook added to JobdSpec
without documentation or a test fails here.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
import structlog

from jobd.config import Config
from jobd.core.errors import ActionError
from jobd.plugin.action import ActionContext
from jobd.plugin.hookspecs import JobdSpec
from jobd.plugin.host import PluginHost

ROOT = Path(__file__).parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = sorted(name for name in vars(JobdSpec) if name.startswith("jobd_"))
TEST_FILES = sorted(Path(__file__).parent.glob("test_*.py"))
TEST_PLUGINS = sorted((Path(__file__).parent / "plugins").rglob("*.py"))


def test_the_hook_list_is_not_empty() -> None:
    assert len(HOOKS) == 6


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    assert f"`{hook}(" in DOC, f"docs/plugins.md does not document {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_implemented_by_a_test_plugin(hook: str) -> None:
    assert any(f"def {hook}(" in path.read_text() for path in TEST_PLUGINS), (
        f"no plugin in tests/plugins implements {hook}"
    )


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_exercised_by_a_test(hook: str) -> None:
    files = [p for p in TEST_FILES if p.name != "test_docs.py"]
    assert any(hook in path.read_text() for path in files), f"no test names {hook}"


def context_members() -> list[str]:
    ctx = ActionContext(
        job_id=1,
        job={},
        step="s",
        attempt=1,
        params={},
        outputs={},
        assets=(),
        resources=(),
        workdir=ROOT,
        log=None,
        kill_grace=1.0,
    )
    attributes = [name for name in vars(ctx) if not name.startswith("_")]
    methods = [
        name
        for name, member in inspect.getmembers(ActionContext)
        if not name.startswith("_") and (inspect.isfunction(member) or isinstance(member, property))
    ]
    return sorted(attributes + methods)


@pytest.mark.parametrize("member", context_members())
def test_action_context_member_is_documented(member: str) -> None:
    assert re.search(rf"`(await )?ctx\.{member}\b", DOC), f"ActionContext.{member} undocumented"


def example_plugin() -> str:
    marker = DOC.index("<!-- example-plugin -->")
    match = re.compile(r"```python\n(.*?)```", re.S).search(DOC, marker)
    assert match is not None
    return match.group(1)


async def test_the_documented_example_plugin_works(tmp_path: Path) -> None:
    folder = tmp_path / "plugins.d"
    folder.mkdir()
    (folder / "media_notes.py").write_text(example_plugin())
    host = PluginHost([folder], builtin=False, entry_points=False)
    host.load()
    assert [(i.name, i.actions, i.error) for i in host.infos()] == [
        ("media_notes", ("line-count",), None)
    ]

    (tmp_path / "subs.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nHello\n")
    ctx = ActionContext(
        job_id=1,
        job={},
        step="count",
        attempt=1,
        params={},
        outputs={},
        assets=(),
        resources=(),
        workdir=tmp_path,
        log=structlog.get_logger("test"),
        kill_grace=1.0,
        file_roots=[tmp_path],
    )
    line_count = host.actions["line-count"].run
    assert await line_count(ctx, path=str(tmp_path / "subs.srt")) == {"lines": 3}
    with pytest.raises(ActionError, match="outside the file roots"):
        await line_count(ctx, path="/etc/passwd")

    assert host.validate_job({"workflow": "subtitles", "params": {}}, Config()) == [
        "the subtitles workflow needs params.path"
    ]
    assert host.select_resource("enc", ["a", "b-gpu"], {"params": {"gpu": True}}) == "b-gpu"
    assert host.select_resource("enc", ["a", "b-gpu"], {"params": {}}) == "a"
    with structlog.testing.capture_logs() as logs:
        host.startup(Config())
        host.job_event({"workflow": "subtitles"}, {"to": "failed"})
        host.shutdown()
    assert {
        "event": "failed runs by workflow",
        "failures": {"subtitles": 1},
        "log_level": "info",
    } in logs
    assert not any(e["event"] == "plugin hook raised; ignored" for e in logs)


def test_every_shipped_action_is_in_the_docs() -> None:
    host = PluginHost([], builtin=True, entry_points=False)
    host.load()
    for name in host.actions:
        assert f"`{name}`" in DOC, f"shipped action {name} not in docs/plugins.md"
