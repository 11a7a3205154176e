"""Issue 3's named cases on copies of real published logs: no scaling.json, aborted runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from mlperf_repro import cli
from mlperf_repro.scoring import score_directory

DATA = Path(__file__).resolve().parents[1] / "data" / "mlperf-logs" / "v5.1"
AMD_LORA = DATA / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora"
SETS = [
    (AMD_LORA, 10.1847),
    (DATA / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama31_8b", 99.7085),
    (DATA / "NVIDIA" / "results" / "theia_ngpu16_ngc25.09_nemo" / "flux1", 146.2601),
    (DATA / "NVIDIA" / "results" / "theia_ngpu8_ngc25.09_nemo" / "llama2_70b_lora", 5.9713),
]


def copy_set(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.glob("result_*.txt"):
        shutil.copy(path, target / path.name)
    assert not (target / "scaling.json").exists()
    return target


@pytest.mark.parametrize("source,expected", SETS, ids=[s.parent.name + "/" + s.name for s, _ in SETS])
def test_factor_is_computed_not_read_from_scaling_json(source, expected, tmp_path, capsys):
    directory = copy_set(source, tmp_path / source.name)
    assert cli.main(["score", str(directory), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["score_minutes"] - expected) < 1e-4
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"result_{k}.txt" for k in range(10))


def set_run_stop_status(path: Path, status: str) -> None:
    text = path.read_text()
    new = re.sub(r'("key": "run_stop".*?"status": ")success(")', rf"\g<1>{status}\g<2>", text)
    assert new != text
    path.write_text(new)


def test_aborted_run_that_reached_target_counts_in_time_not_in_rcp(tmp_path):
    directory = copy_set(AMD_LORA, tmp_path / "lora")
    before = score_directory(directory)
    set_run_stop_status(directory / "result_3.txt", "aborted")
    after = score_directory(directory)
    run = next(r for r in after.runs if r.file.endswith("result_3.txt"))
    assert run.status == "aborted" and run.compliant and run.target_reached
    # Time to train: compliance does not check the status, so all 10 runs still count.
    assert after.olympic_minutes == before.olympic_minutes
    # RCP: the summarizer's reader counts a non-success run as not converged (1e9 samples),
    # so the set's samples-to-converge changes.
    assert after.samples_to_converge != before.samples_to_converge


def test_aborted_run_that_missed_target_is_dropped_first(tmp_path):
    directory = copy_set(AMD_LORA, tmp_path / "lora")
    path = directory / "result_3.txt"
    set_run_stop_status(path, "aborted")
    lines = [line for line in path.read_text().splitlines(keepends=True)
             if not ('"eval_accuracy"' in line and float(
                 re.search(r'"value": ([0-9.]+)', line).group(1)) <= 0.925)]
    path.write_text("".join(lines))
    result = score_directory(directory)
    run = next(r for r in result.runs if r.file.endswith("result_3.txt"))
    assert not run.compliant and not run.counted
    others = sorted(r.minutes for r in result.runs if r is not run)
    assert len(others) == 9
    # One non-compliant run: it is dropped first, then only the fastest of the other nine.
    assert result.olympic_minutes == pytest.approx(sum(others[1:]) / 8, rel=1e-12)
    assert result.score_minutes is not None
