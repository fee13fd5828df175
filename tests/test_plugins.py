"""PluginHost: discovery, broken plugins, guarded hook calls; run_isolated in a worker process."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from structlog.testing import capture_logs

from jobd.config import Config
from jobd.core.errors import ActionError, ConfigError
from jobd.plugin.action import ActionContext
from jobd.plugin.host import PluginHost, PluginInfo, builtin_plugin_dir, dropin_module_name
from jobd.run.isolation import context_data, run_isolated

PLUGINS = Path(__file__).parent / "plugins"
GOOD = PLUGINS / "good"


def host_for(*folders: Path, builtin: bool = False) -> PluginHost:
    """A loaded host over test plugin folders only (no entry points of this environment)."""
    host = PluginHost(folders, builtin=builtin, entry_points=False)
    host.load()
    return host


def info(host: PluginHost, name: str) -> PluginInfo:
    return next(i for i in host.infos() if i.name == name)


@pytest.fixture
def events_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tests/plugins/good/good_echo.py's observers write their JSON lines."""
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("JOBD_TEST_EVENTS", str(path))
    return path


def recorded(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- discovery


def test_jobd_actions_of_a_good_drop_in_are_registered() -> None:
    host = host_for(GOOD)
    good = info(host, "good_echo")
    assert good.error is None
    assert good.source == "drop-in"
    assert good.actions == ("echo",)
    assert good.file == str((GOOD / "good_echo.py").absolute())
    assert good.module == dropin_module_name(GOOD / "good_echo.py")
    assert sys.modules[good.module].__file__ == good.file
    assert host.action_plugin("echo") == good
    assert set(host.actions) == {"echo"}
    assert host.isolation_target("echo") == (good.file, good.module)


def test_a_module_without_hooks_is_not_a_plugin() -> None:
    with capture_logs() as logs:
        host = host_for(GOOD)
    assert "not_a_plugin" not in [i.name for i in host.infos()]
    assert any(
        e["event"].startswith("not a plugin") and e["plugin"] == "not_a_plugin" for e in logs
    )


BROKEN = [
    (PLUGINS, "broken_syntax", "SyntaxError: invalid syntax (broken_syntax.py, line 3)"),
    (
        PLUGINS / "import_error",
        "import_error",
        "ModuleNotFoundError: No module named 'jobd_no_such_module'",
    ),
    (PLUGINS / "body_error", "body_error", "RuntimeError: boom while importing body_error"),
    (PLUGINS / "raising_actions", "raising_actions", "ValueError: cannot list my actions"),
    (
        PLUGINS / "garbage",
        "garbage_return",
        "TypeError: jobd_actions() returned dict, not a list of Action",
    ),
    (PLUGINS / "garbage", "garbage_item", "TypeError: jobd_actions() item 0 is str, not Action"),
    (PLUGINS / "garbage", "bad_action_name", "ValueError: action name 'Bad Name' does not match"),
    (PLUGINS / "garbage", "sync_run", "TypeError: action 'sync-run': run is not an async"),
    (PLUGINS / "bad_hooks", "typo_hook", "TypeError: unknown hook jobd_job_events"),
    (PLUGINS / "bad_hooks", "wrapper", "hook wrappers are not supported"),
    (PLUGINS / "bad_hooks", "wrong_args", "Argument(s) {'evt'} are declared in the hookimpl"),
]


@pytest.mark.parametrize(("folder", "name", "error"), BROKEN, ids=[b[1] for b in BROKEN])
def test_a_broken_plugin_is_recorded_and_the_others_still_load(
    folder: Path, name: str, error: str
) -> None:
    with capture_logs() as logs:
        host = host_for(folder, GOOD)
    broken = info(host, name)
    assert broken.error is not None and error in broken.error
    assert broken.file == str((folder / f"{name}.py").absolute())
    assert broken.actions == ()
    assert info(host, "good_echo").error is None
    assert set(host.actions) == {"echo"}
    failures = [e for e in logs if e["event"] == "plugin failed to load" and e["plugin"] == name]
    assert failures and failures[0]["file"] == broken.file and error in failures[0]["error"]


def test_every_broken_kind_at_once_leaves_the_working_plugins_loaded() -> None:
    folders = {folder for folder, _, _ in BROKEN}
    host = host_for(*sorted(folders), GOOD, PLUGINS / "misbehaving")
    errors = {i.name for i in host.infos() if i.error}
    assert errors == {name for _, name, _ in BROKEN}
    assert set(host.actions) == {"echo", "non-dict", "raises", "hangs", "blocks"}


def test_a_broken_plugins_other_hooks_are_never_called() -> None:
    # wrapper.py and wrong_args.py implement jobd_job_event, but are refused.
    host = host_for(PLUGINS / "bad_hooks")
    assert not host.observes_events
    assert host_for(GOOD).observes_events


def test_duplicate_action_name_is_a_config_error_naming_both_files() -> None:
    with pytest.raises(ConfigError) as caught:
        host_for(PLUGINS / "duplicate")
    message = str(caught.value)
    assert "'echo'" in message
    assert str((PLUGINS / "duplicate" / "dup_a.py").absolute()) in message
    assert str((PLUGINS / "duplicate" / "dup_b.py").absolute()) in message


def test_duplicate_across_folders_names_both_files() -> None:
    with pytest.raises(ConfigError, match=r"good_echo\.py and .*dup_a\.py"):
        host_for(GOOD, PLUGINS / "duplicate")


def test_missing_plugin_dir_is_treated_as_empty(tmp_path: Path) -> None:
    with capture_logs() as logs:
        host = host_for(tmp_path / "nope", GOOD)
    assert set(host.actions) == {"echo"}
    assert {
        "event": "plugin directory missing, treated as empty",
        "directory": str(tmp_path / "nope"),
        "log_level": "info",
    } in logs


def test_load_is_called_once() -> None:
    host = host_for(GOOD)
    with pytest.raises(RuntimeError):
        host.load()


def test_drop_in_module_names_are_stable_and_distinct_per_folder(tmp_path: Path) -> None:
    first = dropin_module_name(tmp_path / "a" / "x-y.py")
    assert first == dropin_module_name(tmp_path / "a" / "x-y.py")
    assert first != dropin_module_name(tmp_path / "b" / "x-y.py")
    assert first.startswith("jobd_dropin_") and first.endswith("_x_y")
    assert first.isidentifier()


def test_shipped_plugins_are_builtin_and_not_loaded_twice() -> None:
    # The builtin folder also listed as a drop-in folder must not count as a duplicate.
    host = host_for(builtin_plugin_dir(), builtin=True)
    assert {"exec", "http", "copy", "move", "checksum", "sleep", "fail"} <= set(host.actions)
    assert {i.source for i in host.infos()} == {"builtin"}
    assert all(i.error is None for i in host.infos())


def test_describe_lists_plugins_and_actions() -> None:
    host = host_for(GOOD, PLUGINS / "import_error")
    described = host.describe()
    assert described["actions"] == [
        {"name": "echo", "plugin": "good_echo", "description": "Return the params as outputs"}
    ]
    by_name = {p["name"]: p for p in described["plugins"]}
    assert by_name["good_echo"]["actions"] == ["echo"]
    assert by_name["import_error"]["error"].startswith("ModuleNotFoundError")
    assert by_name["import_error"]["source"] == "drop-in"


@pytest.fixture
def entry_point_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed-looking distribution with two ``jobd.plugins`` entry points."""
    (tmp_path / "jobd_test_ep_plugin.py").write_text(
        (GOOD / "good_echo.py").read_text().replace('Action("echo"', 'Action("ep-echo"')
    )
    dist = tmp_path / "jobd_test_ep-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jobd-test-ep\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[jobd.plugins]\nep_good = jobd_test_ep_plugin\nep_missing = jobd_no_such_ep_module\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("jobd_test_ep_plugin", None)


def test_entry_points_are_loaded_each_in_its_own_try(entry_point_dist: Path) -> None:
    host = PluginHost([], builtin=False)
    host.load()
    good = info(host, "ep_good")
    assert (good.source, good.error, good.actions) == ("entry-point", None, ("ep-echo",))
    assert good.file == str(entry_point_dist / "jobd_test_ep_plugin.py")
    assert host.isolation_target("ep-echo") == (None, "jobd_test_ep_plugin")
    missing = info(host, "ep_missing")
    assert missing.source == "entry-point"
    assert missing.error == "ModuleNotFoundError: No module named 'jobd_no_such_ep_module'"


# --------------------------------------------------------------------------- hooks


def test_jobd_job_event_raising_observer_is_logged_and_others_still_get_it(
    events_file: Path,
) -> None:
    # raising_observer loads last, so pluggy's order calls it first: the good
    # observer is only reached if the failure does not stop the loop.
    host = host_for(GOOD, PLUGINS / "raising_observer")
    event = {"job_id": 7, "kind": "state", "from": "queued", "to": "running"}
    with capture_logs() as logs:
        host.job_event({"id": 7}, event)
    assert recorded(events_file) == [{"hook": "job_event", "job_id": 7, "event": event}]
    failure = next(e for e in logs if e["event"] == "plugin hook raised; ignored")
    assert failure["plugin"] == "raising_observer"
    assert failure["hook"] == "jobd_job_event"
    assert failure["file"].endswith("raising_observer.py")
    assert failure["log_level"] == "error"


def test_jobd_validate_job_collects_problems_and_ignores_broken_validators() -> None:
    host = host_for(GOOD, PLUGINS / "raising_observer")
    config = Config()
    assert host.validate_job({"params": {}}, config) == []
    with capture_logs() as logs:
        problems = host.validate_job({"params": {"reject": True}}, config)
    assert problems == ["good_echo refuses jobs with params.reject"]
    complaints = {(e["event"], e["plugin"]) for e in logs}
    assert ("plugin hook raised; ignored", "raising_observer") in complaints
    assert ("plugin validator returned garbage; ignored", "garbage_validator") in complaints


def test_jobd_select_resource_default_is_the_first_candidate() -> None:
    host = host_for(GOOD)
    assert host.select_resource("encoders", ["enc-2", "enc-1"], {}) == "enc-2"
    assert host.select_resource("encoders", [], {}) is None


def test_jobd_select_resource_plugin_override_and_none_falls_back() -> None:
    host = host_for(PLUGINS / "select")
    assert host.select_resource("encoders", ["enc-2", "enc-1"], {}) == "enc-1"
    assert host.select_resource("leave-to-default", ["enc-2", "enc-1"], {}) == "enc-2"


def test_jobd_select_resource_invalid_answer_is_logged_and_ignored() -> None:
    with capture_logs() as logs:
        alone = host_for(PLUGINS / "select_invalid").select_resource("p", ["a", "b"], {})
    assert alone == "a"
    warning = next(e for e in logs if e["event"].startswith("plugin chose a resource"))
    assert (warning["plugin"], warning["answer"]) == ("invalid_choice", "'not-a-member'")
    # invalid_choice loads last, so is asked first; pick_last still gets its say.
    both = host_for(PLUGINS / "select", PLUGINS / "select_invalid")
    assert both.select_resource("p", ["a", "b"], {}) == "b"


def test_jobd_select_resource_raising_selector_falls_back_to_default() -> None:
    host = host_for(PLUGINS / "raising_observer")
    with capture_logs() as logs:
        assert host.select_resource("p", ["a", "b"], {}) == "a"
    assert any(e.get("hook") == "jobd_select_resource" for e in logs)


def test_jobd_startup_and_jobd_shutdown_are_guarded(events_file: Path) -> None:
    host = host_for(GOOD, PLUGINS / "raising_observer")
    with capture_logs() as logs:
        host.startup(Config())
        host.shutdown()
    assert recorded(events_file) == [{"hook": "startup", "config": "Config"}, {"hook": "shutdown"}]
    failed = [e["hook"] for e in logs if e["event"] == "plugin hook raised; ignored"]
    assert failed == ["jobd_startup", "jobd_shutdown"]


# --------------------------------------------------------------------------- isolation


def ctx_data_for(tmp_path: Path) -> dict[str, Any]:
    ctx = ActionContext(
        job_id=42,
        job={"id": 42},
        step="isolated",
        attempt=1,
        params={},
        outputs={"a": {"x": 1}},
        assets=("asset-1",),
        resources=(),
        workdir=tmp_path,
        log=structlog.get_logger("test"),
        kill_grace=1.0,
        file_roots=(tmp_path,),
    )
    return context_data(ctx)


async def test_run_isolated_runs_the_action_in_another_process(tmp_path: Path) -> None:
    file, module = host_for(GOOD).isolation_target("echo")
    with capture_logs() as logs:
        outputs = await run_isolated("echo", file, module, {"n": 1}, ctx_data_for(tmp_path))
    assert outputs is not None
    assert (outputs["echo"], outputs["job_id"], outputs["step"]) == ({"n": 1}, 42, "isolated")
    assert outputs["pid"] != os.getpid()
    assert {"event": "echoing", "count": 1, "log_level": "info"} in logs  # replayed here


async def test_run_isolated_reraises_the_actions_exception_after_its_logs(tmp_path: Path) -> None:
    file, module = host_for(PLUGINS / "misbehaving").isolation_target("raises")
    with capture_logs() as logs, pytest.raises(RuntimeError, match="bad news"):
        await run_isolated("raises", file, module, {"message": "bad news"}, ctx_data_for(tmp_path))
    assert {"event": "about to raise", "log_level": "warning"} in logs


async def test_run_isolated_refuses_non_dict_outputs_and_unknown_actions(tmp_path: Path) -> None:
    file, module = host_for(PLUGINS / "misbehaving").isolation_target("non-dict")
    with pytest.raises(ActionError, match="returned int, not a dict or None"):
        await run_isolated("non-dict", file, module, {}, ctx_data_for(tmp_path))
    with pytest.raises(LookupError, match="offers no action 'nope'"):
        await run_isolated("nope", file, module, {}, ctx_data_for(tmp_path))


async def test_run_isolated_sees_a_drop_in_edited_since(tmp_path: Path) -> None:
    plugin = tmp_path / "plugins" / "versioned.py"
    plugin.parent.mkdir()
    source = (GOOD / "good_echo.py").read_text()
    plugin.write_text(source)
    file, module = host_for(plugin.parent).isolation_target("echo")
    first = await run_isolated("echo", file, module, {}, ctx_data_for(tmp_path))
    plugin.write_text(source.replace('"echo": params', '"echo": "version 2"'))
    second = await run_isolated("echo", file, module, {}, ctx_data_for(tmp_path))
    assert first is not None and first["echo"] == {}
    assert second is not None and second["echo"] == "version 2"


async def test_run_isolated_cancel_kills_a_blocked_worker(tmp_path: Path) -> None:
    """An action stuck in time.sleep(1000) ends at the caller's timeout, its process gone."""
    file, module = host_for(PLUGINS / "misbehaving").isolation_target("blocks")
    socket_path = str(tmp_path / "pid.sock")
    pids: list[int] = []
    async with await anyio.create_unix_listener(socket_path) as listener:

        async def receive_pid(deadline: anyio.CancelScope) -> None:
            async with await listener.accept() as stream:
                pids.append(int((await stream.receive()).decode()))
            # The 1 s timeout starts once the action is certainly blocking.
            deadline.deadline = anyio.current_time() + 1

        with pytest.raises(TimeoutError):
            with anyio.fail_after(float("inf")) as scope:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(receive_pid, scope)
                    await run_isolated(
                        "blocks", file, module, {"report_to": socket_path}, ctx_data_for(tmp_path)
                    )
    assert pids and pids[0] != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
