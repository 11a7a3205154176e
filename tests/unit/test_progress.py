"""The progress model on live, growing MLLOG files written by the real smoke benchmark."""

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlperf_repro.catalog import load_catalog
from mlperf_repro.mllog import parse_line
from mlperf_repro.node.campaign import new_state, write_json
from mlperf_repro.progress import (CampaignWatcher, LogTail, PlainRenderer, Progress,
                                   ProgressSnapshot, make_renderer, stage_of)

ROOT = Path(__file__).resolve().parents[2]
TRAIN = ROOT / "mlperf_repro" / "smoke" / "train.py"
TYPICAL = load_catalog().benchmark("smoke").typical_samples_to_converge


def smoke_log(seed: int) -> bytes:
    """One real smoke run's output (train.py's docstring: SEED set, numpy on the CPU)."""
    env = dict(os.environ, SEED=str(seed), SMOKE_DEVICE="cpu", DGXSYSTEM="CPU_1x1x1")
    proc = subprocess.run([sys.executable, str(TRAIN)], env=env, capture_output=True, check=True,
                          timeout=120)
    assert b'"key": "run_stop"' in proc.stdout
    return proc.stdout


@pytest.fixture(scope="module")
def logs():
    return {seed: smoke_log(seed) for seed in (11, 12)}


def records(data: bytes):
    """(key, value, time_ms, samples_count) of every MLLOG line, in order."""
    out = []
    for number, line in enumerate(data.decode().splitlines(), 1):
        event = parse_line(line, number, "<test>")
        if event is not None and hasattr(event, "key"):
            out.append((event.key, event.value, event.time_ms, event.metadata.get("samples_count")))
    return out


def expected(data: bytes):
    """What the progress model should say after reading exactly ``data`` (complete lines only)."""
    recs = records(data[:data.rfind(b"\n") + 1])
    run_start = next(t for k, _, t, _ in recs if k == "run_start")
    samples, at = None, None
    for _, _, t, s in recs:
        if s is not None and (samples is None or s > samples):
            samples, at = s, t
    metric = [v for k, v, _, _ in recs if k == "eval_accuracy"][-1]
    rate = samples / ((at - run_start) / 1000.0)
    assert samples < TYPICAL  # (past it, the ETA is the time to the next evaluation)
    return samples, metric, rate, (TYPICAL - samples) / rate


def stand_in_runner(directory: Path) -> subprocess.Popen:
    """A process whose command line names the campaign (the campaign module's liveness test)."""
    runner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "campaign",
                               str(directory)])
    deadline = time.time() + 10
    while str(directory) not in Path(f"/proc/{runner.pid}/cmdline").read_text(errors="replace"):
        assert time.time() < deadline, "the stand-in runner did not start"
        time.sleep(0.01)
    return runner


@pytest.fixture
def campaign(tmp_path):
    """A live campaign directory: campaign.json, env.json, state.json and a process whose
    command line names the directory (the campaign module's liveness test)."""
    directory = tmp_path / "20261128T120000-abcd"
    directory.mkdir()
    spec = {"campaign_id": directory.name, "nexp": 3, "benchmark": "smoke", "system": "CPU_1x1x1"}
    write_json(directory / "campaign.json", spec)
    write_json(directory / "env.json", {"DATADIR": "/nowhere"}, mode=0o600)
    runner = stand_in_runner(directory)
    state = new_state(spec)
    state.update(status="running", runner_pid=runner.pid, started="2026-11-28T12:00:00+0000")
    write_json(directory / "state.json", state)
    yield directory, state, runner
    runner.kill()
    runner.wait()


def set_run(directory, state, index, status, started=None, finished=None):
    state["runs"][index].update(status=status, started=started, finished=finished)
    write_json(directory / "state.json", state)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def split_inside(data: bytes, key: bytes, occurrence: int) -> int:
    """A byte offset in the middle of the ``occurrence``-th line holding ``key``."""
    start = -1
    for _ in range(occurrence):
        start = data.index(key, start + 1)
    return start + 5


