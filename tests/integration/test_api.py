"""The Python API (ansible-runner) against inventory/local: a full smoke run, a cancelled run
re-attached to, a failed task's message, and a plan that changes nothing."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlperf_repro.stages import STAGES
from mlperf_repro import api
from mlperf_repro.node.campaign import container_run_argv, pid_alive, planned_commands, read_json

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


def sandbox_vars(base: Path, nexp: int = 3) -> dict:
    return {"mlperf_local_root": str(base / "root"), "mlperf_results_dir": str(base / "results"),
            "mlperf_nexp": nexp, "mlperf_allow_partial": True}


def tree_digest(*roots: Path) -> dict:
    """Every path under ``roots`` with its content hash (files), mode and mtime."""
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            out[str(path)] = (digest, st.st_mode, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A whole chain of 3 smoke runs, started from another thread and another directory."""
    base = tmp_path_factory.mktemp("api_full")
    events, holder = [], {}
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    cwd = os.getcwd()
    os.chdir(elsewhere)  # the API must not depend on the current directory
    try:
        started = time.monotonic()
        thread = threading.Thread(target=lambda: holder.update(result=api.run(
            "inventory/local", extravars=sandbox_vars(base), on_event=events.append,
            private_data_dir=base / "runner")))
        thread.start()
        thread.join(300)
        holder["seconds"] = time.monotonic() - started
    finally:
        os.chdir(cwd)
    assert not list(elsewhere.iterdir())
    return holder["result"], base, events


def test_full_smoke_run_returns_recap_campaign_and_score(full_run):
    result, base, events = full_run
    assert result.status == "successful" and result.rc == 0 and result.ok, result.failed_tasks
    assert set(result.recap) == {"local", "localhost"}
    assert result.recap["local"].failed == 0 and result.recap["local"].changed > 0
    assert result.failed_tasks == []
    # The node's campaign and the collected copy on the controller.
    (node_dir,) = result.campaigns.values()
    assert Path(node_dir).parent == base / "root" / "logs" / "smoke" / "CPU_1x1x1"
    assert result.campaign_dir == str(Path(result.result_sets["local"]).parent)
    assert Path(result.campaign_dir).parent == base / "results" / "smoke" / "CPU_1x1x1"
    # The score stage ran: score.json of the set.
    score = result.score
    assert score == json.loads((Path(result.result_sets["local"]) / "score.json").read_text())
    assert len(score["runs"]) == 3 and all(r["status"] == "success" for r in score["runs"])
    assert score["olympic_minutes"] > 0 and not score["valid"]  # 3 of 10 runs: partial
    # Artifacts kept per run, under the private data dir given.
    artifacts = Path(result.artifact_dir)
    assert artifacts.parent.parent == base / "runner" / result.ident
    assert (artifacts / "status").read_text() == "successful"
    assert (artifacts / "rc").read_text() == "0"
    assert "smoke: score" in (artifacts / "stdout").read_text()
    assert oct((Path(result.private_data_dir) / "env" / "extravars").stat().st_mode & 0o777) == "0o600"
    # Every event reached the callback; the stages ran in the guide's order.
    assert len(events) == result.events > 100
    assert [e["event"] for e in events][-1] == "playbook_on_stats"
    assert result.stages == ["validate"] + [s.name for s in STAGES if s.default]
    assert result.stages[5:9] == ["render", "healthcheck", "run", "collect"]


def test_status_reads_the_campaign_from_the_node_and_the_collected_copy(full_run):
    result, _, _ = full_run
    (node,) = api.status(result.campaigns["local"])
    assert node.status == "complete" and node.live and node.runner_alive is False
    assert [r.status for r in node.runs] == ["success"] * 3
    assert all(r.samples and r.reached for r in node.runs)
    (collected,) = api.status(result.campaign_dir)
    assert collected.host == "local" and not collected.live and collected.done == 3
    out = subprocess.run([str(BIN / "mlperf-repro"), "status", result.campaigns["local"]],
                         capture_output=True, text=True, check=True).stdout
    assert "campaign complete: 3/3 runs finished (3 success)" in out
    assert out.count("success: samples") == 3


def test_cancel_stops_the_playbook_and_the_campaign_goes_on_detached(tmp_path):
    extravars = sandbox_vars(tmp_path, nexp=10)
    seen = {}

    def on_event(event):
        data = event.get("event_data") or {}
        if data.get("task_action") == "mlperf_campaign" and (data.get("res") or {}).get("campaign_dir"):
            seen["dir"] = data["res"]["campaign_dir"]

    def cancel():  # once a run has finished
        state = read_json(os.path.join(seen["dir"], "state.json"), {}) if "dir" in seen else {}
        return any(r["status"] == "success" for r in state.get("runs", []))

    statuses = []
    result = api.run(extravars=extravars, on_event=on_event, cancel=cancel, on_status=statuses.append,
                     private_data_dir=tmp_path / "runner")
    assert result.status == "canceled" and statuses[-1] == "canceled"
    assert (Path(result.artifact_dir) / "status").read_text() == "canceled"
    campaign = result.campaigns["local"]
    state = read_json(os.path.join(campaign, "state.json"))
    assert pid_alive(state["runner_pid"], campaign), "the campaign should outlive the playbook"
    finished = {r["log"]: hashlib.sha256(Path(campaign, r["log"]).read_bytes()).hexdigest()
                for r in state["runs"] if r["status"] == "success"}
    assert 1 <= len(finished) < 10
    assert not result.scores  # the score stage never ran

    # `--tags run` re-attaches to the running campaign and waits for it to complete.
    again = api.run(tags="run", extravars=extravars, private_data_dir=tmp_path / "runner")
    assert again.ok, again.failed_tasks
    assert again.campaigns == {"local": campaign}
    state = read_json(os.path.join(campaign, "state.json"))
    assert state["status"] == "complete"
    assert [r["status"] for r in state["runs"]] == ["success"] * 10
    for log, digest in finished.items():  # finished runs were never run again
        assert hashlib.sha256(Path(campaign, log).read_bytes()).hexdigest() == digest
    assert not list(Path(campaign).glob("*.interrupted-*"))


