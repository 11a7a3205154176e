"""Slurm campaigns without a Slurm: the run boundary rule, parsing, state, job.sh rendering.

The same code against a real Slurm: tests/integration/test_slurm.py.
"""

import json
import os
import shlex
import stat
import subprocess
from pathlib import Path

import jinja2
import pytest

from mlperf_repro.catalog import load_catalog
from mlperf_repro.project_files import project_file
from mlperf_repro.node import slurm_job
from mlperf_repro.node.slurm_job import (SlurmError, base_state, campaign_status, parse_exit_code,
                                         parse_scontrol, run_starts, split_runs)

TEMPLATES = Path(project_file("templates/job.sh.j2")).parent


def mllog(key, value=None, **metadata):
    record = {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": key,
              "value": value, "metadata": metadata}
    return ":::MLLOG " + json.dumps(record)


def run_lines(seed, status="success", clears=1, result=True):
    """One run as the smoke benchmark prints it, with ``clears`` cache_clear lines before it."""
    lines = [mllog("cache_clear", True, host=f"node{i}") for i in range(clears)]
    lines += ["STARTING TIMING RUN AT ...", mllog("init_start"), mllog("submission_benchmark", "smoke"),
              mllog("seed", seed), mllog("init_stop"), mllog("run_start"),
              mllog("eval_accuracy", 0.8), mllog("run_stop", None, status=status)]
    if result:
        lines += ["ENDING TIMING RUN AT ...", f"RESULT,SMOKE,,{seed},org,date"]
    return lines


def cut(lines):
    data = ("\n".join(lines) + "\n").encode()
    return [chunk.decode().splitlines() for chunk in split_runs(data)]


# ---------------------------------------------------------------------------------------------
# where one run ends and the next begins

def test_runs_are_cut_at_their_cache_clear_and_keep_their_result_line():
    lines = ["job preamble: pulling image"] + run_lines(1) + run_lines(2) + run_lines(3) + ["epilogue"]
    runs = cut(lines)
    assert len(runs) == 3
    assert runs[0][0] == "job preamble: pulling image"  # before the first run: in result_0
    for k, run in enumerate(runs):
        assert sum('"init_start"' in line for line in run) == 1
        assert sum(line.startswith("RESULT,SMOKE") for line in run) == 1
        assert any(f'"seed", "value": {k + 1}' in line for line in run)
    assert runs[1][0].startswith(":::MLLOG") and '"cache_clear"' in runs[1][0]
    assert runs[2][-1] == "epilogue"
    assert sum(len(r) for r in runs) == len(lines)  # nothing lost, nothing repeated


def test_per_node_cache_clears_open_the_run_and_stragglers_stay_inside_it():
    run1 = run_lines(1, clears=3)
    run2 = run_lines(2, clears=3)
    # a late node's cache_clear arrives after run 2's init_start
    at = run2.index(mllog("init_start")) + 1
    run2.insert(at, mllog("cache_clear", True, host="late"))
    runs = cut(run1 + run2)
    assert len(runs) == 2
    assert sum('"cache_clear"' in line for line in runs[0]) == 3
    assert sum('"cache_clear"' in line for line in runs[1]) == 4
    assert runs[1][:3] == run2[:3]


def test_several_init_starts_of_one_initialisation_are_one_run():
    run = run_lines(1)
    at = run.index(mllog("init_start"))
    run.insert(at + 1, mllog("init_start", rank=1))
    assert len(cut(run + run_lines(2))) == 2


def test_a_run_without_cache_clear_starts_at_its_init_start():
    one = [l for l in run_lines(1) if '"cache_clear"' not in l]
    two = [l for l in run_lines(2) if '"cache_clear"' not in l]
    runs = cut(one + two)
    assert len(runs) == 2 and '"init_start"' in runs[1][0]