def test_growing_log_gives_run_index_samples_metric_and_eta(campaign, logs):
    directory, state, _ = campaign
    log0, log1 = logs[11], logs[12]
    watcher = CampaignWatcher(directory, host="node1")
    set_run(directory, state, 0, "running", "2026-11-28T12:00:00+0000")
    (directory / "result_0.txt").write_bytes(b"STARTING TIMING RUN AT 2026-11-28 12:00:00 PM\n")

    progress = watcher.poll()
    assert progress.status == "running" and progress.runner_alive and progress.live
    assert (progress.current.number, progress.current.nexp) == (1, 3)
    assert progress.current.status == "starting" and progress.current.samples is None

    # Up to the middle of the 10th eval_accuracy line: that line is partial, not read yet.
    cut = split_inside(log0, b'"key": "eval_accuracy"', 10)
    append(directory / "result_0.txt", log0[:cut])
    run = watcher.poll().current
    samples, metric, rate, eta = expected(log0[:cut])
    assert run.status == "running"
    assert run.samples == samples == 10 * 8192  # block_start of the 10th block
    assert run.metric == pytest.approx(metric)  # the 9th evaluation: the 10th line is partial
    assert run.metric_samples == 9 * 8192
    assert run.target == 0.85 and run.direction == "lower" and run.reached is False
    assert run.typical_samples == TYPICAL
    assert run.samples_per_second == pytest.approx(rate)
    assert run.eta_s == pytest.approx(eta)

    # Complete the line and go on in uneven chunks: every poll agrees with the lines so far.
    position = cut
    for chunk in (1, 700, 5000, 20000):
        end = min(position + chunk, log0.rfind(b'"key": "run_stop"') - 20)
        append(directory / "result_0.txt", log0[position:end])
        position = end
        run = watcher.poll().current
        samples, metric, rate, eta = expected(log0[:end])
        assert (run.samples, run.metric) == (samples, pytest.approx(metric))
        assert run.eta_s == pytest.approx(eta)
        assert watcher.poll().eta_s == pytest.approx(eta + 2 * (run.init_s + TYPICAL / rate))

    # The end of run 0; the runner records it and starts run 1.
    append(directory / "result_0.txt", log0[position:])
    final = records(log0)[-1]
    assert final[0] == "run_stop"
    set_run(directory, state, 0, "success", "2026-11-28T12:00:00+0000", "2026-11-28T12:00:40+0000")
    set_run(directory, state, 1, "running", "2026-11-28T12:00:40+0000")
    half = split_inside(log1, b'"key": "eval_accuracy"', 40)
    (directory / "result_1.txt").write_bytes(log1[:half])

    progress = watcher.poll()
    done = progress.runs[0]
    assert (done.status, done.samples, done.eta_s) == ("success", final[3], 0.0)
    assert done.reached is True
    run = progress.current
    assert (run.index, run.number, run.nexp) == (1, 2, 3)
    samples, metric, rate, eta = expected(log1[:half])
    assert (run.samples, run.metric, run.eta_s) == (samples, pytest.approx(metric), pytest.approx(eta))
    assert progress.runs[2].status == "pending"
    assert progress.done == 1 and progress.counts == {"success": 1, "running": 1, "pending": 1}
    # The campaign ends after this run's ETA plus one more run as long as the finished one (40 s).
    assert progress.eta_s == pytest.approx(eta + 40.0)
    assert "run 2/3 running" in progress.line() and "campaign ETA" in progress.line()


def test_an_interrupted_run_and_its_replaced_log(campaign, logs):
    directory, state, runner = campaign
    log = logs[11]
    watcher = CampaignWatcher(directory)
    set_run(directory, state, 0, "running", "2026-11-28T12:00:00+0000")
    cut = split_inside(log, b'"key": "eval_accuracy"', 30)
    (directory / "result_0.txt").write_bytes(log[:cut])
    assert watcher.poll().current.samples == 30 * 8192
    runner.kill()  # the node rebooted: the runner is gone, state.json still says running
    runner.wait()
    progress = watcher.poll()
    assert progress.status == "interrupted" and progress.runner_alive is False
    assert progress.runs[0].status == "interrupted" and progress.current is None
    assert progress.eta_s is None and progress.line().startswith("campaign interrupted: 0/3")
    # Resumed: the partial log is kept aside and run 0 starts again in a fresh file.
    resumed = stand_in_runner(directory)
    state["runner_pid"] = resumed.pid
    write_json(directory / "state.json", state)
    os.rename(directory / "result_0.txt", directory / "result_0.txt.interrupted-1")
    early = split_inside(log, b'"key": "eval_accuracy"', 3)
    (directory / "result_0.txt").write_bytes(log[:early])
    try:
        run = watcher.poll().current
        assert run.samples == 3 * 8192 and run.status == "running"
    finally:
        resumed.kill()
        resumed.wait()


def test_finished_runs_without_a_final_newline_and_crashed_runs(campaign, logs):
    directory, state, _ = campaign
    log = logs[12]
    (directory / "result_0.txt").write_bytes(log.rstrip(b"\n").rsplit(b"\n", 1)[0])  # no run_stop
    set_run(directory, state, 0, "crashed", "2026-11-28T12:00:00+0000", "2026-11-28T12:00:30+0000")
    (directory / "result_1.txt").write_bytes(log.rstrip(b"\n"))  # the last line has no newline
    set_run(directory, state, 1, "success", "2026-11-28T12:00:30+0000", "2026-11-28T12:01:00+0000")
    progress = CampaignWatcher(directory).poll()
    assert progress.runs[0].status == "crashed"
    assert progress.runs[1].status == "success"
    assert progress.runs[1].samples == records(log)[-1][3]  # run_stop's line was parsed
    assert progress.current is None


