"""The stand-in images' run_and_time.sh replays a published result log, and the replayed set
scores exactly as the published one.

run_and_time.sh and scripts/replay_mllog.py are run for real here (bash, python3, no container),
from the /workspace/code the image builder lays out (tests/infra/amd_image.write_code), with the
waits compressed to almost nothing. The published sets and their scores are the ones of
tests/data/mlperf-logs/README.md.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mlperf_repro.scoring import score_directory
from tests.infra import amd_image

TIME = re.compile(r'"time_ms": ([0-9]+)')
BENCHMARKS = sorted(amd_image.VARIANTS)


@pytest.fixture(scope="module")
def codes(tmp_path_factory):
    """/workspace/code of each image, written here once."""
    top = tmp_path_factory.mktemp("codes")
    return {b: amd_image.write_code(b, top / b) for b in BENCHMARKS}


def run(code: Path, env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"], "MLPERF_REPLAY_MAX_SECONDS": "0.05",
            "MLPERF_REPLAY_LEDGER": "none"}
    base.update(env)
    return subprocess.run(["bash", str(code / "run_and_time.sh")], env=base, capture_output=True,
                          timeout=timeout, cwd="/")


def times(text: str) -> list[int]:
    return [int(t) for t in TIME.findall(text)]


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_a_replayed_file_is_the_published_one_moved_to_now(codes, benchmark):
    published = amd_image.variant(benchmark).replay / "result_3.txt"
    before = int(time.time() * 1000)
    proc = run(codes[benchmark], {"MLPERF_REPLAY_INDEX": "3"})
    after = int(time.time() * 1000)
    assert proc.returncode == 0, proc.stderr
    out, source = proc.stdout.decode(), published.read_text()
    new, old = times(out), times(source)
    assert len(new) == len(old) and len(new) > 10
    offset = new[0] - old[0]
    assert before <= new[0] <= after  # the run starts now
    assert [t - offset for t in new] == old  # every relative time exactly as published
    # and nothing else changed, byte for byte, but for a newline ending a published file's last
    # line where it lacks one (a process writes whole lines: its stderr would join that line)
    whole = source if source.endswith("\n") else source + "\n"
    assert TIME.sub(lambda m: '"time_ms": %d' % (int(m.group(1)) - offset), out) == whole
    assert "result_3.txt" in proc.stderr.decode()


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_ten_replayed_runs_score_exactly_as_the_published_set(codes, benchmark, tmp_path):
    """The campaign runner's seeds (root + 1000*k): the ledger gives each run its own file."""
    v = amd_image.variant(benchmark)
    ledger = tmp_path / "ledger.json"
    runs = tmp_path / "runs"
    runs.mkdir()
    for k in range(10):
        proc = run(codes[benchmark], {"SEED": str(4242 + 1000 * k), "MLPERF_REPLAY_LEDGER": str(ledger)})
        assert proc.returncode == 0, proc.stderr
        (runs / f"result_{k}.txt").write_bytes(proc.stdout)
    entries = json.loads(ledger.read_text())["seeds"].values()
    assert sorted(e["index"] for e in entries) == list(range(10)) and all(e["done"] for e in entries)
    replayed = score_directory(runs, ruleset="6.0.0")
    published = score_directory(v.replay, ruleset="6.0.0")
    assert replayed.valid and replayed.reasons == [] and replayed.parse_problems == []
    assert replayed.rcp.status == published.rcp.status == "Pass"
    assert round(replayed.score_minutes, 4) == v.score_minutes  # tests/data/mlperf-logs/README.md
    assert replayed.score_minutes == published.score_minutes  # the same float, exactly
    assert sorted(r.minutes for r in replayed.runs) == sorted(r.minutes for r in published.runs)


def test_seed_choices_without_and_with_a_ledger(codes, tmp_path):
    code = codes["llama2_70b_lora"]

    def chosen(env):
        proc = run(code, env)
        assert proc.returncode == 0, proc.stderr
        return int(re.search(r"result_(\d+)\.txt", proc.stderr.decode()).group(1))

    # no ledger: SEED mod the number of files (AMD's Slurm seeds ROOT_SEED + i are consecutive)
    assert [chosen({"SEED": str(s)}) for s in (20, 21, 29)] == [0, 1, 9]
    # a ledger: a new seed takes the next file; a seed seen before (a resumed run, another node)
    # replays its file again while its first replay has not finished...
    ledger = tmp_path / "ledger.json"
    env = {"MLPERF_REPLAY_LEDGER": str(ledger)}
    assert chosen(dict(env, SEED="7")) == 0
    assert chosen(dict(env, SEED="9007")) == 1
    data = json.loads(ledger.read_text())
    assert data["seeds"] == {"7": {"index": 0, "done": True}, "9007": {"index": 1, "done": True}}
    data["seeds"]["9007"]["done"] = False  # as a run that was killed half-way leaves it
    ledger.write_text(json.dumps(data))
    assert chosen(dict(env, SEED="9007")) == 1
    # ...and a finished seed used again (AMD's $RANDOM can repeat) takes a new file
    assert chosen(dict(env, SEED="7")) == 2
    # a rank other than 0 prints nothing and takes no file of its own
    proc = run(code, dict(env, SEED="12345", SLURM_NODEID="3"))
    assert proc.returncode == 0 and proc.stdout == b"" and "rank 3" in proc.stderr.decode()
    assert "12345" not in json.loads(ledger.read_text())["seeds"]


def test_bad_input_is_named(codes, tmp_path):
    code = codes["llama31_8b"]
    proc = run(code, {})
    assert proc.returncode == 1 and b"SEED is not set" in proc.stderr
    for env, message in (({"MLPERF_REPLAY_INDEX": "12"}, "MLPERF_REPLAY_INDEX=12: no result_12.txt"),
                         ({"SEED": "x1"}, "SEED='x1': expected an integer"),
                         ({"SEED": "1", "MLPERF_REPLAY_MAX_SECONDS": "-1"},
                          "MLPERF_REPLAY_MAX_SECONDS='-1'"),
                         ({"SEED": "1", "MLPERF_REPLAY_LOGS": str(tmp_path)},
                          "no result_<N>.txt in %s" % tmp_path)):
        proc = run(code, env)
        assert proc.returncode == 2, (env, proc.stderr)
        assert message in proc.stderr.decode() and proc.stdout == b""


def test_compression_spreads_the_lines_over_the_given_time(codes):
    """Lines come out at their scaled offsets, not all at the end: a reader sees the run progress."""
    proc = subprocess.Popen(["bash", str(codes["llama2_70b_lora"] / "run_and_time.sh")],
                            env={"PATH": os.environ["PATH"], "MLPERF_REPLAY_INDEX": "0",
                                 "MLPERF_REPLAY_LEDGER": "none", "MLPERF_REPLAY_MAX_SECONDS": "60"},
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        first = proc.stdout.readline()
        assert b"cache_clear" in first  # the first line at once; run_stop is 60 s away
        # a stop (the runner's SIGTERM to the process group) ends the replay mid-way
        os.killpg(proc.pid, signal.SIGTERM)
        rest = proc.stdout.read()
        assert proc.wait(timeout=10) != 0
        assert b'"key": "run_stop"' not in rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
