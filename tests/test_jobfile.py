"""``submit --file``'s reading and batching (jobd/client/jobfile.py); the CLI runs are in
tests/test_cli_e2e.py."""

from __future__ import annotations

import io
import json

import pytest

from jobd.client import jobfile


def test_lines_become_jobs_with_their_line_numbers() -> None:
    text = '{"workflow": "a"}\n\n   \n{"workflow": "b", "priority": 3}\n'
    jobs = jobfile.read_jobs("f.jsonl", io.StringIO(text))
    assert [(job.number, job.body) for job in jobs] == [
        (1, {"workflow": "a"}),
        (4, {"workflow": "b", "priority": 3}),
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"workflow": "a"}\n{"workflow": \n', "f.jsonl:2: not valid JSON"),
        ("[1, 2]\n", "f.jsonl:1: a job is a JSON object"),
        ("\n\n", "f.jsonl: no jobs"),
    ],
)
def test_a_bad_file_names_the_line(text: str, says: str) -> None:
    with pytest.raises(jobfile.JobFileError, match=says):
        jobfile.read_jobs("f.jsonl", io.StringIO(text))


def test_batches_hold_at_most_ten_thousand_jobs_and_stay_under_the_body_limit() -> None:
    small = json.dumps({"workflow": "w"}) + "\n"
    jobs = jobfile.read_jobs("f", io.StringIO(small * 25_001))
    assert [len(batch) for batch in jobfile.batches(jobs)] == [10_000, 10_000, 5_001]
    big = json.dumps({"workflow": "w", "params": {"x": "y" * 1_000_000}}) + "\n"
    heavy = jobfile.read_jobs("f", io.StringIO(big * 40))
    sizes = [len(batch) for batch in jobfile.batches(heavy)]
    assert sum(sizes) == 40 and max(sizes) * len(big) <= jobfile.BATCH_BYTES


def test_the_progress_bar_redraws_in_place() -> None:
    out = io.StringIO()
    bar = jobfile.ProgressBar(out)
    bar(10_000, 20_000)
    bar(20_000, 20_000)
    assert out.getvalue() == (
        "\rsubmitted [###############---------------] 10,000/20,000"
        "\rsubmitted [##############################] 20,000/20,000\n"
    )