def test_a_crashed_run_is_its_own_file_marked_crashed():
    crashed = run_lines(2)[:5] + ["Traceback (most recent call last):", "RuntimeError: boom"]
    data = ("\n".join(run_lines(1) + crashed + run_lines(3)) + "\n").encode()
    chunks = split_runs(data)
    assert len(chunks) == 3
    described = [slurm_job.describe_run(c.splitlines()) for c in chunks]
    assert [d["status"] for d in described] == ["success", "crashed", "success"]
    assert [d["seed"] for d in described] == [1, 2, 3]
    assert b"RuntimeError: boom" in chunks[1]


def test_output_without_any_run_gives_no_run_files(tmp_path):
    out = tmp_path / "job.out"
    out.write_text("srun: error: node3: task 2: Exited with exit code 1\n")
    assert slurm_job.split_output(out, tmp_path) == []
    assert list(tmp_path.glob("result_*")) == []


def test_split_output_writes_result_files(tmp_path):
    out = tmp_path / "flux1_7.out"
    out.write_text("\n".join(run_lines(1) + run_lines(2, status="aborted")) + "\n")
    runs = slurm_job.split_output(out, tmp_path)
    assert [(r["log"], r["status"], r["seed"]) for r in runs] == [
        ("result_0.txt", "success", 1), ("result_1.txt", "aborted", 2)]
    assert (tmp_path / "result_0.txt").read_bytes() + (tmp_path / "result_1.txt").read_bytes() \
        == out.read_bytes()


def test_run_starts_ignores_lines_that_only_mention_mllog():
    lines = [b"echo :::MLLOG but no key here", b'"key": "init_start" without the mark']
    assert run_starts(lines) == []


def test_progress_counts_begun_and_ended_runs(tmp_path):
    out = tmp_path / "x.out"
    out.write_text("\n".join(run_lines(1) + run_lines(2)[:6]) + "\n")
    assert slurm_job.progress(out) == {"runs_begun": 2, "runs_ended": 1}


# ---------------------------------------------------------------------------------------------
# Slurm's outputs

SCONTROL = ("JobId=42 JobName=flux1 mlperf UserId=me(1000) JobState=TIMEOUT Reason=TimeLimit "
            "Dependency=(null) ExitCode=0:15 RunTime=01:00:07 TimeLimit=01:00:00 "
            "NodeList=node[1-8] TRES=cpu=16,node=8,billing=16 Command=/d/job.sh "
            "StdOut=/d/flux1_42.out Comment=mlperf-repro:/d")


def test_scontrol_fields_keep_spaces_and_equals_signs():
    fields = parse_scontrol(SCONTROL)
    assert fields["JobName"] == "flux1 mlperf"
    assert fields["TRES"] == "cpu=16,node=8,billing=16"
    assert fields["JobState"] == "TIMEOUT" and fields["StdOut"] == "/d/flux1_42.out"


@pytest.mark.parametrize("text, expected", [
    ("CANCELLED by 1000", "CANCELLED"), ("CANCELLED+", "CANCELLED"), ("RUNNING", "RUNNING"),
    ("node_fail", "NODE_FAIL"), ("", "")])
def test_base_state(text, expected):
    assert base_state(text) == expected


def test_exit_code():
    assert parse_exit_code("3:0") == (3, 0) and parse_exit_code("0:15") == (0, 15)
    assert parse_exit_code("") == (None, None)


@pytest.mark.parametrize("state, status", [
    ("PENDING", "pending"), ("CONFIGURING", "pending"), ("RUNNING", "running"),
    ("COMPLETING", "running"), ("COMPLETED", "complete"), ("FAILED", "failed"),
    ("TIMEOUT", "timeout"), ("CANCELLED", "cancelled"), ("NODE_FAIL", "node_fail"),
    ("OUT_OF_MEMORY", "out_of_memory"), ("WEIRD", "unknown")])
def test_campaign_status(state, status):
    assert campaign_status(state, "42") == status
    assert campaign_status(state, None) == "submitting"


