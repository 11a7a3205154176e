"""An N-node Slurm test cluster with a submit host, and an Ansible inventory for it.

    reason = skip_reason()              # None when this machine can run it (root, packages)
    with SlurmTestCluster(nodes=8) as cluster:
        cluster.inventory               # inventory directory for ansible-playbook -i
        cluster.slurm.jobs()            # every job slurmctld knows
        cluster.hosts.ssh("login", "sinfo")

Hosts ``node1..N`` (compute: one slurmd each, 8 fake GPUs) and ``login`` (the Slurm submit host,
reached over SSH by Ansible) are network namespaces (:mod:`tests.infra.netns`); the shared
storage is ``<base>/shared`` under /tmp, which every host sees. The inventory runs the smoke
benchmark as an 8-node Slurm job through the project's own stages: a test catalog adds a
``CPU_08x08x1`` platform (launch slurm) to the smoke benchmark, and render copies the code out of
a fake image (``tests/infra/fake-docker``: the smoke benchmark plus a stand-in for AMD's
``run_with_docker_slurm.sh``).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from . import netns
from . import slurm as slurm_infra
from .netns import NetnsHosts
from .slurm import SlurmCluster

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SYSTEM = "CPU_08x08x1"


def skip_reason() -> str | None:
    """Why this machine cannot run a Slurm test cluster, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, munged, slurmctld, slurmd)"
    missing = netns.missing_commands() + slurm_infra.missing_commands()
    if missing:
        return ("not installed: %s (apt-get install -y --no-install-recommends openssh-server "
                "slurm-wlm munge bridge-utils)" % ", ".join(missing))
    return None


def write_test_catalog(path: Path) -> Path:
    """The packaged catalog plus a Slurm platform of the smoke benchmark (8 nodes x 8 GPUs)."""
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    smoke = data["benchmarks"]["smoke"]
    smoke["image"] = "localhost/mlperf-repro-smoke:test"
    smoke["platforms"][SYSTEM] = {
        "gpu": "none",
        "launch": "slurm",
        "provenance": "tests/infra: the smoke benchmark as an 8-node Slurm job",
        "env": {"DGXSYSTEM": SYSTEM, "MLLOG_SUBMISSION_PLATFORM": "CPU", "SMOKE_DEVICE": "cpu"},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class SlurmTestCluster:
    def __init__(self, nodes: int = 8, submit: str = "login", base: str | None = None,
                 nexp: int = 3):
        self.base = Path(base or tempfile.mkdtemp(prefix="mlperf-slurm-", dir="/tmp"))
        self.compute = [f"node{i}" for i in range(1, nodes + 1)]
        self.submit = submit
        self.nexp = nexp
        self.hosts = NetnsHosts(self.base, self.compute + [submit])
        self.slurm = SlurmCluster(self.hosts, self.compute)
        self.shared = self.base / "shared"
        self.results = self.base / "results"
        self.inventory = self.base / "inventory"

    def __enter__(self) -> "SlurmTestCluster":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    def up(self) -> "SlurmTestCluster":
        self.hosts.up()
        try:
            self.slurm.up()
            for sub in ("data", "logs", "work"):
                (self.shared / sub).mkdir(parents=True, exist_ok=True)
            self.write_inventory()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        try:
            self.slurm.down()
        finally:
            self.hosts.down()

    def remove(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    @property
    def logdir(self) -> Path:
        return self.shared / "logs"

    @property
    def campaign_root(self) -> Path:
        return self.logdir / "smoke" / SYSTEM

    def write_inventory(self, **overrides) -> Path:
        catalog = write_test_catalog(self.base / "catalog.yml")
        host_vars = {name: {"ansible_host": h.ip} for name, h in self.hosts.hosts.items()}
        inventory = {"all": {"children": {
            "mlperf_controller": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            "mlperf_nodes": {"hosts": {n: host_vars[n] for n in self.compute}},
            "mlperf_submit": {"hosts": {self.submit: host_vars[self.submit]}},
            "mlperf_staging": {"hosts": {self.compute[0]: {}}},
        }}}
        group_vars = dict(self.hosts.ansible_vars())
        group_vars.update({
            "mlperf_benchmark": "smoke",
            "mlperf_system": SYSTEM,
            "mlperf_nexp": self.nexp,
            "mlperf_allow_partial": True,
            "mlperf_container_runtime": "docker",
            "mlperf_datadir": str(self.shared / "data"),
            "mlperf_logdir": str(self.logdir),
            "mlperf_workdir": str(self.shared / "work"),
            "mlperf_results_dir": str(self.results),
            "mlperf_shared_storage": True,
            "mlperf_slurm_partition": self.slurm.partition,
            "mlperf_slurm_time": "00:05:00",
            # train.py needs numpy and mlperf-logging: this interpreter has them (/work is shared)
            "mlperf_site_env": {"MLPERF_TEST_PYTHON": sys.executable},
            "mlperf_provision": False,
            "tunables_mode": "off",
            "validate_catalog_path": str(catalog),
            "render_container_command": str(HERE / "fake-docker"),
            "slurm_job_poll_seconds": 1,
        })
        group_vars.update(overrides)
        (self.inventory / "group_vars").mkdir(parents=True, exist_ok=True)
        (self.inventory / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        (self.inventory / "group_vars" / "all.yml").write_text(
            yaml.safe_dump(group_vars, sort_keys=False))
        return self.inventory
