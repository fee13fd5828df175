"""jobd.service.configcheck: what a configuration names, checked with the code that will use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobd.config import Config, ScheduleConfig, load_config
from jobd.core.errors import ConfigError, ConfigErrors
from jobd.plan.timers import next_fire
from jobd.plugin.host import PluginHost
from jobd.service.configcheck import check_config, config_problems, load_checked, load_plugins

WORKFLOW = '[workflows.w]\nsteps = [{ name = "a", action = "sleep", params = { seconds = 1 } }]\n'


def write_config(folder: Path, text: str, **dropins: str) -> Path:
    for name, body in dropins.items():
        (folder / "jobd.d").mkdir(exist_ok=True)
        (folder / "jobd.d" / name).write_text(body)
    path = folder / "jobd.toml"
    path.write_text(text)
    return path


def problems_of(folder: Path, text: str, **dropins: str) -> list[ConfigError]:
    return config_problems(load_config(write_config(folder, text, **dropins)))


def schedule(cron: str) -> str:
    return f'[[schedules]]\nname = "s"\nworkflow = "w"\ncron = "{cron}"\n'


# --------------------------------------------------------------------------- cron: one parser


@pytest.mark.parametrize("cron", ["0 9 * * 7", "0 9 * * 0", "0 9 * * 5-7", "0 9 * * sun"])
def test_cron_sunday_as_7_passes_the_check_as_the_timers_run_it(tmp_path: Path, cron: str) -> None:
    config = load_config(write_config(tmp_path, WORKFLOW + schedule(cron)))
    check_config(config)  # the check accepts what the timers accept ...
    sunday_0900 = 1_796_547_600.0  # 2026-12-06 (a Sunday) 09:00 UTC
    assert next_fire(config.schedules[0], sunday_0900 - 3600) == sunday_0900  # ... and run


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 2 * *", ["5 fields"]),
        ("61 2 * * *", ["61"]),
        ("0 9 * * 8", ["day of week", "'8'"]),
    ],
)
def test_a_bad_cron_names_file_key_and_the_timers_reason(
    tmp_path: Path, cron: str, words: list[str]
) -> None:
    (error,) = problems_of(tmp_path, WORKFLOW, **{"10-s.toml": schedule(cron)})
    assert error.file == str(tmp_path / "jobd.d" / "10-s.toml")
    assert error.key == "schedules[0].cron"
    assert error.problem.startswith(f"invalid cron expression {cron!r}: ")
    for word in words:
        assert word in error.problem


def test_config_validation_has_no_cron_parser_of_its_own() -> None:
    package = Path(__file__).parent.parent / "jobd" / "config"
    for module in package.rglob("*.py"):
        source = module.read_text()
        assert "apscheduler" not in source and "CronTrigger" not in source, module


def test_several_problems_are_reported_at_once() -> None:
    config = Config(
        schedules=(
            ScheduleConfig(name="a", workflow="w", cron="0 9 * * 8"),
            ScheduleConfig(name="b", workflow="w", cron="x"),
        )
    )
    with pytest.raises(ConfigErrors) as caught:
        check_config(config)
    assert [e.key for e in caught.value.errors] == ["schedules[0].cron", "schedules[1].cron"]
    assert len(str(caught.value).splitlines()) == 2


def test_check_config_accepts_sunday_as_7_and_names_a_bad_day(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobd.client import cli

    path = write_config(tmp_path, WORKFLOW + schedule("30 6 * * 1-5,7"))
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert "schedules (1): s (cron '30 6 * * 1-5,7' UTC -> w)" in capsys.readouterr().out
    path.write_text(WORKFLOW + schedule("30 6 * * 1-8"))
    assert cli.main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: schedules[0].cron: invalid cron expression '30 6 * * 1-8'" in err
    assert "day of week" in err


# --------------------------------------------------------------------------- plugins and params

REPO = Path(__file__).resolve().parent.parent
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"


def checked(folder: Path, text: str, **dropins: str) -> list[ConfigError]:
    """Every problem of the config ``text``, with its plugins loaded as ``jobd run`` does."""
    with pytest.raises(ConfigError) as caught:
        load_checked(write_config(folder, text, **dropins))
    error = caught.value
    return error.errors if isinstance(error, ConfigErrors) else [error]


def step_config(action: str, params: str) -> str:
    return f'[workflows.w]\nsteps = [{{ name = "a", action = "{action}", params = {params} }}]\n'


@pytest.mark.parametrize(
    ("action", "params", "key", "words"),
    [
        ("slep", "{ seconds = 1 }", "steps[0].action", ["unknown action 'slep'", "'sleep'?"]),
        ("sleep", '{ seconds = "two" }', "steps[0].params.seconds", ["expected a number", "'two'"]),
        ("sleep", "{ secnds = 1 }", "steps[0].params.secnds", ["no param 'secnds'", "'seconds'?"]),
        ("sleep", "{}", "steps[0].params", ["needs param 'seconds' (number)"]),
        ("exec", '{ argv = "ls -l" }', "steps[0].params.argv", ["an array of strings"]),
        ("exec", '{ argv = ["ls", 3] }', "steps[0].params.argv", ["an array of strings"]),
        ("checksum", '{ path = "/x", algorithm = "crc" }', "steps[0].params.algorithm", ["md5"]),
        ("http", '{ url = "http://x", timeout = true }', "steps[0].params.timeout", ["number"]),
        ("copy", '{ source = "/a" }', "steps[0].params", ["needs param 'target'"]),
        ("fail", "{ message = 3 }", "steps[0].params.message", ["expected a string, got 3"]),
    ],
)
def test_a_step_is_checked_against_its_actions_declaration(
    tmp_path: Path, action: str, params: str, key: str, words: list[str]
) -> None:
    error, *more = checked(tmp_path, "", **{"20-w.toml": step_config(action, params)})
    assert [e.key for e in more] == (["workflows.w.steps[0].params"] if "secnds" in params else [])
    assert error.file == str(tmp_path / "jobd.d" / "20-w.toml")
    assert error.key == f"workflows.w.{key}"
    for word in words:
        assert word in error.problem


@pytest.mark.parametrize(
    ("action", "params"),
    [
        ("sleep", '{ seconds = "{s}" }'),  # a placeholder: the job's value is checked at run time
        ("sleep", "{ seconds = 0.5 }"),
        ("exec", '{ argv = ["echo", "{who}"], env = { A = "1" }, cwd = "/tmp" }'),
        ("exec", '{ argv = "{argv}" }'),  # exactly one placeholder takes the job param as is
        ("checksum", '{ path = "{p}", algorithm = "SHA256" }'),  # choices ignore case
        ("http", '{ url = "{u}", method = "post", json = { a = [1] }, timeout = "{t}" }'),
        ("fail", "{}"),
    ],
)
def test_valid_and_templated_params_pass(tmp_path: Path, action: str, params: str) -> None:
    config, plugins = load_checked(write_config(tmp_path, step_config(action, params)))
    assert config.workflows["w"].steps[0].action in plugins.actions


def test_a_partial_placeholder_is_not_a_list(tmp_path: Path) -> None:
    (error,) = checked(tmp_path, step_config("exec", '{ argv = "run {x}" }'))
    assert error.key == "workflows.w.steps[0].params.argv"


def test_an_unknown_action_names_the_plugins_that_failed_to_load(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "mine.py").write_text("raise ImportError('no codec library')\n")
    text = f'[daemon]\nplugin_dirs = ["{plugins}"]\n' + step_config("transcode", "{}")
    (error,) = checked(tmp_path, text)
    assert error.key == "workflows.w.steps[0].action"
    assert f"{plugins / 'mine.py'}: ImportError: no codec library" in error.problem


def test_two_plugins_offering_one_action_is_an_error_naming_both_files(tmp_path: Path) -> None:
    folder = TEST_PLUGINS / "duplicate"
    (error,) = checked(tmp_path, f'[daemon]\nplugin_dirs = ["{folder}"]\n' + WORKFLOW)
    assert (error.file, error.key) == (str(tmp_path / "jobd.toml"), "daemon.plugin_dirs")
    assert str(folder / "dup_a.py") in error.problem and str(folder / "dup_b.py") in error.problem


def test_scripts_must_exist_and_be_executable(tmp_path: Path) -> None:
    script = tmp_path / "start"
    script.write_text("#!/bin/sh\nexit 0\n")  # not chmod +x
    text = WORKFLOW + 'start_script = "start"\nend_script = "missing"\n'
    errors = checked(tmp_path, text)
    assert [(e.key, e.problem) for e in errors] == [
        ("workflows.w.start_script", f"{script} is not executable (chmod +x)"),
        ("workflows.w.end_script", f"{tmp_path / 'missing'} does not exist"),
    ]
    script.chmod(0o755)
    (tmp_path / "missing").mkdir()
    (error,) = checked(tmp_path, text)
    assert error.problem == f"{tmp_path / 'missing'} is not a file"


def test_listed_plugin_dirs_and_the_token_file_must_exist(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    text = (
        '[daemon]\nplugin_dirs = ["here", "gone"]\n'
        '[api]\nlisten = "127.0.0.1:8470"\ntoken_file = "token"\n' + WORKFLOW
    )
    errors = checked(tmp_path, text)
    assert [(e.key, e.problem) for e in errors] == [
        ("daemon.plugin_dirs[1]", f"{tmp_path / 'gone'} does not exist"),
        ("api.token_file", f"{tmp_path / 'token'} does not exist"),
    ]


def test_the_default_plugin_dir_may_be_absent(tmp_path: Path) -> None:
    config, _ = load_checked(write_config(tmp_path, WORKFLOW))
    assert not config.daemon.plugin_dirs[0].exists()  # /etc/jobd/plugins.d on a test machine


def test_a_workflow_needs_a_step(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, "", **{"10-b.toml": "[workflows.b]\nsteps = []\n"}))
    assert caught.value.file == str(tmp_path / "jobd.d" / "10-b.toml")
    assert caught.value.key == "workflows.b.steps"
    assert "non-empty array" in caught.value.problem
    with pytest.raises(ConfigError) as caught:
        other = tmp_path / "other"
        other.mkdir()
        load_config(write_config(other, '[workflows.b]\nstart_script = "/bin/true"\n'))
    assert caught.value.key == "workflows.b.steps" and "missing" in caught.value.problem


def test_the_dev_config_passes_every_check() -> None:
    config, plugins = load_checked(REPO / "config" / "dev.toml")
    assert {s.action for w in config.workflows.values() for s in w.steps} <= set(plugins.actions)


def test_the_example_config_fails_only_on_paths_of_a_real_installation() -> None:
    config = load_config(REPO / "config" / "jobd.toml")
    problems = config_problems(config, load_plugins(config))
    assert problems  # this machine has no /etc/jobd
    assert all(str(e.problem).startswith("/etc/jobd/") for e in problems), problems


def test_every_shipped_action_declares_its_params() -> None:
    plugins = load_plugins(Config())
    declared = {
        name: {p.name for p in action.params or ()} for name, action in plugins.actions.items()
    }
    assert declared == {  # SPEC §4's table
        "exec": {"argv", "env", "cwd"},
        "http": {"url", "method", "headers", "json", "timeout"},
        "copy": {"source", "target"},
        "move": {"source", "target"},
        "checksum": {"path", "algorithm"},
        "sleep": {"seconds"},
        "fail": {"message"},
    }


BAD_DECLARATION = """
import jobd