def test_tail_gives_the_last_lines_within_a_byte_limit(tmp_path):
    path = tmp_path / "out"
    path.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert slurm_job.tail(path, 3) == "line 997\nline 998\nline 999"
    text = slurm_job.tail(path, 1000, max_bytes=100)
    assert text.splitlines()[-1] == "line 999" and len(text) <= 100
    assert all(line.startswith("line ") for line in text.splitlines())
    assert slurm_job.tail(tmp_path / "missing") == ""


# ---------------------------------------------------------------------------------------------
# campaign directories, with a Slurm stand-in

class FakeSlurm:
    """Answers like Slurm: sbatch gives ids 100, 101, ...; job() from a table."""

    def __init__(self, fail=False):
        self.submitted, self.states, self.fail, self.cancelled = [], {}, fail, []
        self.comments = {}

    def sbatch(self, script, cwd):
        if self.fail:
            raise SlurmError("sbatch exited with 1: sbatch: error: invalid partition specified: x")
        job_id = str(100 + len(self.submitted))
        self.submitted.append(script)
        self.states[job_id] = "PENDING"
        self.comments[job_id] = "mlperf-repro:" + cwd
        return job_id

    def job(self, job_id):
        if job_id not in self.states:
            return None
        return {"job_state": self.states[job_id], "exit_code": "0:0", "reason": "None",
                "node_list": "node[1-8]", "elapsed": "00:01:00", "source": "fake"}

    def jobs_with_comment(self, comment):
        return [j for j, c in self.comments.items() if c == comment]

    def cancel(self, job_id):
        self.cancelled.append(job_id)
        self.states[job_id] = "CANCELLED"


SPEC = {"nexp": 2, "output": "flux1_%j.out", "benchmark": "flux1", "system": "MI325X_08x08x32",
        "root_seed": 7}


def test_submit_records_the_job_then_attaches_never_resubmits(tmp_path):
    slurm = FakeSlurm()
    action, campaign, state = slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "#!/bin/bash\n", slurm)
    assert (action, state["job_id"], state["status"]) == ("submitted", "100", "pending")
    mode = os.stat(campaign).st_mode
    assert stat.S_IMODE(mode) == 0o2770
    recorded = json.loads(Path(campaign, "state.json").read_text())
    assert recorded["job_id"] == "100" and recorded["output"] == "flux1_100.out"
    assert json.loads(Path(campaign, "campaign.json").read_text())["launch"] == "slurm"
    assert Path(campaign, "job.sh").read_text() == "#!/bin/bash\n"
    for campaign_id in ("c2", "c1"):  # a new play (resume) and the same campaign id
        again = slurm_job.ensure_submitted(str(tmp_path), campaign_id, SPEC, "x", slurm)
        assert again[:2] == ("attached", campaign)
    assert len(slurm.submitted) == 1


def test_end_seen_once_then_a_new_campaign_starts(tmp_path):
    slurm = FakeSlurm()
    campaign = slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "#!/bin/bash\n", slurm)[1]
    Path(campaign, "flux1_100.out").write_text("\n".join(run_lines(1) + run_lines(2)) + "\n")
    slurm.states["100"] = "RUNNING"
    state, changed = slurm_job.refresh(campaign, slurm)
    assert state["status"] == "running" and not changed and state["runs_ended"] == 2
    slurm.states["100"] = "COMPLETED"
    state, changed = slurm_job.refresh(campaign, slurm, write=False)  # check mode
    assert state["status"] == "complete" and not changed
    assert not Path(campaign, "result_0.txt").exists()
    state, changed = slurm_job.refresh(campaign, slurm)
    assert changed and state["found"] == 2 and state["missing"] == 0
    assert Path(campaign, "result_1.txt").exists()
    del slurm.states["100"]  # slurmctld forgot it, no accounting: the recorded end stands
    assert slurm_job.refresh(campaign, slurm) == (state, False)
    action, new, _ = slurm_job.ensure_submitted(str(tmp_path), "c2", SPEC, "#!/bin/bash\n", slurm)
    assert action == "submitted" and new != campaign


