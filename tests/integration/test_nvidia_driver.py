"""The NVIDIA driver stack role (roles/nvidia_driver) on real SSH hosts, from bare and hand-made nodes.

Three network-namespace hosts (tests/infra/netns.py) made bare nodes (tests/infra/bare_node.py:
copy-on-write /usr, air-gapped apt, a reboot stand-in). The packages come from signed flat apt
repositories laid out like NVIDIA's CUDA and Container Toolkit repositories, built here with
dpkg-deb, apt-ftparchive and throwaway keys and served over HTTP on the hosts' bridge
(tests/infra/nvidia_repo.py); ``nvidia-smi`` and ``nvidia-ctk`` are stand-ins answering with a
recorded real ``nvidia-smi -q -x`` and the real tools' effects.

* nv1: bare, docker; Fabric Manager ``auto`` (no NVSwitch on its bus: none installed).
* nv2: driver branch 570 installed by hand (and rebooted into), podman, Fabric Manager on.
* nv3: driver 580 installed by hand (and rebooted into), docker, Fabric Manager on: the driver
  is left alone (current), Fabric Manager and the toolkit are added, no reboot.
* nv4: bare, no container runtime (no toolkit), ``nvidia_driver_reboot: false``: the pending
  reboot is reported, not done, and the GPUs are not asked before it.

In order: a dry run on the bare node (passes, changes nothing); the real run (repositories, keys,
pin, packages, nvidia runtime in daemon.json, CDI spec, reboot only where the kernel module changed,
one node at a time, persistence on, verified with nvidia-smi); again (``changed=0``, no handler, no
download) and again in check mode; a bad variable stopped before anything changes.

Skipped, with the reason, unless root with openssh-server, dpkg-dev, apt-utils, gnupg and python3-apt.
MLPERF_TEST_KEEP=1 keeps the lab's directory (every playbook's output in ``runs/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.infra import apt_repo, bare_node, netns
from tests.infra.ansible_output import recap
from tests.infra.apt_repo import RepoServer
from tests.infra.nvidia_repo import CUDA_PATH, NEW, OLD, TOOLKIT_PATH, TOOLKIT_VERSION, NvidiaRepos
from tests.infra.netns import NetnsHosts

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NODES = ["nv1", "nv2", "nv3", "nv4"]
PACKAGES = ["nvidia-open", "nvidia-kernel-open-dkms",
            "nvidia-driver-cuda", f"nvidia-fabricmanager-{NEW.branch}", "nvidia-container-toolkit"]


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts, apt inside the test hosts)"
    missing = netns.missing_commands() + apt_repo.missing_tools()
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import apt, apt_pkg"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        missing.append("python3-apt")
    if missing:
        return ("not installed: %s (apt-get install -y --no-install-recommends openssh-server iproute2 %s)"
                % (", ".join(missing), apt_repo.APT_PACKAGES))
    return None


REASON = skip_reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

PLAYBOOK = """\
- name: NVIDIA driver stack
  hosts: mlperf_nodes
  gather_facts: false
  roles:
    - nvidia_driver
