"""The Slurm launch path on a real Slurm: slurmctld, one slurmd on each of 8 hosts, a submit host.

The hosts are network namespaces with their own sshd (tests/infra); Ansible reaches the submit
host ``login`` over SSH, as it would a cluster's login node. The benchmark is the smoke benchmark
as an 8-node Slurm job, through the project's own stages: render (code out of a fake image: the
smoke benchmark plus a stand-in for AMD's run_with_docker_slurm.sh), run (sbatch of the rendered
job.sh, re-attach), collect and score.

The time-limit test needs a job to run past one minute (Slurm's smallest limit) and slurmctld
checks limits every 30 s, so that job is submitted when the cluster comes up and examined last;
the other tests run meanwhile. Skipped, with the reason, unless root with slurm-wlm, munge and
openssh-server installed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlperf_repro.node import slurm_job
from mlperf_repro.node.slurm_job import Slurm
from mlperf_repro.scoring import check_compliance, score_directory
from tests.infra.cluster import SYSTEM, SlurmTestCluster, skip_reason

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = skip_reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

NEXP = 3


def job_script(campaign_dir, body, name, nodes=1, time_limit="00:05:00"):
    """A hand-written job script of the shape the role renders (for the module-level tests)."""
    return f"""#!/bin/bash
#SBATCH --job-name={name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node=1
#SBATCH --time={time_limit}
#SBATCH --output={campaign_dir}/slurm-%j.out
#SBATCH --comment=mlperf-repro:{campaign_dir}
export LOGDIR={campaign_dir}
{body}
"""


def submit(client, root, campaign_id, body, name, **kwargs):
    spec = {"nexp": 1, "output": "slurm-%j.out", "job_name": name, "benchmark": "test"}
    script = job_script(os.path.join(root, campaign_id), body, name, **kwargs)
    return slurm_job.ensure_submitted(str(root), campaign_id, spec, script, client)


def wait_for_end(client, campaign_dir, timeout):
    deadline = time.monotonic() + timeout
    while True:
        state, _ = slurm_job.refresh(campaign_dir, client)
        if state["status"] not in slurm_job.OPEN_STATUSES or time.monotonic() > deadline:
            return state
        time.sleep(0.5)


def playbook(cluster, *args, extra=None, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "-i", str(cluster.inventory), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    proc.seconds = time.monotonic() - started
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}")
    return proc


def task_result(stdout, task, host="login"):
    """ok / changed / skipping / failed / fatal of ``task`` on ``host`` (the default callback)."""
    current = None
    for line in stdout.splitlines():
        header = re.match(r"^TASK \[(.+?)\] \*+", line)
        if header:
            current = header.group(1)
        elif current == task:
            match = re.match(r"^(ok|changed|skipping|failed|fatal): \[%s\]" % re.escape(host), line)
            if match:
                return match.group(1)
    return None


@pytest.fixture(scope="module")
def cluster():
    started = time.monotonic()
    test_cluster = SlurmTestCluster(nodes=8, nexp=NEXP).up()
    test_cluster.up_seconds = time.monotonic() - started
    client = Slurm(env=test_cluster.slurm.env)
    # Submitted now, examined last (see the module docstring): a job that outlives its limit.
    body = ('echo \':::MLLOG {"key": "cache_clear", "value": true}\'\n'
            'echo \':::MLLOG {"key": "init_start", "value": null}\'\n'
            'echo "still training when the limit came"\nsleep 600\n')
    test_cluster.timeout_campaign = submit(client, test_cluster.base / "limit", "timeout", body,
                                           "limit", time_limit="1")[1]
    test_cluster.timeout_submitted = time.monotonic()
    yield test_cluster
    test_cluster.down()
    test_cluster.remove()


@pytest.fixture(scope="module")
def client(cluster):
    return Slurm(env=cluster.slurm.env)


def jobs_named(cluster, name):
    return [j for j in cluster.slurm.jobs() if j["name"] == name]


# ---------------------------------------------------------------------------------------------
def test_cluster_has_eight_idle_nodes_with_eight_gpus(cluster):
    assert cluster.up_seconds < 20
    out = cluster.slurm.command("sinfo", "-h", "-N", "-o", "%N %G").stdout.split("\n")
    assert sorted(line.split()[0] for line in out if line) == [f"node{i}" for i in range(1, 9)]
    assert all("gpu:8" in line for line in out if line)
    login = cluster.hosts.ssh("login", "hostname; sinfo -h -o %D")
    assert login.stdout.split() == ["login", "8"], login.stderr


def test_eight_node_campaign_through_the_playbooks(cluster):
    code = cluster.shared / "work" / "code" / "smoke"
    render = playbook(cluster, "playbooks/render.yml", "--limit", "mlperf_submit:localhost")
    assert (code / "run_with_docker_slurm.sh").exists() and (code / f"config_{SYSTEM}.sh").exists()
    # the code comes out of the image on the first node (shared storage): the submit host
    # needs no container runtime and no image
    assert re.search(r"TASK \[render : Copy the benchmark code out of the image \(docker create / cp / rm\)\] "
                     r"\**\nchanged: \[login -> node1\(", render.stdout), render.stdout[-3000:]
    hand_job = (code / "job.sh").read_text()  # the render stage's copy, for submitting by hand
    assert "#SBATCH --nodes=8" in hand_job and 'job-"${SLURM_JOB_ID' in hand_job

    # --check --diff: shows the job.sh it would submit; creates and submits nothing
    dry = playbook(cluster, "playbooks/run.yml", "--check", "--diff")
    assert "+export ROOT_SEED=" in dry.stdout and "+#SBATCH --gres=gpu:8" in dry.stdout
    assert not cluster.campaign_root.exists()
    assert jobs_named(cluster, "smoke_mlperf") == []

    # submit and return at once (as when the controller goes away) ...
    first = playbook(cluster, "playbooks/run.yml", extra={"slurm_job_wait": False})
    assert task_result(first.stdout, "slurm_job : Submit the campaign's job, or re-attach to it") == "changed"
    (campaign,) = sorted(cluster.campaign_root.iterdir())
    # ... then run again: it re-attaches to that job, waits, cuts its output; collect; score
    second = playbook(cluster, "playbooks/run.yml", "playbooks/collect.yml", "playbooks/score.yml")
    assert task_result(second.stdout, "slurm_job : Submit the campaign's job, or re-attach to it") == "ok"
    assert f"completed: {NEXP} of {NEXP} run logs" in second.stdout
    assert "smoke: score " in second.stdout
    assert sorted(cluster.campaign_root.iterdir()) == [campaign]  # no second campaign
    jobs = jobs_named(cluster, "smoke_mlperf")
    assert len(jobs) == 1 and jobs[0]["state"] == "COMPLETED", jobs  # one sbatch in all
    completions = cluster.slurm.command("sacct", "-c", "-n", "-X", "-P", "-o", "JobName,State").stdout
    assert completions.count("smoke_mlperf|") == 1

    # the campaign directory: group-shared, never world-writable; job.sh sets every variable
    mode = campaign.stat().st_mode
    assert stat.S_IMODE(mode) == 0o2770 and not mode & stat.S_IWOTH
    state = json.loads((campaign / "state.json").read_text())
    assert state["mode_restored"] == "2777 -> 2770"  # the stand-in's chmod 777, as AMD's
    assert state["status"] == "complete" and state["job_state"] == "COMPLETED"
    assert state["exit_code"] == "0:0" and state["node_list"] == "node[1-8]"
    job_sh = (campaign / "job.sh").read_text()
    for line in ("#SBATCH --nodes=8", "#SBATCH --gres=gpu:8", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --partition=batch", "#SBATCH --time=00:05:00",
                 f"#SBATCH --output={campaign}/smoke_%j.out", f"export LOGDIR={campaign}",
                 f"export NEXP={NEXP}", f"export ROOT_SEED={state['root_seed']}",
                 f"export DGXSYSTEM={SYSTEM}", "srun bash run_with_docker_slurm.sh"):
        assert line in job_sh.splitlines(), line
    output = campaign / f"smoke_{state['job_id']}.out"
    assert state["output"] == output.name and output.exists()

    # the one output holds every run of every node; each result file holds exactly one run:
    # its 8 cache_clear lines (one per node, not in step), one init_start, its RESULT line
    runs = sorted(campaign.glob("result_*.txt"))
    assert [r.name for r in runs] == [f"result_{k}.txt" for k in range(NEXP)]
    assert b"".join(r.read_bytes() for r in runs) == output.read_bytes()
    for k, run in enumerate(runs):
        text = run.read_text()
        assert text.count('"key": "cache_clear"') == 8, run
        assert text.count('"key": "init_start"') == 1 and text.count('"key": "run_stop"') == 1
        assert len(re.findall(r"^RESULT,SMOKE,", text, re.M)) == 1
        assert f'"key": "seed", "value": {state["root_seed"] + k + 1},' in text  # AMD's SEED rule
        assert state["runs"][k]["status"] == "success"

    # collected with job.sh and the raw output; scored as MLCommons scores (a partial set)
    (collected,) = (cluster.results / "smoke" / SYSTEM / campaign.name).iterdir()
    assert collected.name == "login"
    names = {p.name for p in collected.iterdir()}
    assert {"job.sh", output.name, "state.json", f"config_{SYSTEM}.sh"} <= names
    score = score_directory(collected, allow_partial=True)
    assert len(score.runs) == NEXP and all(r.status == "success" for r in score.runs)
    assert score.score_minutes and score.score_minutes > 0
    for run in sorted(collected.glob("result_*.txt")):
        result = check_compliance(run, "6.0.0", common_only=True)
        assert result.compliant, (run, result.errors)
    print(f"render {render.seconds:.1f} s, check {dry.seconds:.1f} s, submit {first.seconds:.1f} s, "
          f"attach+collect+score {second.seconds:.1f} s")


def test_failing_job_fails_the_play_with_its_own_output(cluster):
    command = ("srun bash -c 'if [ $SLURM_NODEID = 0 ]; then "
               "echo \":::MLLOG {\\\"key\\\": \\\"cache_clear\\\", \\\"value\\\": true}\"; "
               "echo \":::MLLOG {\\\"key\\\": \\\"init_start\\\", \\\"value\\\": null}\"; fi; "
               "echo RuntimeError: HIP out of memory on $(hostname) >&2; exit 3'")
    proc = playbook(cluster, "playbooks/run.yml", check=False, extra={
        "mlperf_campaign": "failing-job", "slurm_job_name": "failing",
        "slurm_job_run_command": command})
    assert proc.returncode != 0
    assert task_result(proc.stdout, "slurm_job : Report a job that did not complete") == "fatal"
    assert "ended FAILED (status failed, exit code 3:0" in proc.stdout
    assert "RuntimeError: HIP out of memory on node8" in proc.stdout  # the job's own output
    state = json.loads((cluster.campaign_root / "failing-job" / "state.json").read_text())
    assert state["status"] == "failed" and state["found"] == 1 and state["missing"] == NEXP - 1
    assert state["runs"][0]["status"] == "crashed"  # began, never reached run_stop


def test_running_job_is_reattached_never_resubmitted_then_cancelled(cluster, client):
    root = cluster.base / "api"
    body = 'echo "training on $(hostname)"; sleep 300'
    action, campaign, state = submit(client, root, "20990101T000000Z-a", body, "reattach")
    assert action == "submitted" and state["job_id"]
    # the next play: another campaign id, resume -> the unfinished one
    again = submit(client, root, "20990101T000001Z-b", body, "reattach")
    assert again[:2] == ("attached", campaign) and again[2]["job_id"] == state["job_id"]
    # the same campaign id -> that campaign, whatever resume says
    spec = {"nexp": 1, "output": "slurm-%j.out"}
    same = slurm_job.ensure_submitted(str(root), "20990101T000000Z-a", spec, "", client, resume=False)
    assert same[:2] == ("attached", campaign)
    # check mode for a new campaign: says submitted, creates and submits nothing
    dry = slurm_job.ensure_submitted(str(root), "20990101T000002Z-c", spec, "", client,
                                     resume=False, check=True)
    assert dry[0] == "submitted" and not os.path.exists(dry[1])
    assert len(jobs_named(cluster, "reattach")) == 1

    deadline = time.monotonic() + 20
    while slurm_job.refresh(campaign, client)[0]["status"] != "running":
        assert time.monotonic() < deadline, "job did not start"
        time.sleep(0.2)
    assert slurm_job.cancel(campaign, client, check=True) is True  # check mode: nothing done
    assert slurm_job.refresh(campaign, client)[0]["status"] == "running"
    assert slurm_job.cancel(campaign, client) is True
    state = wait_for_end(client, campaign, 20)
    assert state["status"] == "cancelled" and state["job_state"] == "CANCELLED"
    assert "training on node" in slurm_job.tail(state["output_path"])
    assert slurm_job.cancel(campaign, client) is False  # already ended
    # its end has been seen: the next play starts a new campaign
    assert slurm_job.find_unfinished(str(root)) is None


def test_job_whose_id_was_not_recorded_is_adopted(cluster, client):
    root = cluster.base / "adopt"
    campaign = str(root / "20990101T000000Z")
    spec = {"nexp": 1, "output": "slurm-%j.out", "campaign_id": "20990101T000000Z"}
    slurm_job.prepare(campaign, spec, job_script(campaign, "sleep 2", "adopt"))
    job_id = client.sbatch(os.path.join(campaign, "job.sh"), cwd=campaign)  # then "crashed"
    action, directory, state = slurm_job.ensure_submitted(str(root), "20990101T000001Z", spec,
                                                          "", client)
    assert (action, directory, state["job_id"]) == ("adopted", campaign, job_id)
    assert len(jobs_named(cluster, "adopt")) == 1
    assert wait_for_end(client, campaign, 30)["status"] == "complete"


def test_job_past_its_time_limit_is_reported_as_timeout(cluster, client):
    # submitted when the cluster came up, with a one-minute limit
    state = wait_for_end(client, cluster.timeout_campaign, 150)
    assert state["status"] == "timeout" and state["job_state"] == "TIMEOUT", state
    assert state["reason"] == "TimeLimit"
    assert "still training when the limit came" in slurm_job.tail(state["output_path"])
    assert state["found"] == 1 and state["runs"][0]["status"] == "crashed"
    print(f"TIMEOUT seen {time.monotonic() - cluster.timeout_submitted:.0f} s after submission")