def test_a_world_writable_logdir_is_made_group_shared_again_when_the_job_ends(tmp_path):
    slurm = FakeSlurm()
    campaign = slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "x", slurm)[1]
    os.chmod(campaign, 0o2777)  # AMD's run_with_docker_slurm.sh: chmod 777 $LOGDIR
    assert slurm_job.refresh(campaign, slurm)[0].get("mode_restored") is None  # still running
    slurm.states["100"] = "FAILED"
    state = slurm_job.refresh(campaign, slurm)[0]
    assert state["mode_restored"] == "2777 -> 2770"
    assert stat.S_IMODE(os.stat(campaign).st_mode) == 0o2770


def test_campaigns_never_overwrite_other_directories(tmp_path):
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "campaign.json").write_text('{"launch": "docker"}')
    with pytest.raises(ValueError, match="not a Slurm campaign"):
        slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "x", FakeSlurm())


def test_check_mode_creates_and_submits_nothing(tmp_path):
    slurm = FakeSlurm()
    action, campaign, state = slurm_job.ensure_submitted(str(tmp_path / "r"), "c1", SPEC, "x",
                                                         slurm, check=True)
    assert action == "submitted" and state["job_id"] is None
    assert not (tmp_path / "r").exists() and slurm.submitted == []


def test_sbatch_failure_is_recorded_and_raised_then_the_fixed_script_is_submitted(tmp_path):
    with pytest.raises(SlurmError, match="invalid partition"):
        slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "--partition=x", FakeSlurm(fail=True))
    state = json.loads((tmp_path / "c1" / "state.json").read_text())
    assert state["status"] == "submit_failed" and "invalid partition" in state["error"]
    slurm = FakeSlurm()
    assert slurm_job.find_unfinished(str(tmp_path)) is None  # a new play id: a new campaign
    action, campaign, state = slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC,
                                                         "--partition=y", slurm)
    assert (action, state["job_id"]) == ("submitted", "100")  # the same id: never submitted
    assert Path(campaign, "job.sh").read_text() == "--partition=y\n"


def test_a_campaign_without_job_id_adopts_its_job_or_submits(tmp_path):
    slurm = FakeSlurm()
    campaign = str(tmp_path / "c1")
    slurm_job.prepare(campaign, dict(SPEC, campaign_id="c1"), "x")
    slurm.comments["55"] = slurm_job.comment_for(campaign)  # sbatch ran, the id was lost
    slurm.states["55"] = "RUNNING"
    action, directory, state = slurm_job.ensure_submitted(str(tmp_path), "c2", SPEC, "x", slurm)
    assert (action, directory, state["job_id"]) == ("adopted", campaign, "55")
    assert slurm.submitted == []
    other = str(tmp_path / "c3")
    slurm_job.prepare(other, dict(SPEC, campaign_id="c3"), "x")  # sbatch never ran
    action, directory, state = slurm_job.ensure_submitted(str(tmp_path), "c3", SPEC, "x", slurm)
    assert (action, state["job_id"]) == ("submitted", "100")


def test_cancel_only_a_job_that_has_not_ended(tmp_path):
    slurm = FakeSlurm()
    campaign = slurm_job.ensure_submitted(str(tmp_path), "c1", SPEC, "x", slurm)[1]
    assert slurm_job.cancel(campaign, slurm, check=True) and slurm.cancelled == []
    assert slurm_job.cancel(campaign, slurm) and slurm.cancelled == ["100"]
    assert slurm_job.refresh(campaign, slurm)[0]["status"] == "cancelled"
    assert not slurm_job.cancel(campaign, slurm)


# ---------------------------------------------------------------------------------------------
# job.sh