"""


def results(stdout: str, task: str) -> dict:
    """host -> ok / changed / skipping / failed / fatal of every task named ``task``."""
    found, current = {}, None
    for line in stdout.splitlines():
        header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\] \*+", line)
        if header:
            current = header.group(1)
        elif current == task:
            match = re.match(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+?)(?: ->[^\]]*)?\]", line)
            if match:
                found[match.group(2)] = match.group(1)
    return found


class Lab:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="mlperf-nvdriver-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.hosts = NetnsHosts(self.base, NODES)
        self.reboot_log = self.base / "reboots.log"
        self.server = None
        self.runs = 0

    def up(self) -> "Lab":
        self.reboot_log.touch()
        self.repos = NvidiaRepos(self.base / "www").build()
        self.hosts.up()
        try:
            self.server = RepoServer(self.repos.root, self.hosts.gateway).start()
            for name in NODES:
                bare_node.prepare(self.hosts, name, self.reboot_log)
        except BaseException:
            self.down()
            raise
        (self.base / "nvidia.yml").write_text(PLAYBOOK)
        return self

    def down(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None
        self.hosts.down()

    def inventory(self, host_vars: dict, **overrides) -> Path:
        directory = self.base / "inventory"
        (directory / "group_vars").mkdir(parents=True, exist_ok=True)
        hosts = {n: {"ansible_host": self.hosts.hosts[n].ip, **host_vars.get(n, {})} for n in NODES}
        inventory = {"all": {"children": {"mlperf_nodes": {"hosts": hosts}}}}
        url = self.server.url
        group_vars = dict(self.hosts.ansible_vars())
        group_vars.update({
            "nvidia_driver_repo_url": f"{url}/{CUDA_PATH}",
            "nvidia_driver_container_toolkit_repo_url": f"{url}/{TOOLKIT_PATH}",
            "nvidia_driver_container_toolkit_gpg_key_url": f"{url}/libnvidia-container/gpgkey",
            "nvidia_driver_kernel_packages": [],     # this machine's kernel has no headers package
            "nvidia_driver_manage_services": False,  # no service manager in the hosts
            "nvidia_driver_reboot_command": bare_node.REBOOT_COMMAND,
            "nvidia_driver_boot_time_command": bare_node.BOOT_TIME_COMMAND,
            "nvidia_driver_expected_gpus": 1,        # the recorded document holds one GPU
        })
        group_vars.update(overrides)
        (directory / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
        return directory

    def playbook(self, inventory: Path, *args: str, check: bool = True, **extra):
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0", ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
                   ANSIBLE_CACHE_PLUGIN_CONNECTION=str(self.base / "facts"),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.base / "cp"))
        argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), str(self.base / "nvidia.yml"), *args]
        if extra:
            argv += ["-e", json.dumps(extra)]
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
        self.runs += 1
        (self.base / "runs").mkdir(exist_ok=True)
        (self.base / "runs" / f"{self.runs:02d}.log").write_text(
            " ".join(argv) + "\n" + proc.stdout + "\n--- stderr\n" + proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-8000:]}\n"
                                 f"{proc.stderr[-3000:]}")
        return proc

    def sh(self, name: str, script: str) -> str:
        proc = self.hosts.exec(name, ["sh", "-c", script])
        assert proc.returncode == 0, f"{name}: {script}: {proc.stderr}"
        return proc.stdout

    def versions(self, name: str) -> dict:
        out = self.hosts.exec(name, ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\\n",
                                     *PACKAGES]).stdout
        found = dict.fromkeys(PACKAGES)
        for line in out.splitlines():
            package, status, *version = line.split()
            found[package] = version[0] if status == "installed" and version else None
        return found

    def reboots(self) -> list:
        return [line.split() for line in self.reboot_log.read_text().splitlines() if line.strip()]

    def hand_install(self, name: str, branch) -> None:
        """A driver branch installed by hand (exact versions: a newer branch is in the repository),
        then a reboot."""
        cuda = f"{self.server.url}/{CUDA_PATH}"
        key = (self.repos.cuda_dir / "3bf863cc.pub").read_text()
        bare_node.write_file(self.hosts, name, "/usr/share/keyrings/cuda-archive-keyring.asc", key)
        bare_node.write_file(self.hosts, name, "/etc/apt/sources.list.d/cuda.list",
                             f"deb [signed-by=/usr/share/keyrings/cuda-archive-keyring.asc] {cuda} /\n")
        exact = " ".join(f"{p}={branch.deb_version}" for p in ("nvidia-open", "nvidia-kernel-open-dkms",
                                                               "nvidia-driver-cuda"))
        self.sh(name, f"apt-get -qq update && DEBIAN_FRONTEND=noninteractive apt-get -qq -y install "
                      f"{exact} >/dev/null && {bare_node.REBOOT_COMMAND}")


@pytest.fixture(scope="module")
def lab():
    test_lab = Lab().up()
    yield test_lab
    test_lab.down()
    if not os.environ.get("MLPERF_TEST_KEEP"):
        shutil.rmtree(test_lab.base, ignore_errors=True)


@pytest.fixture(scope="module")
def inventory(lab):
    lab.hand_install("nv2", OLD)
    lab.hand_install("nv3", NEW)
    return lab.inventory({
        "nv1": {"nvidia_driver_container_runtime": "docker"},
        "nv2": {"nvidia_driver_container_runtime": "podman", "nvidia_driver_fabric_manager": True},
        "nv3": {"nvidia_driver_container_runtime": "docker", "nvidia_driver_fabric_manager": True},
        "nv4": {"nvidia_driver_container_runtime": "none", "nvidia_driver_reboot": False},
    })


def test_a_bad_variable_stops_before_anything_changes(lab, inventory):
    run = lab.playbook(inventory, "--limit", "nv1", check=False, nvidia_driver_branch="58O")
    assert run.returncode != 0
    assert results(run.stdout, "nvidia_driver : Check the role's settings") == {"nv1": "fatal"}
    assert 'nvidia_driver_branch as three digits such as "580" (got "58O")' in run.stdout
    assert recap(run.stdout)["nv1"]["changed"] == 0
    assert lab.sh("nv1", "ls /etc/apt/sources.list.d/*.list /etc/apt/keyrings/*.asc 2>/dev/null || true").strip() == ""


def test_check_mode_on_a_bare_node_changes_nothing(lab, inventory):
    run = lab.playbook(inventory, "--check", "--diff", "--limit", "nv1")
    assert recap(run.stdout)["nv1"]["failed"] == 0
    assert results(run.stdout, "nvidia_driver : Say what a dry run cannot show") == {"nv1": "ok"}
    assert f"would install nvidia-open={NEW.branch}.*, nvidia-container-toolkit from" in run.stdout
    assert set(lab.versions("nv1").values()) == {None}
    assert lab.sh("nv1", "ls /etc/apt/sources.list.d/*.list /etc/apt/keyrings/*.asc /etc/docker "
                         "2>/dev/null || true").strip() == ""
    assert lab.reboots() == [[h, a, b] for h, a, b in lab.reboots() if h in ("nv2", "nv3")]  # hand installs only


@pytest.fixture(scope="module")
def first_run(lab, inventory):
    lab.mark = len(lab.server.requests)
    lab.reboots_before = len(lab.reboots())
    return lab.playbook(inventory)


def test_first_run_installs_the_pinned_branch_and_the_toolkit(lab, first_run):
    out = first_run.stdout
    assert all(r["failed"] == 0 for r in recap(out).values()), recap(out)
    key = (lab.repos.cuda_dir / "3bf863cc.pub").read_text()
    url = lab.server.url
    for host in NODES:
        versions = lab.versions(host)
        assert versions["nvidia-open"] == NEW.deb_version, versions
        assert versions["nvidia-kernel-open-dkms"] == versions["nvidia-driver-cuda"] == NEW.deb_version
        assert (versions[f"nvidia-fabricmanager-{NEW.branch}"] is None) == (host in ("nv1", "nv4")), versions
        if host == "nv4":   # no container runtime: no toolkit, no repository for it
            assert versions["nvidia-container-toolkit"] is None
            assert not lab.sh(host, "ls /etc/apt/sources.list.d/nvidia-container-toolkit.list 2>/dev/null || true")
            continue
        assert versions["nvidia-container-toolkit"] == TOOLKIT_VERSION
        assert lab.sh(host, f"ls /usr/src/nvidia-{NEW.driver}/dkms.conf").strip()
        assert not lab.sh(host, f"ls -d /usr/src/nvidia-{OLD.driver} 2>/dev/null || true")
        assert lab.sh(host, "cat /etc/apt/sources.list.d/nvidia-container-toolkit.list").splitlines()[-1] == (
            f"deb [signed-by=/etc/apt/keyrings/nvidia-container-toolkit.asc] {url}/{TOOLKIT_PATH} /")
        # verified with nvidia-smi after: the branch, one GPU, persistence turned on
        assert re.search(re.escape(f"{host}: NVIDIA driver {NEW.driver} (CUDA 13.0), 1 x H200 seen by "
                                   "nvidia-smi, persistence Enabled"), out), host
    # nv1, nv4: the role's repository line and key; nv2, nv3: their hand-made line is used as it is
    for host in ("nv1", "nv4"):
        assert lab.sh(host, "cat /etc/apt/sources.list.d/nvidia-cuda.list").splitlines()[-1] == (
            f"deb [arch=amd64 signed-by=/etc/apt/keyrings/nvidia-cuda.asc] {url}/{CUDA_PATH} /")
        assert lab.sh(host, "cat /etc/apt/keyrings/nvidia-cuda.asc") == key
    for host in ("nv2", "nv3"):
        assert not lab.sh(host, "ls /etc/apt/sources.list.d/nvidia-cuda.list /etc/apt/keyrings/nvidia-cuda.asc "
                                "2>/dev/null || true")
    assert results(out, "nvidia_driver : Say which apt source already names the CUDA repository") == {
        "nv1": "skipping", "nv2": "ok", "nv3": "ok", "nv4": "skipping"}
    for host in NODES:
        assert "Pin: release l=NVIDIA CUDA" in lab.sh(host, "cat /etc/apt/preferences.d/nvidia-cuda-pin-600")
        assert f"Pin: version {NEW.branch}.*" in lab.sh(host, "cat /etc/apt/preferences.d/nvidia-driver-branch")
        policy = lab.sh(host, "apt-cache policy nvidia-driver-cuda")
        assert re.search(r"\*\*\* " + re.escape(NEW.deb_version) + r" 1000\n", policy), policy   # the branch pin
        assert re.search(r"600 " + re.escape(f"{url}/{CUDA_PATH}") + r"/?\s+Packages", policy), policy  # the label
    assert results(out, "nvidia_driver : Install the NVIDIA driver (branch 580)") == {
        "nv1": "changed", "nv2": "changed", "nv3": "skipping", "nv4": "changed"}
    assert f"NVIDIA driver {NEW.driver} is loaded, of nvidia_driver_branch {NEW.branch}" in out
    assert results(out, "nvidia_driver : Install Fabric Manager (NVSwitch system)") == {
        "nv1": "skipping", "nv2": "changed", "nv3": "changed", "nv4": "skipping"}
    # docker: the nvidia runtime registered; podman: the CDI spec, rewritten for the new driver
    for host in ("nv1", "nv3"):
        daemon = json.loads(lab.sh(host, "cat /etc/docker/daemon.json"))
        assert daemon["runtimes"]["nvidia"] == {"args": [], "path": "nvidia-container-runtime"}
    spec = lab.sh("nv2", "cat /etc/cdi/nvidia.yaml")
    assert "kind: nvidia.com/gpu" in spec and f"NVIDIA_DRIVER_VERSION={NEW.driver}" in spec
    assert not lab.sh("nv2", "ls /etc/docker 2>/dev/null || true")
    # the packages came from the repositories, signed indexes first; nothing landed on this machine
    fetched = [line for _c, line, _s in lab.server.requests[lab.mark:]]
    assert any(r.startswith(f"GET /{CUDA_PATH}/./InRelease") or r.startswith(f"GET /{CUDA_PATH}/InRelease")
               for r in fetched), fetched[:20]
    assert any(re.match(rf"GET /{CUDA_PATH}/\./nvidia-kernel-open-dkms_{re.escape(NEW.driver)}", r)
               for r in fetched), fetched
    assert not Path("/usr/bin/nvidia-ctk").exists() and not Path(f"/usr/src/nvidia-{NEW.driver}").exists()


def test_reboot_only_where_the_kernel_module_changed_one_node_at_a_time(lab, first_run):
    out = first_run.stdout
    assert results(out, "nvidia_driver : Note a kernel module change") == {
        "nv1": "changed", "nv2": "changed", "nv3": "skipping", "nv4": "changed"}
    assert f"nv2: nvidia-kernel-open-dkms {OLD.deb_version} -> {NEW.deb_version}" in out
    assert f"nv1: nvidia-kernel-open-dkms (none) -> {NEW.deb_version}" in out
    assert results(out, "nvidia_driver : Reboot after a kernel module change") == {
        "nv1": "changed", "nv2": "changed", "nv4": "skipping"}
    # nv4 (nvidia_driver_reboot false): reported, and its GPUs not asked before the reboot
    assert ("nv4: nvidia-kernel-open-dkms changed; reboot the node before using the GPUs "
            "(nvidia_driver_reboot is false)") in out
    assert results(out, "nvidia_driver : Read the driver and the GPUs after the install")["nv4"] == "skipping"
    done = lab.reboots()[lab.reboots_before:]
    assert sorted(h for h, _a, _b in done) == ["nv1", "nv2"]
    spans = sorted((float(a), float(b)) for _h, a, b in done)
    assert spans[0][1] <= spans[1][0], spans      # one at a time
    assert results(out, "nvidia_driver : Regenerate the CDI spec") == {
        "nv1": "skipping", "nv2": "changed", "nv4": "skipping"}
    # persistence: off after each boot, turned on by the role
    assert results(out, "nvidia_driver : Turn persistence mode on") == {
        "nv1": "changed", "nv2": "changed", "nv3": "changed", "nv4": "skipping"}


@pytest.fixture(scope="module")
def nv4_rebooted(lab, first_run, inventory):
    """nv4's operator reboots it, as the role asked, and runs the role again there."""
    lab.sh("nv4", bare_node.REBOOT_COMMAND)
    return lab.playbook(inventory, "--limit", "nv4")


