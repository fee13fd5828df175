"""jobd.config: loading, drop-in merging, provenance in errors, path resolution, summary."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jobd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    load_config,
    resolve_config_path,
    summarize,
)
from jobd.core.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent

MINIMAL_WORKFLOW = """
[workflows.w]
steps = [{ name = "a", action = "exec", params = { argv = ["true"] } }]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_text(tmp_path: Path, text: str, **dropins: str) -> Config:
    """Load ``text`` as jobd.toml with ``dropins`` (file name → text) in jobd.d/."""
    for name, body in dropins.items():
        write(tmp_path / "jobd.d", name, body)
    return load_config(write(tmp_path, "jobd.toml", text))


def error_of(tmp_path: Path, text: str, **dropins: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_text(tmp_path, text, **dropins)
    return caught.value


# --------------------------------------------------------------------------- the shipped examples


@pytest.mark.parametrize("name", ["jobd.toml", "dev.toml"])
def test_example_configs_load(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert config.sources == (REPO / "config" / name,)
    assert config.pools["encoders"].members == ("encoder-1", "encoder-2")
    assert config.workflows


def test_dev_config_keeps_everything_inside_the_repo() -> None:
    config = load_config(REPO / "config" / "dev.toml")
    var = REPO / "var"
    assert config.daemon.state_dir == var
    assert config.api.socket == var / "jobd.sock"
    assert config.daemon.plugin_dirs == (REPO / "config" / "plugins.d",)
    assert config.daemon.file_roots == (var / "media",)
    demo = config.workflows["demo"]
    assert [s.name for s in demo.steps] == ["hello", "wait"]
    for script in (demo.start_script, demo.end_script):
        assert script is not None and os.access(script, os.X_OK)


def test_defaults_when_file_is_empty(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert config.daemon.workers == 8 and config.daemon.run_queue_size == 1000
    assert config.api.socket_mode == 0o660 and config.api.listen is None
    assert config.logging.format == "auto" and config.defaults.retries == 2
    assert config.schedules == () and config.sources == (tmp_path / "jobd.toml",)


# --------------------------------------------------------------------------- values


def test_values_are_converted(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        MINIMAL_WORKFLOW
        + """
[api]
socket_mode = "0640"
listen = "[::1]:8470"
token_file = "token"
[logging]
level = "WARNING"
[[schedules]]
name = "s"
workflow = "w"
cron = "*/5 * * * *"
timezone = "Europe/Brussels"
priority = -1000
""",
    )
    assert config.api.socket_mode == 0o640
    assert config.api.listen == "[::1]:8470"
    assert config.logging.level == "warning"
    schedule = config.schedules[0]
    assert (schedule.cron, schedule.interval, schedule.priority) == ("*/5 * * * *", None, -1000)
    assert config.workflows["w"].steps[0].isolation == "inline"


def test_relative_paths_resolve_against_their_own_file(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[daemon]\nstate_dir = "state"\nplugin_dirs = ["p", "/abs/p"]\n'
        '[workflows.w]\nsteps = [{ name = "a", action = "x" }]\n'
        'start_script = "../scripts/start"\n',
        **{"10-api.toml": '[api]\nsocket = "run/jobd.sock"\ntoken_file = "tok"\n'},
    )
    assert config.daemon.state_dir == tmp_path / "state"
    assert config.daemon.plugin_dirs == (tmp_path / "p", Path("/abs/p"))
    assert config.workflows["w"].start_script == tmp_path.parent / "scripts" / "start"
    assert config.api.socket == tmp_path / "jobd.d" / "run" / "jobd.sock"
    assert config.api.token_file == tmp_path / "jobd.d" / "tok"


# --------------------------------------------------------------------------- drop-ins


MAIN_WITH_RELATIVE_PATHS = """
[daemon]
state_dir = "../var"
plugin_dirs = ["plugins.d"]
file_roots = ["media"]
[api]
socket = "run/jobd.sock"
listen = "127.0.0.1:8470"
token_file = "token"
[workflows.demo]
start_script = "scripts/start"
end_script = "scripts/end"
steps = [{ name = "a", action = "sleep", params = { seconds = 1 } }]
"""


@pytest.mark.parametrize(
    "dropin",
    [
        "[daemon]\nworkers = 16\n",
        '[api]\nsocket_mode = "0600"\n',
        '[workflows.other]\nsteps = [{ name = "b", action = "sleep" }]\n',
        "[workflows.demo]\nscript_timeout = 5\n",
    ],
    ids=["daemon-key", "api-key", "new-workflow", "same-workflow-other-key"],
)
def test_a_dropin_never_moves_a_path_the_main_file_set(tmp_path: Path, dropin: str) -> None:
    config = load_text(tmp_path, MAIN_WITH_RELATIVE_PATHS, **{"50-x.toml": dropin})
    assert config.daemon.state_dir == tmp_path.parent / "var"
    assert config.daemon.plugin_dirs == (tmp_path / "plugins.d",)
    assert config.daemon.file_roots == (tmp_path / "media",)
    assert config.api.socket == tmp_path / "run" / "jobd.sock"
    assert config.api.token_file == tmp_path / "token"
    demo = config.workflows["demo"]
    assert demo.start_script == tmp_path / "scripts" / "start"
    assert demo.end_script == tmp_path / "scripts" / "end"


def test_a_dropin_that_sets_a_path_resolves_it_in_its_own_folder(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, MAIN_WITH_RELATIVE_PATHS, **{"50-x.toml": '[daemon]\nstate_dir = "st"\n'}
    )
    assert config.daemon.state_dir == tmp_path / "jobd.d" / "st"
    assert config.daemon.plugin_dirs == (tmp_path / "plugins.d",)


def test_dropins_merge_in_name_order(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[daemon]\nworkers = 2\nfile_roots = ["/a", "/b"]\n[resources.r1]\n'
        + MINIMAL_WORKFLOW
        + '[[schedules]]\nname = "s0"\nworkflow = "w"\ninterval = 60\n',
        **{
            "20-late.toml": '[daemon]\nworkers = 5\n[[schedules]]\nname = "s2"\n'
            'workflow = "w"\ninterval = 1\n',
            "10-early.toml": '[daemon]\nworkers = 3\nfile_roots = ["/c"]\n'
            '[resources.r2]\ncapacity = 4\n[[schedules]]\nname = "s1"\n'
            'workflow = "w"\ninterval = 1\n',
            "ignored.txt": "not toml at all [",
        },
    )
    dropins = tmp_path / "jobd.d"
    assert config.sources == (
        tmp_path / "jobd.toml",
        dropins / "10-early.toml",
        dropins / "20-late.toml",
    )
    assert config.daemon.workers == 5  # later scalar wins
    assert config.daemon.file_roots == (Path("/c"),)  # arrays replace, never append
    assert set(config.resources) == {"r1", "r2"}  # tables merge
    assert [s.name for s in config.schedules] == ["s0", "s1", "s2"]  # concatenated


def test_a_later_array_replaces_the_earlier_one_with_its_provenance(tmp_path: Path) -> None:
    error = error_of(
        tmp_path,
        MINIMAL_WORKFLOW,
        **{"10-x.toml": '[workflows.w]\nsteps = [{ name = "a", action = "x", timeout = 0 }]\n'},
    )
    assert error.file == str(tmp_path / "jobd.d" / "10-x.toml")
    assert error.key == "workflows.w.steps[0].timeout"


def test_duplicate_schedule_names_across_files_name_both(tmp_path: Path) -> None:
    schedule = '[[schedules]]\nname = "nightly"\nworkflow = "w"\ninterval = 60\n'
    error = error_of(tmp_path, MINIMAL_WORKFLOW + schedule, **{"50-dup.toml": schedule})
    assert error.file == str(tmp_path / "jobd.d" / "50-dup.toml")
    assert error.key == "schedules[1].name"
    assert str(tmp_path / "jobd.toml") in error.problem and "nightly" in error.problem


# --------------------------------------------------------------------------- errors

ERROR_CASES = [
    # (id, main file text, dropin text or "", key path, words in the problem)
    (
        "unknown-key",
        "[daemon]\nworkerz = 3\n",
        "",
        "daemon.workerz",
        ["unknown key 'workerz'", "did you mean 'workers'?"],
    ),
    ("unknown-section", "[deamon]\n", "", "deamon", ["did you mean 'daemon'?"]),
    (
        "unknown-step-key",
        '[workflows.w]\nsteps = [{ name = "a", action = "b", retrys = 1 }]\n',
        "",
        "workflows.w.steps[0].retrys",
        ["did you mean 'retries'?"],
    ),
    (
        "wrong-type-seconds",
        '[defaults]\ntimeout = "abc"\n',
        "",
        "defaults.timeout",
        ["expected a number of seconds > 0, got 'abc'"],
    ),
    (
        "bool-is-not-int",
        "[daemon]\nworkers = true\n",
        "",
        "daemon.workers",
        ["expected an integer from 1 up, got true"],
    ),
    ("workers-zero", "[daemon]\nworkers = 0\n", "", "daemon.workers", ["from 1 up, got 0"]),
    ("queue-zero", "[daemon]\nrun_queue_size = 0\n", "", "daemon.run_queue_size", ["got 0"]),
    (
        "missing-required",
        '[workflows.w]\nsteps = [{ name = "a" }]\n',
        "",
        "workflows.w.steps[0].action",
        ["missing required key 'action'"],
    ),
    (
        "duplicate-step",
        '[workflows.w]\nsteps = [{ name = "a", action = "x" }, { name = "a", action = "y" }]\n',
        "",
        "workflows.w.steps[1].name",
        ["duplicate step"],
    ),
    (
        "isolation",
        '[workflows.w]\nsteps = [{ name = "a", action = "x", isolation = "proc" }]\n',
        "",
        "workflows.w.steps[0].isolation",
        ["'inline', 'process'", "did you mean 'process'?"],
    ),
    (
        "bad-timezone",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "w"\n'
        'interval = 5\ntimezone = "Europe/Brusels"\n',
        "",
        "schedules[0].timezone",
        ["unknown timezone", "did you mean 'Europe/Brussels'?"],
    ),
    (
        "cron-and-interval",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "w"\n'
        'cron = "* * * * *"\ninterval = 5\n',
        "",
        "schedules[0]",
        ["exactly one"],
    ),
    (
        "neither",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "w"\n',
        "",
        "schedules[0]",
        ["exactly one"],
    ),
    (
        "unknown-workflow",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "v"\ninterval = 5\n',
        "",
        "schedules[0].workflow",
        ["'v' is not a declared workflow"],
    ),
    (
        "overlap-enum",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "w"\n'
        'interval = 5\noverlap = "never"\n',
        "",
        "schedules[0].overlap",
        ["'skip'"],
    ),
    (
        "priority-range",
        MINIMAL_WORKFLOW + '[[schedules]]\nname = "s"\nworkflow = "w"\n'
        "interval = 5\npriority = 1001\n",
        "",
        "schedules[0].priority",
        ["-1000 to 1000"],
    ),
    (
        "pool-undeclared-member",
        '[resources.enc-1]\n[pools.p]\nmembers = ["enc-1", "enc-2"]\n',
        "",
        "pools.p.members[1]",
        ["'enc-2' is not a declared resource", "did you mean 'enc-1'?"],
    ),
    (
        "pool-resource-collision",
        '[resources.x]\n[pools.x]\nmembers = ["x"]\n',
        "",
        "pools.x",
        ["both a resource and a pool"],
    ),
    ("pool-without-members", "[pools.p]\n", "", "pools.p.members", ["missing required"]),
    (
        "listen-without-token",
        '[api]\nlisten = "127.0.0.1:8470"\n',
        "",
        "api.token_file",
        ["required when api.listen is set"],
    ),
    (
        "listen-format",
        '[api]\nlisten = "8470"\ntoken_file = "t"\n',
        "",
        "api.listen",
        ['"host:port"'],
    ),
    (
        "socket-mode-int",
        "[api]\nsocket_mode = 660\n",
        "",
        "api.socket_mode",
        ['octal mode string like "0660", got 660'],
    ),
    ("log-level", '[logging]\nlevel = "verbose"\n', "", "logging.level", ["'debug'"]),
    ("log-format", '[logging]\nformat = "xml"\n', "", "logging.format", ["'json'"]),
    (
        "quoted-key-path",
        '[resources."studio a"]\n',
        "",
        'resources."studio a"',
        ["whitespace or commas"],
    ),
    (
        "datetime-param",
        '[workflows.w]\nsteps = [{ name = "a", action = "x", '
        "params = { at = 2024-01-01T00:00:00Z } }]\n",
        "",
        "workflows.w.steps[0].params.at",
        ["quote them as strings"],
    ),
    ("nan-seconds", "[daemon]\nkill_grace = nan\n", "", "daemon.kill_grace", [">= 0, got nan"]),
    (
        "dropin-unknown-key",
        "[daemon]\nworkers = 2\n",
        "[daemon]\nworkers = 3\nstate_dri = 'x'\n",
        "daemon.state_dri",
        ["did you mean 'state_dir'?"],
    ),
    (
        "dropin-listen-blames-dropin",
        "",
        '[api]\nlisten = "0.0.0.0:1"\n',
        "api.token_file",
        ["required"],
    ),
]


@pytest.mark.parametrize(
    ("text", "dropin", "key", "words"),
    [case[1:] for case in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_errors_name_file_key_and_problem(
    tmp_path: Path,
    text: str,
    dropin: str,
    key: str,
    words: list[str],
) -> None:
    error = error_of(tmp_path, text, **({"10-drop.toml": dropin} if dropin else {}))
    expected_file = tmp_path / ("jobd.d/10-drop.toml" if dropin else "jobd.toml")
    assert (error.file, error.key) == (str(expected_file), key)
    for word in words:
        assert word in error.problem
    assert str(error).startswith(f"{expected_file}: {key}: ")


@pytest.mark.parametrize(
    ("where", "text"), [("main", "[daemon]\nworkers = \n"), ("dropin", "[daemon\n")]
)
def test_toml_syntax_error_names_file_and_line(tmp_path: Path, where: str, text: str) -> None:
    if where == "main":
        error, file = error_of(tmp_path, text), tmp_path / "jobd.toml"
    else:
        error, file = error_of(tmp_path, "", **{"10-x.toml": text}), tmp_path / "jobd.d/10-x.toml"
    assert error.file == str(file) and error.key is None
    assert "invalid TOML" in error.problem and "line " in error.problem


def test_missing_main_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.toml")
    assert caught.value.file == str(tmp_path / "nope.toml")
    assert "cannot read" in caught.value.problem


# --------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("/a.toml", "/b.toml", Path("/a.toml")),
        (None, "/b.toml", Path("/b.toml")),
        (None, None, DEFAULT_CONFIG_PATH),
        (None, "", DEFAULT_CONFIG_PATH),
    ],
)
def test_resolve_config_path(
    monkeypatch: pytest.MonkeyPatch,
    cli: str | None,
    env: str | None,
    expected: Path,
) -> None:
    if env is None:
        monkeypatch.delenv("JOBD_CONFIG", raising=False)
    else:
        monkeypatch.setenv("JOBD_CONFIG", env)
    assert resolve_config_path(cli) == expected


def test_summarize_states_the_key_facts(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[daemon]\nworkers = 3\nrun_queue_size = 7\nstate_dir = "st"\n'
        '[resources.enc-1]\n[resources.enc-2]\n[pools.encoders]\nmembers = ["enc-1", "enc-2"]\n'
        + MINIMAL_WORKFLOW
        + '[[schedules]]\nname = "nightly"\nworkflow = "w"\ncron = "0 2 * * *"\n',
        **{"10-x.toml": "[resources.studio]\ncapacity = 2\n"},
    )
    text = summarize(config)
    for fact in [
        str(tmp_path / "jobd.toml"),
        str(tmp_path / "jobd.d" / "10-x.toml"),
        str(tmp_path / "st"),
        "/run/jobd/jobd.sock",
        "workers: 3",
        "run queue size: 7",
        "resources (3): enc-1",
        "studio (capacity 2)",
        "pools (1): encoders",
        "workflows (1): w (1 step)",
        "schedules (1): nightly",
        "/etc/jobd/plugins.d",
    ]:
        assert fact in text