def render_job(tmp_path, job=None, **variables):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             keep_trailing_newline=True, trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    values = {
        "ansible_managed": "managed",
        "mlperf_spec": load_catalog().resolve("flux1", "MI325X_08x08x32"),
        "mlperf_datadir": "/data/mlperf_flux1/data", "mlperf_logdir": "/data/mlperf_flux1/results",
        "mlperf_benchmark": "flux1", "mlperf_system": "MI325X_08x08x32", "mlperf_nexp": 10,
        "job": {"code_dir": "/data/work/code/flux1", "name": "flux1_mlperf", "time": "60:00:00",
                "partition": "mi325x", "extra_options": ["--exclusive"],
                "run_command": "srun bash run_with_docker_slurm.sh", "nexp": 10},
    }
    values.update(variables)
    values["job"].update(job or {})
    path = tmp_path / "job.sh"
    path.write_text(env.get_template("job.sh.j2").render(**values))
    return path


def sbatch_options(text):
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_campaign_job_sh_sets_every_variable_inside(tmp_path):
    campaign = "/data/mlperf_flux1/results/flux1/MI325X_08x08x32/20261128T120000Z"
    path = render_job(tmp_path, job={"logdir": campaign, "output": campaign + "/flux1_%j.out",
                                     "comment": "mlperf-repro:" + campaign,
                                     "root_seed": 123456789, "nexp": 10})
    text = path.read_text()
    assert sbatch_options(text) == [
        "--job-name=flux1_mlperf", "--nodes=8", "--ntasks-per-node=1", "--gres=gpu:8",
        "--time=60:00:00", f"--output={campaign}/flux1_%j.out", "--partition=mi325x",
        f"--comment=mlperf-repro:{campaign}", "--exclusive"]
    assert not any(o.startswith("--error") for o in sbatch_options(text))  # one output file
    # run it with an empty environment and a fake srun: what reaches run_with_docker_slurm.sh
    (tmp_path / "srun").write_text('#!/bin/bash\nenv > "$TMP_OUT"\n')
    (tmp_path / "srun").chmod(0o755)
    code = tmp_path / "code"
    code.mkdir()
    script = text.replace("cd /data/work/code/flux1", f"cd {code}")
    path.write_text(script)
    subprocess.run(["env", "-i", f"PATH={tmp_path}:/usr/bin:/bin", f"TMP_OUT={tmp_path / 'env'}",
                    "SLURM_JOB_ID=9", "bash", str(path)], check=True)
    env = dict(line.split("=", 1) for line in (tmp_path / "env").read_text().splitlines() if "=" in line)
    assert env["LOGDIR"] == campaign and env["NEXP"] == "10" and env["ROOT_SEED"] == "123456789"
    assert env["CONT"] == "rocm/amd-mlperf:flux1_training_6.0"
    assert env["DATADIR"] == "/data/mlperf_flux1/data" and env["DGXSYSTEM"] == "MI325X_08x08x32"


def test_hand_use_job_sh_makes_a_fresh_group_shared_logdir_per_job(tmp_path):
    logs = tmp_path / "logs"
    text = render_job(tmp_path, mlperf_logdir=str(logs)).read_text()
    assert sbatch_options(text)[5] == f"--output={logs}/flux1/MI325X_08x08x32/flux1_%j.out"
    (tmp_path / "srun").write_text('#!/bin/bash\necho "$LOGDIR $ROOT_SEED"\n')
    (tmp_path / "srun").chmod(0o755)
    script = text.replace("cd /data/work/code/flux1", f"cd {tmp_path}")
    out = subprocess.run(["env", "-i", f"PATH={tmp_path}:/usr/bin:/bin", "SLURM_JOB_ID=77",
                          "bash", "-c", script], capture_output=True, text=True, check=True).stdout
    logdir, seed = out.split()
    assert logdir == f"{logs}/flux1/MI325X_08x08x32/job-77" and seed.isdigit()
    assert stat.S_IMODE(os.stat(logdir).st_mode) == 0o2770
    assert "RANDOM" in text and "${ROOT_SEED:-" not in text  # not taken from the shell