def test_after_the_operators_reboot_the_gpus_are_verified(lab, nv4_rebooted):
    out = nv4_rebooted.stdout
    assert f"nv4: NVIDIA driver {NEW.driver} (CUDA 13.0), 1 x H200 seen by nvidia-smi, persistence Enabled" in out
    assert results(out, "nvidia_driver : Install the NVIDIA driver (branch 580)") == {"nv4": "skipping"}  # current
    assert "RUNNING HANDLER" not in out


def test_second_run_changes_nothing_and_check_mode_agrees(lab, nv4_rebooted, inventory):
    mark, reboots = len(lab.server.requests), len(lab.reboots())
    run = lab.playbook(inventory)
    assert {h: r["changed"] for h, r in recap(run.stdout).items()} == {h: 0 for h in NODES}, run.stdout[-4000:]
    assert "RUNNING HANDLER" not in run.stdout and len(lab.reboots()) == reboots
    assert run.stdout.count(f"NVIDIA driver {NEW.driver} is loaded, of nvidia_driver_branch") == len(NODES)
    assert not [line for _c, line, _s in lab.server.requests[mark:] if ".deb" in line]
    dry = lab.playbook(inventory, "--check")
    assert {h: r["changed"] for h, r in recap(dry.stdout).items()} == {h: 0 for h in NODES}
    assert results(dry.stdout, "nvidia_driver : Say what a dry run cannot show") == {h: "skipping" for h in NODES}
