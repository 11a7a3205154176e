"""Issue 14 item 5 on the Slurm path: the run stage checks every node's tunables before submitting.

AMD's run_with_docker_slurm.sh runs runtime_tunables.sh on every node itself; the stand-ins
(tests/infra/run_with_docker_slurm.sh, tests/infra/amd_layout/flux1/code/run_with_docker_slurm.sh)
do not set anything, and a site's script may not either. So the run stage checks (or applies)
the settings of every node of mlperf_nodes before the job is submitted: one drifted node with
campaign_tunables_fail_on_drift stops the stage and nothing is submitted.

A real Slurm (tests/infra: 8 slurmd hosts and a submit host, each a network namespace with its
own sshd). Tunables are global to a machine: the nodes work on copies of the /proc and /sys files
under a prefix (tunables_root), node3 on a drifted copy of its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node import tunables
from tests.infra.cluster import SlurmTestCluster, skip_reason
from tests.integration.test_run_tunables import reboot

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = skip_reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]
NODE_TASK = "campaign : Tunables of the Slurm node"


@pytest.fixture(scope="module")
def cluster():
    machine = tunables.read_state("/")
    test_cluster = SlurmTestCluster(nodes=8, nexp=2).up()
    try:
        good, drifted = test_cluster.base / "tunables-amd", test_cluster.base / "tunables-node3"
        reboot(good)
        tunables.set_values({k: v for k, v in tunables.wanted().items() if k != "amdgpu_module"},
                            str(good), use_commands=False)
        reboot(drifted)
        test_cluster.write_inventory(tunables_root=str(good),
                                     tunables_state_file=str(test_cluster.base / "before.json"))
        host_vars = test_cluster.inventory / "host_vars"
        host_vars.mkdir(exist_ok=True)
        (host_vars / "node3.yml").write_text(yaml.safe_dump({
            "tunables_root": str(drifted),
            "tunables_state_file": str(test_cluster.base / "node3-before.json")}))
        test_cluster.good, test_cluster.drifted = good, drifted
        playbook(test_cluster, "playbooks/render.yml", "--limit", "mlperf_submit:localhost")
        yield test_cluster
    finally:
        test_cluster.down()
        test_cluster.remove()
    assert tunables.read_state("/") == machine


def playbook(cluster, *args, extra=None, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "-i", str(cluster.inventory), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}")
    return proc


def results(stdout, task):
    """host -> ok / changed / skipping / fatal of ``task`` (the default callback)."""
    out, current = {}, None
    for line in stdout.splitlines():
        header = re.match(r"^TASK \[(.+?)\] \*+", line)
        if header:
            current = re.sub(r" \((apply|check)\)$", "", header.group(1))
        elif current == task:
            match = re.match(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+)\]", line)
            if match:
                out[match.group(2)] = match.group(1)
    return out


def test_one_drifted_node_stops_the_submission_naming_it(cluster):
    proc = playbook(cluster, "playbooks/run.yml", check=False, extra={
        "mlperf_campaign": "drifted", "campaign_tunables": "check",
        "campaign_tunables_fail_on_drift": True})
    assert proc.returncode != 0
    nodes = results(proc.stdout, NODE_TASK)
    assert nodes["node3"] == "fatal", nodes
    assert {n: s for n, s in nodes.items() if n != "node3"} == {f"node{i}": "ok" for i in (1, 2, 4, 5, 6, 7, 8)}
    assert "node3: tunables drift: " in proc.stdout and "randomize_va_space is 2 (AMD: 0)" in proc.stdout
    assert "slurm_job : Submit the campaign's job, or re-attach to it" not in proc.stdout
    assert not (cluster.campaign_root / "drifted").exists()
    assert [j for j in cluster.slurm.jobs() if j["name"] == "smoke_mlperf"] == []
    assert tunables.drift(tunables.read_state(str(cluster.drifted)))  # check applies nothing


def test_apply_sets_the_drifted_node_then_the_job_runs(cluster):
    proc = playbook(cluster, "playbooks/run.yml", extra={"mlperf_campaign": "applied",
                                                        "campaign_tunables": "apply"})
    nodes = results(proc.stdout, NODE_TASK)
    assert nodes.pop("node3") == "changed"
    assert set(nodes.values()) == {"ok"}, nodes  # already as AMD's: nothing to change
    assert tunables.drift(tunables.read_state(str(cluster.drifted))) == {}
    assert json.loads((cluster.base / "node3-before.json").read_text())["randomize_va_space"] == "2"
    state = json.loads((cluster.campaign_root / "applied" / "state.json").read_text())
    assert state["status"] == "complete", state
