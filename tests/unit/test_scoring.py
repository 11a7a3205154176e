"""Tests for mlperf_repro.scoring: per-run and per-set scoring as MLCommons scores.

The published sets in tests/data/mlperf-logs (see its README) must score to
the digits mlperf-logging 4.1.68 gives; fault cases are altered copies of
those real logs in tmp_path.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlperf_logging.result_summarizer.result_summarizer import _compute_olympic_average

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # importable without installing the package
    sys.path.insert(0, str(ROOT))

from mlperf_repro.mllog import summarize_run  # noqa: E402
from mlperf_repro.scoring import (check_compliance, find_result_files, olympic_mean, score_directory,  # noqa: E402
                                  score_run, time_to_train_minutes)

DATA = Path(__file__).resolve().parent.parent / "data" / "mlperf-logs"
AMD = DATA / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch"
NVIDIA = DATA / "v5.1" / "NVIDIA" / "results"
AMD_LORA = AMD / "llama2_70b_lora"
NV_LORA = NVIDIA / "theia_ngpu8_ngc25.09_nemo" / "llama2_70b_lora"

# From tests/data/mlperf-logs/README.md: score, olympic, RCP factor.
PUBLISHED = [
    (AMD_LORA, 10.1847, 10.1506, 1.003367),
    (AMD / "llama31_8b", 99.7085, 99.3101, 1.004012),
    (NVIDIA / "theia_ngpu16_ngc25.09_nemo" / "flux1", 146.2601, 146.2601, 1.0),
    (NV_LORA, 5.9713, 5.7709, 1.034722),
]


# ---------------------------------------------------------------- helpers

def copy_set(source: Path, target: Path, names: list[str] | None = None) -> Path:
    """Copy a published set's result files (only ``names`` if given) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("result_*.txt")):
        if names is None or path.name in names:
            shutil.copyfile(path, target / path.name)
    return target


def edit(path: Path, key: str, change) -> None:
    """Apply ``change(line) -> str | None`` to the lines logging ``key`` (None deletes)."""
    out = []
    for line in path.read_text().splitlines(keepends=True):
        if f'"key": "{key}"' in line:
            line = change(line)
        if line is not None:
            out.append(line)
    path.write_text("".join(out))


def break_lora_rank(path: Path) -> None:
    """closed_llama2_70b_lora requires lora_rank == 16."""
    edit(path, "lora_rank", lambda line: line.replace('"value": 16', '"value": 8'))


def minutes_of(directory: Path) -> dict[str, float]:
    out = {}
    for path in directory.glob("result_*.txt"):
        run = summarize_run(path)
        out[path.name] = (run.run_stop_ms - run.run_start_ms) / 60000
    return out


def dropped_first(times: list[float]) -> float:
    """Olympic mean with one run already dropped: only the fastest of the rest goes."""
    rest = sorted(times)[1:]
    return sum(rest) / len(rest)


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders for p in folder.rglob("*")}


# ---------------------------------------------------------------- arithmetic

def test_time_to_train_minutes():
    assert time_to_train_minutes(1759734393481, 1759734393481 + 600000) == 10.0
    assert time_to_train_minutes(0, 90000) == 1.5


def test_olympic_mean_rules():
    values = [float(v) for v in range(1, 11)]
    assert olympic_mean(values) == sum(range(2, 10)) / 8
    assert olympic_mean(values[:9], n_noncompliant=1) == sum(range(2, 10)) / 8
    assert olympic_mean(values[:8], n_noncompliant=2) is None
    assert olympic_mean([]) is None and olympic_mean([5.0]) is None
    assert olympic_mean(values * 4, max_dropped=4) == pytest.approx(5.5)
    with pytest.raises(ValueError):
        olympic_mean(values, n_noncompliant=-1)


def test_olympic_mean_is_bit_identical_to_the_summarizer():
    rng = random.Random(6)
    for _ in range(200):
        values = [rng.uniform(5, 150) for _ in range(rng.randint(3, 12))]
        dropped = rng.randint(0, 1)
        assert olympic_mean(values, dropped) == _compute_olympic_average(list(values), dropped, 1)


# ---------------------------------------------------------------- published sets

