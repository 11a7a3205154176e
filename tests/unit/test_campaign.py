"""The detached campaign runner: NEXP runs, faults, resume, stop, permissions.

The runs print real MLLOG lines: a log written by the smoke benchmark (mlperf_repro/smoke) is
replayed by a small run_and_time.sh, which can also crash or stall on a chosen run.
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlperf_repro.node import campaign, fileio

ROOT = Path(__file__).resolve().parents[2]
RUNNER = ROOT / "mlperf_repro" / "node" / "campaign.py"

RUN_AND_TIME = r"""#!/bin/bash
# Replays a real smoke-benchmark log; CRASH_AT / STALL_AT name a run (by SEED order) to break.
set -eu
n=$(cat "$STATE_DIR/count" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE_DIR/count"
echo "NEXP seen by the run: $NEXP" >&2
if [ "${CRASH_AT:-x}" = "$n" ]; then head -n 5 "$LOG"; exit 3; fi
if [ "${STALL_AT:-x}" = "$n" ]; then head -n 5 "$LOG"; sleep 60; fi
cat "$LOG"
"""


@pytest.fixture(scope="module")
def smoke_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "result.txt"
    env = dict(os.environ, SEED="7", SMOKE_DEVICE="cpu", DGXSYSTEM="CPU_1x1x1")
    with open(out, "w") as handle:
        subprocess.run([sys.executable, str(ROOT / "mlperf_repro/smoke/train.py")], env=env,
                       stdout=handle, check=True)
    return out


def make(tmp_path, smoke_log, nexp=3, extra_config="", **env):
    code = tmp_path / "code"
    code.mkdir()
    (code / "run_and_time.sh").write_text(RUN_AND_TIME)
    # AMD's LoRA config resets NEXP when sourced: the runner must not be fooled.
    (code / "config_CPU_1x1x1.sh").write_text(f'export DGXSYSTEM="CPU_1x1x1"\nexport NEXP=1\n{extra_config}')
    (tmp_path / "st").mkdir()
    spec = {"nexp": nexp, "code_dir": str(code), "config_file": str(code / "config_CPU_1x1x1.sh"),
            "runtime": "none", "campaign_id": "c1", "root_seed": 42}
    env = dict({"LOG": str(smoke_log), "STATE_DIR": str(tmp_path / "st"), "HF_TOKEN": "hf_secret"}, **env)
    directory = tmp_path / "logs" / "c1"
    campaign.prepare(str(directory), spec, env)
    return directory


def run_inline(directory):
    return subprocess.run([sys.executable, str(RUNNER), "run", str(directory)],
                          capture_output=True, text=True, timeout=120)


def wait_for(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_runs_nexp_times_despite_a_config_that_resets_nexp(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, nexp=3)
    assert run_inline(directory).returncode == 0
    state = campaign.summarize(str(directory))
    assert state["status"] == "complete" and state["done"] == 3
    assert [r["status"] for r in state["runs"]] == ["success"] * 3
    assert len({r["seed"] for r in state["runs"]}) == 3
    for k in range(3):
        text = (directory / f"result_{k}.txt").read_text()
        assert '"key": "run_stop"' in text and "NEXP seen by the run: 3" in text


def test_crashed_run_is_reported_and_the_others_still_run(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, nexp=3, CRASH_AT="1")
    run_inline(directory)
    state = campaign.summarize(str(directory))
    assert [r["status"] for r in state["runs"]] == ["success", "crashed", "success"]
    assert state["runs"][1]["rc"] == 3
    assert state["status"] == "complete"


def test_killed_runner_resumes_at_the_first_unfinished_run(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, nexp=3, STALL_AT="1")
    campaign.start_detached(str(directory), str(RUNNER))
    count = tmp_path / "st" / "count"
    assert wait_for(lambda: count.exists() and count.read_text().strip() == "2")  # run 1 stalls
    first = campaign.summarize(str(directory))["runs"][0]
    state = campaign.summarize(str(directory))
    run_group = state["runs"][1]["process"]["pid"]
    # The node "reboots" mid-run: the runner and the run (its own process group) die.
    os.killpg(os.getpgid(state["runner_pid"]), signal.SIGKILL)
    os.killpg(run_group, signal.SIGKILL)
    assert wait_for(lambda: campaign.summarize(str(directory))["status"] == "interrupted")
    assert wait_for(lambda: not campaign.group_members(state["runs"][1]["process"]))
    assert campaign.find_resumable(str(directory.parent)) == str(directory)

    # The stalled run is retried (without the stall) and the finished one is not touched.
    env = json.loads((directory / "env.json").read_text())
    env.pop("STALL_AT")
    campaign.write_json(str(directory / "env.json"), env, mode=0o600)
    campaign.start_detached(str(directory), str(RUNNER))
    assert wait_for(lambda: campaign.summarize(str(directory))["status"] == "complete", 60)
    state = campaign.summarize(str(directory))
    assert state["runs"][0] == first
    assert [r["status"] for r in state["runs"]] == ["success"] * 3
    assert (directory / "result_1.txt.interrupted-1").exists()  # the partial log is kept
    assert int((tmp_path / "st" / "count").read_text()) == 4  # 3 runs + 1 retried, none re-run


def test_stop_leaves_unfinished_runs_pending_and_a_new_start_finishes_them(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, nexp=2, STALL_AT="0")
    campaign.start_detached(str(directory), str(RUNNER))
    assert wait_for(lambda: campaign.summarize(str(directory))["runs"][0]["status"] == "running")
    assert campaign.stop(str(directory))
    assert wait_for(lambda: campaign.summarize(str(directory))["status"] == "stopped")
    assert [r["status"] for r in campaign.summarize(str(directory))["runs"]] == ["pending", "pending"]
    assert campaign.find_resumable(str(directory.parent)) == str(directory)
    env = json.loads((directory / "env.json").read_text())
    env.pop("STALL_AT")
    campaign.write_json(str(directory / "env.json"), env, mode=0o600)
    campaign.start_detached(str(directory), str(RUNNER))
    assert wait_for(lambda: campaign.summarize(str(directory))["status"] == "complete", 60)
    assert [r["status"] for r in campaign.summarize(str(directory))["runs"]] == ["success", "success"]
    assert (directory / "result_0.txt.interrupted-1").exists()


def test_a_stop_that_lands_while_a_run_starts_stops_that_run(tmp_path, smoke_log, monkeypatch):
    """The signal comes after the run is marked running and before its process exists."""
    directory = make(tmp_path, smoke_log, nexp=2, STALL_AT="0")  # run 0 would sleep 60 s
    runner = campaign.CampaignRunner(str(directory))
    monkeypatch.setattr(runner, "clear_caches", lambda: runner.on_signal(signal.SIGTERM, None))
    handlers = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    umask = os.umask(0o022)  # the runner sets its own (in this process): give the next tests theirs
    os.umask(umask)
    try:
        assert runner.main() == 0
    finally:
        signal.signal(signal.SIGTERM, handlers[0])
        signal.signal(signal.SIGINT, handlers[1])
        os.umask(umask)
    state = campaign.summarize(str(directory))
    assert state["status"] == "stopped"
    assert [r["status"] for r in state["runs"]] == ["pending", "pending"]
    # the run was stopped, not left to run to its end
    assert "run_stop" not in (directory / "result_0.txt").read_text()


def test_campaign_files_permissions(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log)
    assert stat.S_IMODE((directory / "env.json").stat().st_mode) == 0o600
    mode = stat.S_IMODE(directory.stat().st_mode)
    assert not mode & stat.S_IWOTH and mode & stat.S_IWGRP  # group-writable, never world-writable
    with pytest.raises(FileExistsError):
        campaign.prepare(str(directory), {"nexp": 1, "campaign_id": "c1"}, {})  # never overwritten


def test_bad_config_fails_the_campaign_with_its_message(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, extra_config="exit 7\n")
    run_inline(directory)
    state = campaign.summarize(str(directory))
    assert state["status"] == "failed" and "config_CPU_1x1x1.sh" in state["error"]


def test_run_outcome_reads_run_stop_status(tmp_path, smoke_log):
    text = smoke_log.read_text()
    path = tmp_path / "r.txt"
    path.write_text(text.replace('"status": "success"', '"status": "aborted"'))
    assert campaign.run_outcome(str(path), 0) == "aborted"
    path.write_text(text)
    assert campaign.run_outcome(str(path), 0) == "success"
    assert campaign.run_outcome(str(path), 1) == "failed"  # converged, then the process failed
    path.write_text("\n".join(l for l in text.splitlines() if "run_stop" not in l))
    assert campaign.run_outcome(str(path), 0) == "crashed"


def test_every_path_the_campaign_creates_has_its_mode_whatever_the_umask(tmp_path, smoke_log):
    old = os.umask(0)
    try:
        directory = make(tmp_path, smoke_log, nexp=2)
        proc = subprocess.run([sys.executable, str(RUNNER), "run", str(directory)],
                              capture_output=True, text=True, timeout=120,
                              preexec_fn=lambda: os.umask(0))
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    assert campaign.summarize(str(directory))["status"] == "complete"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [directory.parent, directory,
                                                                *directory.iterdir()]}
    assert {"result_0.txt", "result_1.txt", "state.json", "runner.lock"} <= set(modes)
    assert [name for name, mode in modes.items() if mode & stat.S_IWOTH] == []
    assert modes["env.json"] == 0o600 and modes["c1"] == 0o2770
    assert modes["result_0.txt"] == modes["state.json"] == 0o644


def test_a_process_is_told_apart_from_a_later_one_with_its_pid():
    me = campaign.identity(os.getpid())
    assert campaign.is_same_process(me)
    assert not campaign.is_same_process(dict(me, start=me["start"] - 1))  # a recycled pid
    assert not campaign.is_same_process(dict(me, boot="another-boot"))   # before a reboot
    assert not campaign.is_same_process({"pid": os.getpid(), "start": None})
    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        group = campaign.identity(child.pid)
        assert campaign.group_members(group) == [child.pid]
        assert campaign.group_members(dict(group, start=group["start"] - 1)) == []
        assert not campaign.signal_group(dict(group, start=group["start"] - 1), signal.SIGTERM)
        assert child.poll() is None  # not signalled: not the recorded process
        assert campaign.signal_group(group, signal.SIGTERM)
        assert child.wait(timeout=30) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait()
    assert campaign.group_members(group) == []


def test_a_second_runner_of_a_campaign_exits_at_once(tmp_path, smoke_log):
    directory = make(tmp_path, smoke_log, nexp=2, STALL_AT="0")
    campaign.start_detached(str(directory), str(RUNNER))
    assert wait_for(lambda: campaign.summarize(str(directory))["runs"][0]["status"] == "running")
    first = campaign.summarize(str(directory))["runner"]
    second = run_inline(directory)  # the lock is held: it exits without touching anything
    assert second.returncode == 0
    assert "another runner" in second.stdout
    assert campaign.summarize(str(directory))["runner"] == first
    assert int((tmp_path / "st" / "count").read_text()) == 1
    assert campaign.stop(str(directory))
    assert wait_for(lambda: campaign.summarize(str(directory))["status"] == "stopped")


@pytest.mark.parametrize("nexp, said", [
    (10 ** 12, "from 1 to 1000 (10 for a submission), got 1000000000000"),
    (0, "got 0"), (-3, "got -3"), ("ten", 'got "ten"'), (True, "got true"), (2.5, "got 2.5"),
    (None, "got nothing (null)"), ([10], "got a list"),
])
def test_a_bad_run_count_is_refused_in_words(tmp_path, nexp, said):
    with pytest.raises(campaign.CampaignError) as err:
        campaign.ensure_started(str(tmp_path / "root"), "c1", {
            "nexp": nexp, "code_dir": "/x", "config_file": "/x/c.sh", "runtime": "none"},
            str(RUNNER))
    assert str(err.value).startswith("spec.nexp: expected a whole number of runs")
    assert said in str(err.value)
    assert not (tmp_path / "root").exists()  # refused before anything was created
    assert campaign.check_nexp("12") == 12


def test_mount_fields_are_substituted_never_interpreted():
    fields = {"DATADIR": "/data/x", "LOGDIR": "/data/x/results/c1"}
    mounts = [{"host": "{DATADIR}/data", "container": "/data"},
              {"host": "{LOGDIR}", "container": "/results"},
              {"host": "/odd/{DATADIR.__class__}/{0}", "container": "/odd"}]
    assert campaign.expand_mounts(mounts, fields) == [
        {"host": "/data/x/data", "container": "/data"},
        {"host": "/data/x/results/c1", "container": "/results"},
        {"host": "/odd/{DATADIR.__class__}/{0}", "container": "/odd"}]
    with pytest.raises(campaign.CampaignError, match=r"\{MODEL\}, which env does not set"):
        campaign.expand_mounts([{"host": "{MODEL}", "container": "/m"}], fields)
    with pytest.raises(campaign.CampaignError, match="a secret"):
        campaign.expand_mounts([{"host": "{HF_TOKEN}", "container": "/m"}], fields, {"HF_TOKEN"})


def test_write_json_leaves_no_temporary_file_when_it_fails(tmp_path):
    target = tmp_path / "gone" / "state.json"  # its directory does not exist: the write fails
    with pytest.raises(OSError) as err:
        campaign.write_json(str(target), {"a": 1})
    assert str(target) in campaign.os_error_text(err.value)
    path = tmp_path / "state.json"
    campaign.write_json(str(path), {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert fileio._rewrite_in_place(str(path), b'{"a": 2}\n')  # within the space it holds
    assert json.loads(path.read_text()) == {"a": 2}