def test_a_failed_task_surfaces_its_message(tmp_path):
    result = api.run(extravars=sandbox_vars(tmp_path, nexp=0), private_data_dir=tmp_path / "runner")
    assert result.status == "failed" and result.rc != 0
    # validation runs once for every host: one failure says every problem, and the run stops
    assert [f.host for f in result.failed_tasks] == ["local"]
    failed = result.failed_tasks[0]
    assert failed.task == "Stop on bad site values, naming each one" and failed.role == "validate"
    assert "mlperf_nexp must be a positive integer" in failed.message
    assert all(r.changed == 0 for r in result.recap.values())
    assert not (tmp_path / "root").exists()


def test_cli_run_failure_is_readable(tmp_path):
    proc = subprocess.run(
        [str(BIN / "mlperf-repro"), "run", "--plain", "--private-data-dir", str(tmp_path / "runner"),
         "-e", f"mlperf_local_root={tmp_path}/root", "-e", f"mlperf_results_dir={tmp_path}/results",
         "-e", "mlperf_nexp=0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "run: failed (rc 2)" in proc.stdout
    assert "FAILED local: Stop on bad site values, naming each one: The inventory is not ready:" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    bad = subprocess.run([str(BIN / "mlperf-repro"), "run", "-i", str(tmp_path / "nope"),
                          "--private-data-dir", str(tmp_path / "unused")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("mlperf-repro run: inventory ")
    assert len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "unused").exists()  # nothing is created for a run that cannot start


def test_plan_on_a_fresh_sandbox_shows_diffs_and_commands_and_creates_nothing(tmp_path):
    plan = api.plan(extravars=sandbox_vars(tmp_path), private_data_dir=tmp_path / "runner")
    assert plan.ok, plan.failed_tasks
    # Nothing but the artifacts and the preflight report (a dry run's report too; no node changes).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "runner"]
    assert [p.name for p in (tmp_path / "results").rglob("*")] == ["preflight.json"]
    config = [d for d in plan.diffs if (d.path or "").endswith("config_CPU_1x1x1.sh")]
    assert config and 'export DGXSYSTEM="CPU_1x1x1"' in config[0].diff
    commands = plan.commands["local"]
    assert commands[0].startswith("cd ${CODEDIR} && set -a && . ${CODEDIR}/config_CPU_1x1x1.sh")
    runs = [c for c in commands if "bash ./run_and_time.sh" in c]
    assert len(runs) == 3 and runs[0].startswith("SEED=") and runs[0].endswith("/result_0.txt 2>&1")
    assert any(c.task == "Start the campaign, or re-attach to an unfinished one" for c in plan.changes)


def test_plan_after_a_run_changes_nothing(full_run):
    result, base, _ = full_run
    sandbox = sandbox_vars(base)
    roots = (Path(sandbox["mlperf_local_root"]), Path(sandbox["mlperf_results_dir"]))
    before = tree_digest(*roots)
    plan = api.plan(extravars=sandbox, private_data_dir=base / "runner")
    assert plan.ok, plan.failed_tasks
    assert tree_digest(*roots) == before
    assert plan.diffs == []  # the rendered files are up to date
    # The campaign is complete, so a new one would start: its commands are planned.
    assert len([c for c in plan.commands["local"] if "run_and_time.sh" in c]) == 3
    assert {c.task for c in plan.changes} == {"Start the campaign, or re-attach to an unfinished one"}


def test_planned_commands_of_a_docker_campaign_never_show_env_values():
    spec = {"nexp": 2, "root_seed": 5, "code_dir": "/shared/code/llama31_8b",
            "config_file": "/shared/code/llama31_8b/config_MI355X_1x8x1.sh", "runtime": "docker",
            "image": "rocm/amd-mlperf:llama31_8b_training_6.0", "container_name": "mlperf_llama31",
            "container_flags": ["--net=host", "--device=/dev/kfd"],
            "mounts": [{"host": "/data/llama31/data", "container": "/data"}]}
    env = {"DATADIR": "/data/llama31", "CODEDIR": "/shared/code/llama31_8b", "HF_TOKEN": "hf_s3cr3t",
           "CONT": "rocm/amd-mlperf:llama31_8b_training_6.0"}
    lines = planned_commands(spec, "/logs/c1", env=env)
    assert lines[0] == "cd ${CODEDIR} && set -a && . ${CODEDIR}/config_MI355X_1x8x1.sh && set +a && export NEXP=2"
    assert lines[1] == " ".join(container_run_argv(spec)).replace(
        "/data/llama31", "${DATADIR}").replace("rocm/amd-mlperf:llama31_8b_training_6.0", "${CONT}")
    assert lines[2] == ("SEED=5 docker exec --env <each variable config_MI355X_1x8x1.sh exports> "
                        "--env SEED --env NEXP mlperf_llama31 bash -c 'exec bash ./run_and_time.sh 2>&1' "
                        "> /logs/c1/result_0.txt 2>&1")
    assert lines[3].startswith("SEED=1005 ") and lines[4] == "docker rm -f mlperf_llama31"
    assert not any(value in line for value in env.values() for line in lines)
    assert planned_commands(spec, "/logs/c1", indexes=[1])[1:] == [
        " ".join(container_run_argv(spec)), lines[3], lines[4]]
