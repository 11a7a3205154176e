"""Faults injected over real SSH: a node unreachable in the middle of a campaign.

Two network-namespace SSH hosts run detached smoke campaigns. node2's link goes down while its
campaign runs: the playbook reports node2 unreachable, node1's runs are collected and scored,
node2's campaign keeps running on the node. When the link is back, `--limit node2` re-attaches
to the same campaign (nothing restarted) and collects its runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.infra import netns

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NEXP = 6


def _reason():
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    missing = netns.missing_commands()
    return f"not installed: {', '.join(missing)}" if missing else None


pytestmark = [pytest.mark.integration, pytest.mark.skipif(_reason() is not None, reason=_reason() or "")]


@pytest.fixture(scope="module")
def hosts():
    base = Path(tempfile.mkdtemp(prefix="mlperf-faults-", dir="/tmp"))
    base.chmod(0o755)
    net = netns.NetnsHosts(base, ["node1", "node2"]).up()
    try:
        yield net
    finally:
        net.down()


def link(net, name, state):
    ns = net.hosts[name].netns
    out = subprocess.run(["ip", "-n", ns, "-o", "link", "show"], capture_output=True, text=True,
                         check=True).stdout
    devices = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    for dev in devices:
        if dev != "lo":
            subprocess.run(["ip", "-n", ns, "link", "set", dev, state], check=True)


def inventory(net, base: Path) -> Path:
    per_host = str(base / "shared" / "{{ inventory_hostname }}")
    group_vars = dict(net.ansible_vars())
    group_vars.update({
        "ansible_python_interpreter": sys.executable,  # /work is shared: numpy + mlperf-logging
        "mlperf_benchmark": "smoke", "mlperf_system": "CPU_1x1x1", "mlperf_nexp": NEXP,
        "mlperf_allow_partial": True, "mlperf_container_runtime": "none",
        "mlperf_datadir": per_host + "/data", "mlperf_logdir": per_host + "/logs",
        "mlperf_workdir": per_host + "/work", "mlperf_results_dir": str(base / "results"),
        "mlperf_shared_storage": False, "mlperf_provision": False, "tunables_mode": "off",
        "mlperf_site_env": {}, "campaign_poll_seconds": 1,
    })
    hosts = {n: {"ansible_host": h.ip} for n, h in net.hosts.items()}
    data = {"all": {"vars": group_vars, "children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}},
        "mlperf_nodes": {"hosts": hosts},
        "mlperf_staging": {"hosts": {"node1": {}}},
    }}}
    path = base / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def playbook(inv: Path, *args):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
               # No persistent master connection: a dead link must fail fast, not hang on it.
               ANSIBLE_SSH_ARGS="-o ControlMaster=no -o ConnectTimeout=5", ANSIBLE_TIMEOUT="5")
    return subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(inv), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def campaign_state(base: Path, host: str) -> tuple[Path, dict]:
    root = base / "shared" / host / "logs" / "smoke" / "CPU_1x1x1"
    (directory,) = [p for p in root.iterdir() if (p / "state.json").exists()]
    return directory, json.loads((directory / "state.json").read_text())


def test_unreachable_node_mid_campaign_loses_nothing(hosts):
    base = hosts.base
    inv = inventory(hosts, base)
    started = playbook(inv, "--tags", "render,run", "-e", '{"campaign_wait": false}')
    assert started.returncode == 0, started.stdout[-3000:]

    link(hosts, "node2", "down")
    try:
        cut = playbook(inv, "--tags", "run,collect,score")
        assert cut.returncode != 0
        assert "UNREACHABLE" in cut.stdout and "node2" in cut.stdout
        recap = cut.stdout[cut.stdout.index("PLAY RECAP"):]
        assert "node1" in recap and "unreachable=1" in recap
        # node1's campaign finished and was collected and scored despite node2.
        node1 = list((base / "results" / "smoke" / "CPU_1x1x1").glob("*/node1/score.json"))
        assert len(node1) == 1
        assert len(json.loads(node1[0].read_text())["runs"]) == NEXP
        # node2's campaign kept running on the node, detached from SSH.
        directory, state = campaign_state(base, "node2")
        deadline = time.time() + 120
        while state["status"] != "complete" and time.time() < deadline:
            time.sleep(1)
            directory, state = campaign_state(base, "node2")
        assert state["status"] == "complete"
    finally:
        link(hosts, "node2", "up")

    before = {r["index"]: r["started"] for r in state["runs"]}
    back = playbook(inv, "--tags", "run,collect,score", "--limit", "node2,localhost")
    assert back.returncode == 0, back.stdout[-3000:]
    directory_after, state_after = campaign_state(base, "node2")
    assert directory_after == directory  # the same campaign: re-attached, not restarted
    assert {r["index"]: r["started"] for r in state_after["runs"]} == before
    scored = list((base / "results" / "smoke" / "CPU_1x1x1").glob(f"{directory.name}/node2/score.json"))
    assert len(scored) == 1
    runs = json.loads(scored[0].read_text())["runs"]
    assert len(runs) == NEXP and all(r["status"] == "success" for r in runs)
