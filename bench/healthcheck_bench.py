#!/usr/bin/env python3
"""Cost of the health-check stage per node: `playbooks/healthcheck.yml` on N SSH hosts.

    .venv/bin/python bench/healthcheck_bench.py [--sizes 2 8] [--rounds 3] [--repeats 5] [--json]

Needs root, openssh-server, iproute2, openmpi-bin, python3-mpi4py and python3-numpy. Brings up
max(--sizes) network-namespace SSH hosts (tests/infra/netns.py) and, for each N, runs the stage
alone (tag healthcheck) with the CPU backend on the first N hosts, one node measured at a time
(the hosts share this machine's cores), the role's defaults otherwise except the GEMM size (Debian's numpy
uses the reference BLAS: --gemm-n, 512 by default here). It prints, per N: the stage's wall
time, the measurement time per node (the script's own clock, summed over rounds, median over
nodes) and the rest (Ansible, the pair and whole-set all-reduces), and the wall time per node.
No figure here is asserted anywhere: it is a measurement of this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.infra.netns import NetnsHosts  # noqa: E402

BIN = Path(sys.executable).parent


def inventory(base: Path, hosts: NetnsHosts, names: list[str], args) -> Path:
    directory = base / f"inventory-{len(names)}"
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
        "mlperf_nodes": {"hosts": {n: {"ansible_host": hosts.hosts[n].ip} for n in names}},
        "mlperf_staging": {"hosts": {names[0]: {}}},
    }}}))
    group_vars = dict(hosts.ansible_vars())
    group_vars.update({
        "mlperf_benchmark": "smoke", "mlperf_system": "CPU_1x1x1", "mlperf_nexp": 10,
        "mlperf_container_runtime": "none", "mlperf_datadir": "/var/lib/hc-bench/data",
        "mlperf_logdir": "/var/lib/hc-bench/logs", "mlperf_workdir": "/var/lib/hc-bench/work",
        "mlperf_results_dir": str(base / f"results-{len(names)}"),
        "mlperf_shared_storage": False, "mlperf_provision": False, "mlperf_site_env": {},
        "tunables_mode": "off", "healthcheck_backend": "cpu", "healthcheck_on_fail": "warn",
        "healthcheck_throttle": 1, "healthcheck_rounds": args.rounds,
        "healthcheck_repeats": args.repeats, "healthcheck_gemm_n": args.gemm_n,
        "healthcheck_mpirun_mca": {"plm_rsh_args": " ".join(hosts.ssh_options()),
                                   "btl": "self,tcp", "btl_tcp_if_include": "eth0",
                                   "oob_tcp_if_include": "eth0"},
    })
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))
    return directory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gemm-n", type=int, default=512)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="hc-bench-", dir="/tmp"))
    os.chmod(base, 0o755)
    names = [f"node{i}" for i in range(1, max(args.sizes) + 1)]
    hosts = NetnsHosts(base, names).up()
    rows = []
    try:
        for size in args.sizes:
            inv = inventory(base, hosts, names[:size], args)
            env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
            start = time.monotonic()
            proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inv),
                                   "playbooks/healthcheck.yml"], cwd=ROOT, env=env,
                                  capture_output=True, text=True)
            wall = time.monotonic() - start
            if proc.returncode != 0:
                print(proc.stdout[-4000:], proc.stderr[-2000:])
                return 1
            outcome = json.loads(sorted((base / f"results-{size}").glob("*/*/*/healthcheck.json"))[-1].read_text())
            measure = [n["measure_seconds"] for n in outcome["nodes"] if n.get("measure_seconds")]
            rows.append({"nodes": size, "wall_s": round(wall, 1),
                         "per_node_wall_s": round(wall / size, 1),
                         "measure_s_per_node": round(statistics.median(measure), 1),
                         "rounds": args.rounds, "repeats": args.repeats,
                         "flagged": outcome["flagged"]})
    finally:
        hosts.down()
        shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print("nodes  stage wall (s)  wall per node (s)  measurement per node (s, all rounds)  flagged")
        for row in rows:
            print(f"{row['nodes']:>5}  {row['wall_s']:>14}  {row['per_node_wall_s']:>17}  "
                  f"{row['measure_s_per_node']:>37}  {','.join(row['flagged']) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