async def run(ctx, seconds=1):
    return None

@jobd.hookimpl
def jobd_actions():
    return [jobd.Action("nap", run, params=(jobd.Param("minutes", "number"),))]
"""


def test_a_declaration_run_cannot_take_makes_the_plugin_broken(tmp_path: Path) -> None:
    (tmp_path / "nap.py").write_text(BAD_DECLARATION)
    host = PluginHost([tmp_path], builtin=False, entry_points=False)
    host.load()
    (info,) = host.infos()
    assert info.error is not None and "param 'minutes' is declared but run()" in info.error


def test_every_named_token_file_must_exist(tmp_path: Path) -> None:
    text = WORKFLOW + '[[api.tokens]]\nname = "ci"\nfile = "ci.token"\nrole = "operator"\n'
    (error,) = checked(tmp_path, text)
    assert error.key == "api.tokens[0].file"
    assert error.problem == f"{tmp_path / 'ci.token'} does not exist"


def plugin_text(action: str, version: int = 1) -> str:
    return (
        "import jobd\n\n"
        f"async def run(ctx):\n    return {{'v': {version}}}\n\n"
        "@jobd.hookimpl\n"
        f"def jobd_actions():\n    return [jobd.Action({action!r}, run)]\n"
    )


def test_a_reloaded_host_reuses_unchanged_files_and_names_what_changed(tmp_path: Path) -> None:
    for name in ("kept", "changed", "removed"):
        (tmp_path / f"{name}.py").write_text(plugin_text(name))
    old = PluginHost([tmp_path], builtin=False, entry_points=False)
    old.load()
    (tmp_path / "changed.py").write_text(plugin_text("changed", 2))
    (tmp_path / "removed.py").unlink()
    (tmp_path / "new.py").write_text(plugin_text("new"))
    (tmp_path / "broken.py").write_text("raise ValueError('nope')\n")
    new = PluginHost([tmp_path], builtin=False, entry_points=False, previous=old)
    new.load()
    assert new.actions["kept"].run is old.actions["kept"].run  # not executed again
    assert new.actions["changed"].run is not old.actions["changed"].run
    assert sorted(new.changes()) == sorted(
        [
            f"plugin {tmp_path / 'broken.py'} failed to load: ValueError: nope",
            f"reloaded changed plugin {tmp_path / 'changed.py'} (actions: changed)",
            f"loaded new plugin {tmp_path / 'new.py'} (actions: new)",
            f"removed plugin {tmp_path / 'removed.py'}",
        ]
    )
    names = {i.module: i.name for i in old.infos() + new.infos()}
    assert {names[k] for k in new.fresh()} == {"changed", "new"}  # get jobd_startup
    assert {names[k] for k in old.retired_by(new)} == {"changed", "removed"}  # jobd_shutdown
    again = PluginHost([tmp_path], builtin=False, entry_points=False, previous=new)
    again.load()
    assert again.changes() == [] and again.fresh() == set()
