"""The health check through the site's Slurm: 8 slurmd nodes and a submit host (tests/infra).

The inventory launches with Slurm, so the all-reduces between node pairs and across the whole set
are started on the submit host inside a Slurm allocation (``salloc -w <nodes> mpirun``: OpenMPI
starts its ranks with srun), not over ssh between the nodes. One node is slowed (a CPU quota on
every process of that host, slurmd included, so the job steps it runs inherit it) and is named.

Skipped, with the reason, unless root with slurm-wlm, munge, openssh-server, openmpi-bin,
python3-mpi4py and python3-numpy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.cluster import SlurmTestCluster, skip_reason
from tests.integration.test_healthcheck_fleet import REASON as FLEET_REASON, CpuQuota

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = skip_reason() or FLEET_REASON
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def test_pairs_and_the_whole_set_go_through_slurm_and_the_slow_node_is_named():
    cluster = SlurmTestCluster(nodes=8).up()
    try:
        ssh = " ".join(cluster.hosts.ssh_options())
        cluster.write_inventory(
            # no Docker engine here (the stand-in image cannot measure): on the host
            healthcheck_in_image=False,
            healthcheck_backend="cpu", healthcheck_on_fail="warn", healthcheck_throttle=1,
            healthcheck_repeats=3, healthcheck_rounds=2, healthcheck_gemm_n=512,
            healthcheck_copy_mb=64, healthcheck_internode_mb=16, healthcheck_internode_iters=5,
            # see test_healthcheck_fleet.py: 8 "nodes" on this machine's 2 shared cores
            healthcheck_fleet_tolerance=0.5,
            healthcheck_mpirun_mca={"btl": "self,tcp", "btl_tcp_if_include": "eth0",
                                    "oob_tcp_if_include": "eth0", "plm_rsh_args": ssh})
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
        with CpuQuota(cluster.hosts, "node3", percent=5):
            proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(cluster.inventory),
                                   "playbooks/healthcheck.yml"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        path = sorted(cluster.results.glob("*/*/*/healthcheck.json"))[-1]
        outcome = json.loads(path.read_text())
        assert outcome["flagged"] == ["node3"], (path.parent / "healthcheck.txt").read_text()
        assert "healthcheck: 1 of 8 nodes flagged (warn only, all nodes run): node3" in proc.stdout
        pairs = [n["figures"]["pair_allreduce_busbw_gbps"] for n in outcome["nodes"]]
        assert all(p["value"] and p["value"] > 0 for p in pairs)
        assert outcome["fleet"][0]["value"] > 0
        # every all-reduce was a Slurm allocation: 8 pairs x 2 rounds + the whole set
        ours = [j for j in cluster.slurm.jobs() if j["name"] == "mlperf-healthcheck"]
        assert len(ours) == 8 * 2 + 1, cluster.slurm.jobs()
        assert {j["state"] for j in ours} == {"COMPLETED"}
    finally:
        cluster.down()
        cluster.remove()