@pytest.mark.parametrize("directory, score, olympic, factor", PUBLISHED, ids=lambda v: getattr(v, "name", None))
def test_published_sets_score_as_mlcommons(directory, score, olympic, factor):
    result = score_directory(directory, ruleset="6.0.0")
    assert round(result.score_minutes, 4) == score
    assert round(result.olympic_minutes, 4) == olympic
    assert round(result.rcp.factor, 6) == factor
    assert result.valid and result.reasons == [] and result.parse_problems == []
    assert result.rcp.status == "Pass" and result.rcp.passed is True
    assert all(run.compliant and run.status == "success" for run in result.runs)
    shipped = directory / "scaling.json"
    if shipped.exists():  # the submitter's scaling.json, written by the package: same float
        assert result.rcp.factor == json.loads(shipped.read_text())["scaling_factor"]


def test_rcp_check_in_a_forked_process_equals_the_in_process_one():
    # score_directory runs the RCP check in a forked child while it checks compliance, except in
    # a multi-threaded process (an API caller's), where it runs in-process: same result, same dict.
    import threading

    forked = score_directory(NV_LORA).to_dict()
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        here = score_directory(NV_LORA).to_dict()
    finally:
        stop.set()
        other.join()
    assert forked == here and forked["rcp"]["status"] == "Pass" and forked["rcp"]["factor"] != 1.0


def test_to_dict_shape_and_json():
    data = score_directory(NV_LORA).to_dict()
    json.dumps(data)
    for key in ("benchmark", "ruleset", "runs", "olympic_minutes", "rcp", "score_minutes", "valid",
                "reasons", "parse_problems"):
        assert key in data
    assert set(data["rcp"]) >= {"status", "message", "factor", "passed"}
    assert set(data["runs"][0]) >= {"file", "minutes", "status", "samples_to_converge", "compliant"}
    assert data["benchmark"] == "llama2_70b_lora" and data["ruleset"] == "6.0.0"
    assert data["rcp"]["details"]["bs"] == 8 and data["global_batch_size"] == 8


def test_v60_samples_score_as_partial_sets():
    for bench, minutes in (("llama31_8b", 86.2737), ("llama2_70b_lora", 7.9159)):
        result = score_directory(DATA / "v6.0-samples" / "MI355X_EPYC_9575F_primus" / bench, allow_partial=True)
        assert result.benchmark == bench and result.runs[0].compliant and result.runs[0].target_reached
        assert round(result.score_minutes, 4) == minutes and not result.valid