def test_log_tail_keeps_partial_lines_and_handles_crlf_and_shrinking(tmp_path):
    path = tmp_path / "result_0.txt"
    line = ':::MLLOG {"time_ms": 1000, "key": "eval_accuracy", "value": 0.9, "metadata": {"samples_count": 64}}'
    tail = LogTail(path)
    assert tail.read() == []  # no file yet
    path.write_bytes(b"noise\r\n" + line[:30].encode())
    assert tail.read() == []
    append(path, (line[30:] + "\r\n").encode())
    (event,) = tail.read()
    assert (event.key, event.value, event.samples_count, event.line) == ("eval_accuracy", 0.9, 64, 2)
    assert tail.read() == []
    path.write_bytes((line + "\n").encode())  # truncated and rewritten (shorter than before)
    (event,) = tail.read()
    assert event.line == 1 and tail.resets == 1


def test_host_and_stage_progress_from_runner_events(tmp_path):
    progress = Progress()
    feed = progress.feed
    feed({"event": "playbook_on_play_start", "event_data": {"play": "Render - benchmark code"}})
    feed({"event": "runner_on_start", "event_data": {"host": "n1", "play": "Render - benchmark code",
                                                       "task": "Render config_<SYSTEM>.sh"}})
    feed({"event": "runner_on_ok", "event_data": {"host": "n1", "task": "Render config_<SYSTEM>.sh",
                                                    "res": {"changed": True}}})
    feed({"event": "runner_on_start", "event_data": {"host": "n1", "play": "Render - benchmark code",
                                                       "task": "Render job.sh for Slurm"}})
    feed({"event": "runner_on_skipped", "event_data": {"host": "n1", "task": "Render job.sh for Slurm"}})
    feed({"event": "runner_on_failed", "event_data": {"host": "n2", "task": "Install ROCm",
                                                        "play": "Provision - amdgpu driver and ROCm",
                                                        "res": {"msg": "no space left"}}})
    # A remote node's campaign: only what the module returns (its directory is not here).
    remote = str(tmp_path / "not-here")
    feed({"event": "runner_retry", "event_data": {
        "host": "n3", "play": "Run - a campaign", "task_action": "mlperf_campaign",
        "res": {"campaign_dir": remote, "status": "running", "nexp": 10, "done": 4,
                "counts": {"success": 4, "running": 1, "pending": 5},
                "runs": [{"index": k, "status": "success" if k < 4 else "running" if k == 4 else "pending"}
                         for k in range(10)]}}})
    snapshot = progress.snapshot()
    n1, n2, n3 = (snapshot.hosts[h] for h in ("n1", "n2", "n3"))
    assert (n1.stage, n1.task, n1.ok, n1.changed, n1.skipped) == ("render", "Render config_<SYSTEM>.sh", 1, 1, 1)
    assert n2.failed == 1 and n2.last_failure == "Install ROCm: no space left"
    assert n3.campaign.current.number == 5 and n3.campaign.nexp == 10
    assert n3.line() == "n3: run 5/10 running"
    assert stage_of("Validate the inventory and resolve the benchmark") == "validate"


def test_plain_renderer_prints_changes_and_throttles_numbers():
    from mlperf_repro.progress import CampaignProgress, HostProgress, RunProgress

    out, now = io.StringIO(), [0.0]
    renderer = PlainRenderer(out, interval=30, clock=lambda: now[0])

    def show(samples, index=0):
        run = RunProgress(index=index, nexp=3, status="running", samples=samples)
        host = HostProgress(host="n1", stage="run", campaign=CampaignProgress(
            campaign_dir="/x", host="n1", status="running", nexp=3, runs=[run]))
        renderer.update(ProgressSnapshot(status="running", stage="run", hosts={"n1": host},
                                         started=0, updated=0))

    show(100)
    show(200)          # only numbers moved, within the interval: not printed
    now[0] = 31
    show(300)          # the interval has passed
    show(300, index=1)  # the next run: printed at once
    assert out.getvalue().splitlines() == [
        "n1: run 1/3 running: samples 100", "n1: run 1/3 running: samples 300",
        "n1: run 2/3 running: samples 300"]
    assert isinstance(make_renderer(io.StringIO()), PlainRenderer)  # not a terminal
