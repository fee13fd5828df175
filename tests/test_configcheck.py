"""jobd.configcheck: what a configuration names, checked with the code that will use it."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobd.config import Config, ScheduleConfig, load_config
from jobd.configcheck import check_config, config_problems
from jobd.errors import ConfigError, ConfigErrors
from jobd.timers import next_fire

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
    source = (Path(__file__).parent.parent / "jobd" / "config.py").read_text()
    assert "apscheduler" not in source and "CronTrigger" not in source


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
    from jobd import cli

    path = write_config(tmp_path, WORKFLOW + schedule("30 6 * * 1-5,7"))
    assert cli.main(["check-config", "--config", str(path)]) == 0
    assert "schedules (1): s (cron '30 6 * * 1-5,7' UTC -> w)" in capsys.readouterr().out
    path.write_text(WORKFLOW + schedule("30 6 * * 1-8"))
    assert cli.main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: schedules[0].cron: invalid cron expression '30 6 * * 1-8'" in err
    assert "day of week" in err