def test_summarizer_cross_check(tmp_path):
    """Our score = mlperf-logging's result_summarizer, run twice on a fresh ORG tree.

    Pass 1 reports the unnormalized olympic mean (the summarizer scores before its RCP
    check writes scaling.json); pass 2 the normalized score.
    """
    org = tmp_path / "NVIDIA"
    shutil.copytree(DATA / "v5.1" / "NVIDIA" / "systems", org / "systems")
    bench_dir = copy_set(NV_LORA, org / "results" / NV_LORA.parent.name / NV_LORA.name)
    ours = score_directory(bench_dir)
    rows = []
    for n in (1, 2):
        subprocess.run([sys.executable, "-m", "mlperf_logging.result_summarizer", str(org), "training", "6.0.0",
                        "--csv", f"pass{n}.csv"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
        with open(tmp_path / f"pass{n}_detailed.csv", newline="") as handle:
            rows.append(next(csv.DictReader(handle)))
    assert float(rows[0]["llama2_70b_lora:time_to_train"]) == ours.olympic_minutes
    assert float(rows[1]["llama2_70b_lora:time_to_train"]) == ours.score_minutes
    assert float(rows[1]["llama2_70b_lora:rcp_scaling_factor"]) == ours.rcp.factor
    assert float(rows[1]["llama2_70b_lora:samples_to_converge"]) == ours.samples_to_converge
    assert float(rows[1]["llama2_70b_lora:GBS"]) == ours.global_batch_size
    assert rows[1]["llama2_70b_lora:RCP"] == ours.rcp.status == "Pass"


# ---------------------------------------------------------------- fault cases

def test_corrupt_line_is_reported_and_the_run_dropped(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    victim = bench / "result_3.txt"
    lines = victim.read_text().splitlines(keepends=True)
    broken = next(i for i, line in enumerate(lines) if '"key": "block_start"' in line)
    lines[broken] = lines[broken][:80] + "\n"
    victim.write_text("".join(lines))

    result = score_directory(bench)
    assert [(p.file, p.line) for p in result.parse_problems] == [(str(victim), broken + 1)]
    assert f"result_3.txt:{broken + 1}: invalid JSON" in str(result.parse_problems[0])
    run = next(r for r in result.runs if r.file == "result_3.txt")
    assert not run.compliant and not run.counted and "parsing errors" in run.dropped_reason
    times = minutes_of(AMD_LORA)
    del times["result_3.txt"]
    assert result.olympic_minutes == pytest.approx(dropped_first(list(times.values())), abs=1e-12)
    assert result.valid  # one dropped run is allowed
    assert any("result_3.txt dropped" in reason for reason in result.reasons)
    assert result.to_dict()["parse_problems"][0]["line"] == broken + 1


def test_truncated_line_the_rcp_reader_chokes_on_does_not_crash(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    victim = bench / "result_6.txt"
    lines = victim.read_text().splitlines(keepends=True)
    last_eval = max(i for i, line in enumerate(lines) if '"key": "eval_accuracy"' in line)
    lines[last_eval] = lines[last_eval][:-20] + "\n"  # the RCP reader json.loads this line
    victim.write_text("".join(lines))
    result = score_directory(bench)
    assert result.rcp.status == "Unknown state" and "JSONDecodeError" in result.rcp.message
    assert not result.valid and result.olympic_minutes is not None
    assert {p.file for p in result.parse_problems} == {str(bench / "result_6.txt")}


def test_run_without_run_stop_is_reported_as_crashed(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    edit(bench / "result_5.txt", "run_stop", lambda line: None)
    result = score_directory(bench)
    run = next(r for r in result.runs if r.file == "result_5.txt")
    assert run.status == "missing" and run.crashed and run.minutes is None and not run.compliant
    assert "crashed" in run.dropped_reason
    assert len(result.runs) == 10 and result.to_dict()["runs"][5]["status"] == "missing"
    times = minutes_of(AMD_LORA)
    del times["result_5.txt"]
    assert result.olympic_minutes == pytest.approx(dropped_first(list(times.values())), abs=1e-12)
    assert any("result_5.txt dropped: crashed" in reason for reason in result.reasons)


def test_line_without_metadata_crashes_the_package_not_us(tmp_path):
    path = copy_set(AMD_LORA, tmp_path / "set", ["result_0.txt"]) / "result_0.txt"
    edit(path, "eval_samples", lambda line: line.split(', "metadata"')[0] + "}\n")
    result = check_compliance(path, "6.0.0")
    assert not result.compliant and any("crashed: KeyError" in m for m in result.errors)


def test_rank_repeated_lines_are_compliant_with_warnings(tmp_path):
    bench = tmp_path / "ranks"
    bench.mkdir()
    for source in AMD_LORA.glob("result_*.txt"):
        lines = source.read_text().splitlines()
        (bench / source.name).write_text("".join(f"{rank}: {line}\r\n" for line in lines for rank in range(8)))
    result = score_directory(bench)
    assert round(result.score_minutes, 4) == 10.1847 and result.valid
    assert all(run.compliant for run in result.runs)
    assert any("EXACTLY_ONE occurrence of 'run_start'" in w for w in result.runs[0].compliance_warnings)


def test_nine_files_are_not_a_valid_set(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set", [f"result_{i}.txt" for i in range(9)])
    result = score_directory(bench)
    assert not result.valid
    assert any("found 9 result file(s)" in r and "exactly 10" in r for r in result.reasons)
    assert result.olympic_minutes is not None  # numbers are still computed


def test_allow_partial_computes_but_marks_invalid(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set", ["result_0.txt", "result_1.txt", "result_2.txt"])
    result = score_directory(bench, allow_partial=True)
    assert not result.valid
    assert any("partial set: 3 of 10" in r and "not a valid score" in r for r in result.reasons)
    assert result.olympic_minutes == sorted(minutes_of(bench).values())[1]
    assert result.rcp.status == "Pass" and result.score_minutes is not None

    single = copy_set(AMD_LORA, tmp_path / "single", ["result_0.txt"])
    result = score_directory(single, allow_partial=True)
    assert not result.valid and result.olympic_minutes is None
    assert result.score_minutes == minutes_of(single)["result_0.txt"]
    assert result.rcp.passed is None and "not checked" in result.rcp.message


def test_one_noncompliant_run_is_dropped_first(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    break_lora_rank(bench / "result_2.txt")
    result = score_directory(bench)
    run = next(r for r in result.runs if r.file == "result_2.txt")
    assert not run.compliant and any("lora_rank" in m for m in run.compliance_errors)
    times = minutes_of(AMD_LORA)
    del times["result_2.txt"]
    assert result.olympic_minutes == pytest.approx(dropped_first(list(times.values())), abs=1e-12)
    assert result.valid and result.score_minutes == result.olympic_minutes * result.rcp.factor
    assert result.to_dict()["dropped_runs"] == ["result_2.txt"]


def test_two_noncompliant_runs_mean_no_score(tmp_path):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    break_lora_rank(bench / "result_2.txt")
    break_lora_rank(bench / "result_7.txt")
    result = score_directory(bench)
    assert result.olympic_minutes is None and result.score_minutes is None and not result.valid
    assert any("2 runs dropped" in r and "no score" in r for r in result.reasons)


def test_nothing_is_written_to_the_result_dir_or_cwd(tmp_path, monkeypatch):
    bench = copy_set(AMD_LORA, tmp_path / "set")
    shutil.copyfile(AMD_LORA / "scaling.json", bench / "scaling.json")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(bench, cwd)
    handlers, level = list(logging.getLogger().handlers), logging.getLogger().level
    assert score_directory(bench).valid
    assert logging.getLogger().handlers == handlers and logging.getLogger().level == level
    partial = score_directory(bench, allow_partial=True, expected_runs=12)
    assert not partial.valid
    smoke = smoke_set(tmp_path)
    smoke_before = snapshot(smoke)
    assert score_directory(smoke).valid
    assert snapshot(bench, cwd) == before and snapshot(smoke) == smoke_before


# ---------------------------------------------------------------- options and unknown benchmarks

def smoke_set(tmp_path: Path) -> Path:
    """The published AMD LoRA logs relabelled as the project's 'smoke' benchmark."""
    bench = copy_set(AMD_LORA, tmp_path / "smoke")
    for path in bench.glob("result_*.txt"):
        edit(path, "submission_benchmark", lambda line: line.replace('"llama2_70b_lora"', '"smoke"'))
    return bench


def test_unknown_benchmark_uses_common_rules_only(tmp_path):
    bench = smoke_set(tmp_path)
    result = score_directory(bench)
    assert result.benchmark == "smoke" and not result.mlcommons_benchmark
    assert all(run.compliant for run in result.runs)
    assert result.rcp.status == "No RCP" and result.rcp.factor == 1.0 and result.rcp.passed is None
    assert result.valid and any("not an MLCommons benchmark" in r for r in result.reasons)
    assert round(result.score_minutes, 4) == round(result.olympic_minutes, 4) == 10.1506
    assert result.expected_runs == 10


def test_full_chain_on_an_unknown_benchmark_fails_without_raising(tmp_path):
    path = smoke_set(tmp_path) / "result_0.txt"
    full = check_compliance(path, "6.0.0")
    assert not full.compliant and any("closed_smoke.yaml" in m for m in full.errors)
    common = check_compliance(path, "6.0.0", common_only=True)
    assert common.compliant and common.rules.endswith(os.path.join("training_6.0.0", "common.yaml"))
    run = score_run(path)  # picks common-only by itself for a benchmark the ruleset lacks
    assert run.compliant and run.status == "success" and run.minutes > 0


def test_unknown_benchmark_runs_must_reach_the_target(tmp_path):
    result = score_directory(smoke_set(tmp_path), quality_target=0.9)
    assert all(run.target_reached is False and not run.counted for run in result.runs)
    assert result.score_minutes is None and not result.valid


def test_log_files_count_and_tool_logs_do_not(tmp_path):
    bench = tmp_path / "logs"
    bench.mkdir()
    for path in AMD_LORA.glob("result_*.txt"):
        shutil.copyfile(path, bench / path.name.replace("result_", "run_").replace(".txt", ".log"))
    (bench / "compliance_checker.log").write_text("INFO - SUCCESS\n")
    assert len(find_result_files(bench)) == 10
    result = score_directory(bench)
    assert round(result.score_minutes, 4) == 10.1847 and result.valid
    assert any("package_checker reads only result_*.txt" in r for r in result.reasons)


def test_benchmark_and_ruleset_options():
    assert not score_directory(AMD_LORA, benchmark="flux1").valid
    assert round(score_directory(AMD_LORA, ruleset="5.1.0").score_minutes, 4) == 10.1847
    with pytest.raises(ValueError, match="ruleset"):
        score_directory(AMD_LORA, ruleset="9.9.9")
