"""Impossible timings (issue 13, class 5): a run whose timestamps cannot be a time to train is
invalid with its reason, the set is not valid, and no score at or below zero is ever presented
as valid - by the library, `mlperf-repro score` and `mlperf-repro report`.

Every case is a copy of AMD's published llama2_70b_lora set (tests/data/mlperf-logs) with the
timestamps of one run edited.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro import cli
from mlperf_repro.mllog import summarize_run
from mlperf_repro.scoring import score_directory, timing_problem

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
AMD_LORA = ROOT / "tests" / "data" / "mlperf-logs" / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora"
PUBLISHED_SCORE = 10.1847
EDITED = "result_3.txt"
TIME = re.compile(r'"time_ms": (-?[0-9.eE+]+)')


def copy_set(target: Path) -> Path:
    target.mkdir(parents=True)
    for path in AMD_LORA.glob("result_*.txt"):
        shutil.copy(path, target / path.name)
    return target


def times(path: Path) -> dict[str, float]:
    """The first time_ms of each life-cycle key in a log."""
    found: dict[str, float] = {}
    for line in path.read_text().splitlines():
        for key in ("init_start", "init_stop", "run_start", "run_stop"):
            if f'"key": "{key}"' in line and key not in found:
                found[key] = float(TIME.search(line).group(1))
    return found


def edit(path: Path, key: str, new_time: float | None) -> None:
    """Set time_ms of every ``key`` line to ``new_time`` (None: remove those lines)."""
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if f'"key": "{key}"' in line:
            if new_time is None:
                continue
            line = TIME.sub(f'"time_ms": {new_time:.0f}', line, count=1)
        out.append(line)
    path.write_text("".join(out))


MINUTE = 60_000
# name -> (edits from the original times, words the run's reason must hold)
CASES = {
    "run_stop before run_start": (lambda t: [("run_stop", t["run_start"] - 5 * MINUTE)],
                                  "run_stop (time_ms {run_stop}) is before run_start"),
    "run_stop at run_start": (lambda t: [("run_stop", t["run_start"])],
                              "run_stop (time_ms {run_stop}) is at run_start"),
    "no run_start": (lambda t: [("run_start", None)], "a run_stop but no run_start"),
    "init_stop after run_start": (lambda t: [("init_stop", t["run_start"] + 1000)],
                                  "run_start (time_ms {run_start}) is 1000 ms before init_stop"),
    "run_stop days before init": (lambda t: [("run_stop", t["init_start"] - 3 * 24 * 60 * MINUTE)],
                                  "is before run_start"),
    "init_start after init_stop": (lambda t: [("init_start", t["init_stop"] + 5)],
                                   "init_stop (time_ms {init_stop}) is 5 ms before init_start"),
}


@pytest.fixture
def edited_set(tmp_path, request):
    directory = copy_set(tmp_path / "llama2_70b_lora")
    changes, words = CASES[request.param]
    path = directory / EDITED
    for key, value in changes(times(path)):
        edit(path, key, value)
    after = times(path)
    return directory, words.format(**{k: f"{v:.0f}" for k, v in after.items()})


def test_the_published_set_is_untouched_by_the_timing_checks(tmp_path):
    score = score_directory(copy_set(tmp_path / "set"))
    assert score.valid and round(score.score_minutes, 4) == PUBLISHED_SCORE
    assert all(run.timing_problem is None and run.minutes > 0 for run in score.runs)


@pytest.mark.parametrize("edited_set", list(CASES), indirect=True)
def test_library_marks_the_run_and_the_set_invalid(edited_set):
    directory, words = edited_set
    score = score_directory(directory)
    (bad,) = [run for run in score.runs if run.file == EDITED]
    assert bad.timing_problem and bad.timing_problem.startswith("impossible timing: ")
    assert words in bad.timing_problem
    assert bad.dropped_reason == bad.timing_problem and not bad.counted and bad.minutes is None
    assert all(run.timing_problem is None for run in score.runs if run.file != EDITED)
    assert not score.valid
    assert any("impossible timing" in reason and EDITED in reason for reason in score.reasons)
    assert score.score_minutes is None or score.score_minutes > 0
    assert timing_problem(summarize_run(directory / EDITED)) == bad.timing_problem
    data = score.to_dict()
    (run,) = [r for r in data["runs"] if r["file"] == EDITED]
    assert run["timing_problem"] == bad.timing_problem and run["minutes"] is None


@pytest.mark.parametrize("edited_set", ["run_stop before run_start", "no run_start"], indirect=True)
def test_cli_score_says_not_valid_and_why(edited_set, capsys):
    directory, words = edited_set
    assert cli.main(["score", str(directory), "--json"]) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["valid"] is False
    assert words in captured.err and "not a valid score" in captured.err
    assert cli.main(["score", str(directory)]) == 1
    plain = capsys.readouterr().out
    assert "NOT VALID" in plain and "impossible timing" in plain and ", valid" not in plain


def test_all_runs_backwards_never_give_a_negative_score(tmp_path):
    """The issue's example: every run_stop before its run_start scored as a negative time."""
    directory = copy_set(tmp_path / "llama2_70b_lora")
    for path in directory.glob("result_*.txt"):
        t = times(path)
        edit(path, "run_stop", t["run_start"] - 7 * MINUTE)
    proc = subprocess.run([str(BIN / "mlperf-repro"), "score", str(directory), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["valid"] is False and data["score_minutes"] is None and data["olympic_minutes"] is None
    assert all(run["minutes"] is None and "impossible timing" in run["dropped_reason"] for run in data["runs"])


def test_a_non_finite_time_is_a_parse_problem(tmp_path):
    directory = copy_set(tmp_path / "llama2_70b_lora")
    path = directory / EDITED
    path.write_text(re.sub(r'("time_ms": )[0-9]+(, "event_type": "INTERVAL_END", "key": "run_stop")',
                           r"\1NaN\2", path.read_text()))
    score = score_directory(directory)
    (bad,) = [run for run in score.runs if run.file == EDITED]
    assert any("finite number" in p.message for p in bad.parse_problems)
    assert bad.minutes is None and not bad.counted


def test_report_never_presents_a_non_positive_score_as_valid(tmp_path):
    """A score.json that says valid for a negative time (an older scorer's) is reported as not valid."""
    campaign = tmp_path / "campaign"
    node = copy_set(campaign / "local")
    score = score_directory(node).to_dict()
    score.update(score_minutes=-3.25, olympic_minutes=-3.25)
    assert score["valid"] is True
    (node / "score.json").write_text(json.dumps(score))
    proc = subprocess.run([str(BIN / "mlperf-repro"), "report", str(campaign)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((campaign / "report.json").read_text())
    assert report["sets"]["local"]["valid"] is False
    assert any("not a positive number" in r for r in report["sets"]["local"]["reasons"])
    markdown = (campaign / "report.md").read_text()
    assert "- valid: no" in markdown and "NOT VALID" in markdown
    html = (campaign / "report.html").read_text()
    assert "Not a valid score" in html and "Valid score" not in html
