"""Tests for mlperf_repro.mllog: the streaming MLLOG parser.

Every log here is a real published log (tests/data/mlperf-logs, see its README)
or an altered copy of one written to tmp_path; none is invented.
"""

from __future__ import annotations

import sys
import tracemalloc
from pathlib import Path

import pytest
from mlperf_logging.compliance_checker.mlp_parser import parse_file
from mlperf_logging.result_summarizer.result_summarizer import _query_run_start_stop

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # importable without installing the package
    sys.path.insert(0, str(ROOT))

from mlperf_repro.mllog import (ParseProblem, iter_events, iter_events_from_lines, parse_line,  # noqa: E402
                                summarize_run)

DATA = Path(__file__).resolve().parent.parent / "data" / "mlperf-logs"
V60 = DATA / "v6.0-samples" / "MI355X_EPYC_9575F_primus"
AMD_LORA = DATA / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora"


def real_lines(path: Path) -> list[str]:
    """Lines of a real log without their line endings."""
    return path.read_bytes().decode("utf-8").replace("\r\n", "\n").split("\n")[:-1]


def write_lines(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8"))
    return path


def index_of(lines: list[str], key: str) -> int:
    return next(i for i, line in enumerate(lines) if f'"key": "{key}"' in line)


# ---------------------------------------------------------------- real logs

@pytest.mark.parametrize("bench, run_start, run_stop, samples, gbs", [
    ("llama31_8b", 1778600443599, 1778605620023, 184320, 32),
    ("llama2_70b_lora", 1778386209957, 1778386684912, 3072, 8),
])
def test_v60_samples_parse(bench, run_start, run_stop, samples, gbs):
    path = V60 / bench / "result_0.txt"
    assert b"\r\n" in path.read_bytes()  # the CRLF case is really exercised
    run = summarize_run(path)
    assert run.problems == []
    assert run.benchmark == bench and run.division == "closed" and run.organization == "AMD"
    assert (run.run_start_ms, run.run_stop_ms) == (run_start, run_stop)
    assert run.run_stop_status == "success" and not run.crashed
    assert run.samples_to_converge == samples
    assert run.global_batch_size == gbs
    keys = [event.key for event in iter_events(path)]
    assert keys[0] == "cache_clear" and "run_duration" in keys[keys.index("run_stop"):]


def test_v60_sample_repeats_rank_lines():
    keys = [event.key for event in iter_events(V60 / "llama31_8b" / "result_0.txt")]
    assert keys.count("init_start") == 8 and keys.count("cache_clear") > 1
    assert keys.count("run_start") == 1


def test_matches_package_parser_on_published_set():
    for path in sorted(AMD_LORA.glob("result_*.txt")):
        run = summarize_run(path)
        start, stop = _query_run_start_stop(parse_file(str(path), ruleset="6.0.0")[0])
        assert (run.run_start_ms, run.run_stop_ms) == (start, stop)


# ---------------------------------------------------------------- altered copies

def test_prefixes_crlf_and_noise(tmp_path):
    source = AMD_LORA / "result_0.txt"
    prefixes = ["0: ", "[1,0]<stdout>:", "2025-10-06 12:00:00,123 INFO mllog: ", ""]
    altered = []
    for number, line in enumerate(real_lines(source)):
        altered.append(f"step {number} loss=1.0\rstep {number} loss=0.9")  # progress-bar noise
        altered.append(prefixes[number % len(prefixes)] + line)
    path = write_lines(tmp_path / "result_0.txt", altered, ending="\r\n")
    with path.open("ab") as handle:
        handle.write(b"binary noise \xff\xfe not utf-8\r\n")
    want, got = summarize_run(source), summarize_run(path)
    assert got.problems == []
    assert got.event_count == want.event_count
    assert (got.run_start_ms, got.run_stop_ms, got.samples_to_converge) == (
        want.run_start_ms, want.run_stop_ms, want.samples_to_converge)
    # line numbers are the file's own: every MLLOG line sits on an even line
    assert all(event.line % 2 == 0 for event in iter_events(path))


def test_every_rank_repeating_every_line(tmp_path):
    source = AMD_LORA / "result_3.txt"
    lines = [f"{rank}: {line}" for line in real_lines(source) for rank in range(8)]
    run = summarize_run(write_lines(tmp_path / "result_3.txt", lines))
    want = summarize_run(source)
    assert run.run_start_count == 8 and run.run_stop_count == 8
    assert (run.run_start_ms, run.run_stop_ms, run.run_stop_status, run.samples_to_converge) == (
        want.run_start_ms, want.run_stop_ms, want.run_stop_status, want.samples_to_converge)


def test_last_run_start_before_first_run_stop_like_the_summarizer(tmp_path):
    lines = real_lines(AMD_LORA / "result_0.txt")
    start = index_of(lines, "run_start")
    original = int(lines[start].split('"time_ms": ')[1].split(",")[0])
    restart = lines[start].replace(str(original), str(original + 60000))
    late = lines[start].replace(str(original), str(original + 10**9))
    lines.insert(start + 3, restart)  # a restart before run_stop: it counts
    lines.append(late)  # a run_start after run_stop: ignored
    path = write_lines(tmp_path / "result_0.txt", lines)
    run = summarize_run(path)
    assert run.run_start_ms == original + 60000
    assert (run.run_start_ms, run.run_stop_ms) == _query_run_start_stop(parse_file(str(path), ruleset="6.0.0")[0])


def test_truncated_line_is_reported_with_file_and_line(tmp_path):
    lines = real_lines(AMD_LORA / "result_4.txt")
    broken = index_of(lines, "block_start")
    lines[broken] = lines[broken][: len(lines[broken]) // 2]
    path = write_lines(tmp_path / "result_4.txt", lines)
    problems: list[ParseProblem] = []
    events = list(iter_events(path, problems))
    assert len(events) == len(lines) - 1
    assert len(problems) == 1
    problem = problems[0]
    assert problem.file == str(path) and problem.line == broken + 1
    assert "invalid JSON" in problem.message and "truncated" in problem.message
    assert str(problem).startswith(f"{path}:{broken + 1}: ")
    assert summarize_run(path).problems == problems


def test_log_cut_mid_line_is_a_crash_not_an_exception(tmp_path):
    data = (AMD_LORA / "result_1.txt").read_bytes()
    cut = data.rfind(b'"key": "run_stop"')
    path = tmp_path / "result_1.txt"
    path.write_bytes(data[:cut])  # job killed while writing run_stop; no final newline
    run = summarize_run(path)
    assert run.crashed and run.run_stop_ms is None and run.samples_to_converge is None
    assert [p.line for p in run.problems] == [data[:cut].count(b"\n") + 1]


def test_missing_required_field(tmp_path):
    lines = real_lines(AMD_LORA / "result_2.txt")
    target = index_of(lines, "eval_samples")
    lines[target] = lines[target].split(', "metadata"')[0] + "}"
    run = summarize_run(write_lines(tmp_path / "result_2.txt", lines))
    assert [(p.line, "metadata" in p.message) for p in run.problems] == [(target + 1, True)]


def test_status_not_success_means_not_converged(tmp_path):
    lines = real_lines(AMD_LORA / "result_2.txt")
    stop = index_of(lines, "run_stop")
    lines[stop] = lines[stop].replace('"status": "success"', '"status": "aborted"')
    run = summarize_run(write_lines(tmp_path / "result_2.txt", lines))
    assert run.run_stop_status == "aborted" and not run.crashed
    assert run.samples_to_converge is None and run.last_eval_samples is not None


def test_parse_line_cases():
    line = real_lines(AMD_LORA / "result_0.txt")[0]
    assert parse_line("no token here", 1, "f") is None
    assert parse_line("0: " + line + "\r\n", 7, "f").line == 7
    problem = parse_line(":::MLLOG [1, 2]", 3, "f")
    assert isinstance(problem, ParseProblem) and "JSON object" in problem.message


# ---------------------------------------------------------------- streaming

def test_streaming_accepts_a_generator():
    lines = (line for line in real_lines(AMD_LORA / "result_0.txt"))
    assert sum(1 for _ in iter_events_from_lines(lines, source="gen")) > 50


def test_memory_stays_flat_on_a_large_log(tmp_path):
    lines = real_lines(AMD_LORA / "result_0.txt")
    start, stop = index_of(lines, "run_start"), index_of(lines, "run_stop")
    body = "".join(line + "\n" for line in lines[start + 1:stop]).encode()
    path = tmp_path / "big.log"
    with path.open("wb") as handle:
        handle.write("".join(line + "\n" for line in lines[:start + 1]).encode())
        for _ in range(800):
            handle.write(body)
        handle.write("".join(line + "\n" for line in lines[stop:]).encode())
    size = path.stat().st_size
    assert size > 5 * 2**20
    tracemalloc.start()
    try:
        run = summarize_run(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.run_stop_status == "success" and run.problems == []
    assert peak < 2**20, f"peak {peak} bytes for a {size} byte log"
