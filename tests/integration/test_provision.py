"""Issue 4 on real SSH hosts: preflight, ROCm + driver, Docker and tunables, from bare nodes.

Four network-namespace hosts (tests/infra/netns.py) made into 8 x MI300X nodes
(tests/infra/bare_node.py: copy-on-write /usr, air-gapped apt, GPUs on the PCI bus, a reboot
stand-in). The packages come from signed apt repositories built here with dpkg-deb,
apt-ftparchive and throwaway GPG keys, laid out like AMD's and Docker's and served over HTTP on
the hosts' bridge (tests/infra/apt_repo.py); ``rocm``, ``amdgpu-dkms``, ``docker-ce``, ... are
stand-ins whose ``amd-smi``/``rocminfo``/``docker`` answer with recorded real outputs. ROCm is
fetched at AMD's own URLs (``http://repo.radeon.com/...``) through ``rocm_http_proxy`` (the
server doubles as the proxy; the hosts have no DNS and no route), Docker from a mirror URL.

amd1 starts bare, amd2 with the old ROCm release and amd3 with the target one (both installed
by hand, as AMD's guide does it). In order:

1. ``site.yml --tags preflight`` with no shared storage, a full disk on amd1 and 3 of amd3's 8
   GPUs answering: one table naming every problem of every node, amd2's old ROCm included.
2. ``site.yml --tags preflight,provision,tunables --check`` on bare amd1: passes, changes nothing.
3. The same for real on all three: keyrings, repository files, pin, packages (amd2 upgraded,
   amd3 left alone), groups, ld.so, daemon.json, the image pulled with retries (amd1's registry
   fails twice) or loaded from a tarball (amd3), digests recorded, tunables drift reported in
   check mode. The reboot handler runs only where the driver changed (amd1, amd2), one node at
   a time.
4. Again: ``changed=0``. Then preflight alone: no problems, ROCm and Docker checked for real.
5. Tunables apply, check and reset for real under a path prefix inside each host (this machine's
   kernel.*/vm.* must not change).

Skipped, with the reason, unless root with openssh-server, dpkg-dev, apt-utils, gnupg and
python3-apt (Ansible's apt module on the hosts, which share this machine's Python).
MLPERF_TEST_KEEP=1 keeps the lab's directory (every playbook's output in ``runs/``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node import tunables
from tests.infra import apt_repo, bare_node, netns
from tests.infra.ansible_output import recap
from tests.infra.apt_repo import NEW, OLD, RepoServer, StandInRepos
from tests.infra.netns import NetnsHosts

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYSTEM = "MI300X_1x8x1"
IMAGE = "rocm/amd-mlperf:smoke_standin_6.0"
NODES = ["amd1", "amd2", "amd3"]
WORKDIR = "/var/lib/mlperf-repro-work"      # local to each host (/var/lib is copy-on-write)
TUNABLES_ROOT = "/var/lib/standin/tunables-root"


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, mounts, apt inside the test hosts)"
    missing = netns.missing_commands() + apt_repo.missing_tools()
    try:
        subprocess.run(["/usr/bin/python3", "-c", "import apt, apt_pkg"], check=True,
                       capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        missing.append("python3-apt")
    if missing:
        return ("not installed: %s (apt-get install -y --no-install-recommends openssh-server "
                "iproute2 %s)" % (", ".join(missing), apt_repo.APT_PACKAGES))
    return None


REASON = skip_reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]


# ---------------------------------------------------------------------------------------------
# Running playbooks and reading the default callback's output
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    argv: list
    rc: int
    stdout: str
    stderr: str
    seconds: float
    recap: dict = field(default_factory=dict)

    def results(self, task: str) -> dict:
        """host -> ok / changed / skipping / failed / fatal of every task named ``task``."""
        found, current = {}, None
        for line in self.stdout.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\] \*+", line)
            if header:
                current = header.group(1)
            elif current == task:
                match = re.match(r"^(ok|changed|skipping|failed|fatal): \[([^\]]+?)(?: ->[^\]]*)?\]",
                                 line)
                if match:
                    found[match.group(2)] = match.group(1)
        return found

    def changed_tasks(self) -> dict:
        out, current = {}, None
        for line in self.stdout.splitlines():
            header = re.match(r"^(?:TASK|RUNNING HANDLER) \[(.+?)\] \*+", line)
            if header:
                current = header.group(1)
            match = re.match(r"^changed: \[([^\]]+?)(?: ->[^\]]*)?\]", line)
            if match and current:
                out.setdefault(current, []).append(match.group(1))
        return out


# ---------------------------------------------------------------------------------------------
# The lab: repositories, server, hosts
# ---------------------------------------------------------------------------------------------
class Lab:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="mlperf-provision-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.shared = self.base / "shared"
        self.hosts = NetnsHosts(self.base, NODES)
        self.server: RepoServer | None = None
        self.repos: StandInRepos | None = None
        self.reboot_log = self.shared / "reboots.log"
        self.timings: dict[str, float] = {}
        self.runs = 0

    def up(self) -> "Lab":
        started = time.monotonic()
        for sub in ("data", "logs"):
            (self.shared / sub).mkdir(parents=True, exist_ok=True)
        self.reboot_log.touch()
        self.repos = StandInRepos(self.base / "www").build()
        self.timings["repos"] = time.monotonic() - started
        self.hosts.up()
        try:
            self.server = RepoServer(self.repos.root, self.hosts.gateway).start()
            for name in self.hosts.hosts:
                bare_node.prepare(self.hosts, name, self.reboot_log)
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started
        return self

    def down(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None
        self.hosts.down()

    # -- inventories ---------------------------------------------------------------------------
    def catalog(self) -> Path:
        """The packaged catalog plus an 8 x MI300X docker platform of the smoke benchmark."""
        data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
        smoke = data["benchmarks"]["smoke"]
        smoke["image"] = IMAGE
        smoke["platforms"][SYSTEM] = {
            "gpu": "MI300X", "launch": "docker",
            "provenance": "tests/integration/test_provision.py: stand-in 8 x MI300X nodes",
            "env": {"DGXSYSTEM": SYSTEM, "MLLOG_SUBMISSION_PLATFORM": "MI300X", "SMOKE_DEVICE": "cpu"},
        }
        path = self.base / "catalog.yml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def conflicting_installed_here(self) -> list[str]:
        """Docker's conflicting packages installed on this machine: never removed in a test host
        (their maintainer scripts could reach shared /run or /tmp)."""
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n"],
                             capture_output=True, text=True).stdout
        installed = {line.split()[0] for line in out.splitlines() if line.endswith(" installed")}
        return sorted(installed & {"docker.io", "docker-doc", "docker-compose", "podman-docker",
                                   "containerd", "runc"})

    def inventory(self, name: str, nodes: list[str], host_vars: dict | None = None,
                  **overrides) -> Path:
        directory = self.base / "inventories" / name
        (directory / "group_vars").mkdir(parents=True, exist_ok=True)
        hosts = {n: {"ansible_host": self.hosts.hosts[n].ip, **(host_vars or {}).get(n, {})}
                 for n in nodes}
        inventory = {"all": {"children": {
            "mlperf_controller": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            "mlperf_nodes": {"hosts": hosts},
            "mlperf_staging": {"hosts": {nodes[0]: {}}},
        }}}
        url = self.server.url
        radeon = "http://repo.radeon.com"
        group_vars = dict(self.hosts.ansible_vars())
        group_vars.update({
            "mlperf_benchmark": "smoke",
            "mlperf_system": SYSTEM,
            "mlperf_nexp": 10,
            "mlperf_container_runtime": "docker",
            "mlperf_datadir": str(self.shared / "data"),
            "mlperf_logdir": str(self.shared / "logs"),
            "mlperf_workdir": WORKDIR,
            "mlperf_results_dir": str(self.base / "results" / name),
            "mlperf_shared_storage": False,
            "mlperf_provision": True,
            "mlperf_site_env": {},
            "tunables_mode": "check",
            "validate_catalog_path": str(self.catalog()),
            # AMD's own URLs (http: a proxy cannot look into https), reached through the proxy;
            # AMD publishes Ubuntu codenames only
            "rocm_repo_url": radeon + "/rocm/apt/{{ rocm_version }}",
            "rocm_amdgpu_repo_url": radeon + "/amdgpu/{{ rocm_amdgpu_version }}/ubuntu",
            "rocm_gpg_key_url": radeon + "/rocm/rocm.gpg.key",
            "rocm_http_proxy": url,
            "rocm_distribution": apt_repo.ROCM_DIST,
            "rocm_kernel_packages": [],      # this machine's kernel has no linux-headers package
            "rocm_reboot": True,
            "rocm_reboot_command": bare_node.REBOOT_COMMAND,
            "rocm_boot_time_command": bare_node.BOOT_TIME_COMMAND,
            # Docker's repository through a mirror URL
            "docker_repo_url": url + "/linux/debian",
            "docker_conflicting_packages": sorted(
                {"docker.io", "docker-doc", "docker-compose", "podman-docker", "containerd", "runc"}
                - set(self.conflicting_installed_here())),
            "docker_manage_service": False,   # no service manager in the hosts
            "image_pull_delay": 1,
        })
        group_vars.update(overrides)
        (directory / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
        (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
        return directory

    def playbook(self, inventory: Path, *args: str, check: bool = True, **extra) -> Run:
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
                   ANSIBLE_NOCOLOR="1", ANSIBLE_CACHE_PLUGIN_CONNECTION=str(self.base / "facts"),
                   ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.base / "cp"))
        argv = [str(BIN / "ansible-playbook"), "-i", str(inventory), *args]
        if extra:
            argv += ["-e", json.dumps(extra)]
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        run = Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started,
                  recap(proc.stdout))
        self.runs += 1
        (self.base / "runs").mkdir(exist_ok=True)
        (self.base / "runs" / f"{self.runs:02d}.log").write_text(
            " ".join(argv) + "\n" + proc.stdout + "\n--- stderr\n" + proc.stderr)
        if check and run.rc != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({run.rc}):\n{run.stdout[-8000:]}\n"
                                 f"{run.stderr[-3000:]}")
        return run

    # -- looking into a host ---------------------------------------------------------------------
    def sh(self, name: str, script: str) -> str:
        proc = self.hosts.exec(name, ["sh", "-c", script])
        assert proc.returncode == 0, f"{name}: {script}: {proc.stderr}"
        return proc.stdout

    def package_versions(self, name: str, packages: list[str]) -> dict:
        out = self.hosts.exec(name, ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status} ${Version}\\n",
                                     *packages]).stdout
        versions = dict.fromkeys(packages)          # None: not installed (or never known)
        for line in out.splitlines():
            package, status, *version = line.split()
            versions[package] = version[0] if status == "installed" and version else None
        return versions

    def requests_since(self, mark: int) -> list[str]:
        return [line for _client, line, _status in self.server.requests[mark:]]


@pytest.fixture(scope="module")
def lab():
    test_lab = Lab().up()
    yield test_lab
    # The phases' durations, for a look (-s); a report, not an assertion.
    print("\nprovision tests, seconds:", json.dumps({k: round(v, 1) for k, v in test_lab.timings.items()}))
    test_lab.down()
    if not os.environ.get("MLPERF_TEST_KEEP"):  # keep the playbook logs for a look afterwards
        shutil.rmtree(test_lab.base, ignore_errors=True)


def image_tarball(path: Path, ref: str) -> str:
    """A ``docker save``-shaped tarball (manifest.json + config) holding ``ref``; its image ID."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    digest = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": f"blobs/sha256/{digest}", "RepoTags": [ref], "Layers": []}]).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in ((f"blobs/sha256/{digest}", config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return "sha256:" + digest




def hand_install_rocm(lab, name: str, release) -> None:
    """ROCm ``release`` installed the way AMD's guide does it by hand (same files as the role)."""
    key = (lab.repos.root / "rocm" / "rocm.gpg.key").read_text()
    bare_node.write_file(lab.hosts, name, "/etc/apt/keyrings/rocm.asc", key)
    line = "deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.asc] http://repo.radeon.com/%s noble main\n"
    bare_node.write_file(lab.hosts, name, "/etc/apt/sources.list.d/amdgpu.list",
                         line % f"amdgpu/{release.amdgpu}/ubuntu")
    bare_node.write_file(lab.hosts, name, "/etc/apt/sources.list.d/rocm.list",
                         line % f"rocm/apt/{release.rocm}")
    # the site's proxy for AMD's repositories, as an administrator configures it
    bare_node.write_file(lab.hosts, name, "/etc/apt/apt.conf.d/90site-proxy",
                         f'Acquire::http::Proxy::repo.radeon.com "{lab.server.url}";\n')
    lab.sh(name, "apt-get -qq update && DEBIAN_FRONTEND=noninteractive "
                 "apt-get -qq -y install amdgpu-dkms rocm >/dev/null")


@pytest.fixture(scope="module")
def inventory(lab):
    started = time.monotonic()
    hand_install_rocm(lab, "amd2", OLD)
    hand_install_rocm(lab, "amd3", NEW)
    lab.timings["hand installs"] = time.monotonic() - started
    lab.tarball_image_id = image_tarball(lab.shared / "images" / "smoke.tar", IMAGE)
    return lab.inventory("main", NODES, host_vars={
        "amd3": {"image_tarball": str(lab.shared / "images" / "smoke.tar")}})


TAGS = ["--tags", "preflight,provision,tunables"]
ALL_PACKAGES = ["amdgpu-dkms", "amdgpu-dkms-firmware", "rocm", "rocm-core", "rocminfo", "amd-smi-lib",
                "docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin"]


def reboots(lab) -> list[tuple[str, float, float]]:
    return [(h, float(a), float(b)) for h, a, b in
            (line.split() for line in lab.reboot_log.read_text().splitlines())]


def table_rows(stdout: str) -> dict:
    """host -> problems, from the one preflight table in ``stdout``."""
    rows = {}
    for line in stdout.split("Preflight found problems", 1)[1].splitlines():
        match = re.match(r"^\s*(amd\d|controller)\s{2,}(.+?)\s*$", line)
        if match:
            rows.setdefault(match.group(1), []).append(match.group(2))
    return rows


# ---------------------------------------------------------------------------------------------
def test_preflight_names_every_problem_of_every_node_in_one_table(lab, inventory):
    bare_node.write_file(lab.hosts, "amd3", "/etc/amd-smi-standin/list.txt",
                         (apt_repo.GPU_OUTPUTS / apt_repo.AMDSMI_LIST_MI300X_3_OF_8).read_text())
    lab.sh("amd1", f"mkdir -p {WORKDIR} && mount -t tmpfs -o size=256k full {WORKDIR} && "
                   f"(dd if=/dev/zero of={WORKDIR}/fill bs=4k 2>/dev/null || true)")
    try:
        run = lab.playbook(inventory, "site.yml", "--tags", "preflight", check=False,
                           mlperf_shared_storage=True)
    finally:
        lab.sh("amd1", f"umount {WORKDIR}")
        lab.sh("amd3", "rm /etc/amd-smi-standin/list.txt")
    lab.timings["failing preflight"] = run.seconds
    assert run.rc != 0
    # one failure, the table's (run once, on the controller): no node failed on its own first
    assert run.stdout.count("fatal: ") == 1, run.stdout[-3000:]
    assert run.results("preflight : Report every problem of every node at once") == {"amd1": "fatal"}
    assert sum(r["failed"] for r in run.recap.values()) == 1, run.recap
    rows = table_rows(run.stdout)

    def has(host, text):
        return any(text in problem for problem in rows.get(host, []))

    assert has("amd1", f"workdir: {WORKDIR} has 0.0 GiB free"), rows
    assert has("amd2", f"ROCm {OLD.rocm} is older than the required {NEW.rocm}"), rows
    assert has("amd3", "expected 8 GPUs, found 3"), rows
    assert has("amd3", "lspci shows 8 AMD Instinct devices but amd-smi list reports only 3 GPUs"), rows
    for host in ("amd1",):   # bare: provision is not part of this run
        assert has(host, "ROCm 7.2.2 or later required, but no ROCm version was found"), rows
        assert has(host, "GPUs are visible only on the PCI bus"), rows
        assert has(host, "docker is not installed"), rows
    for host in NODES:
        assert has(host, "DATADIR ") and has(host, "not a shared filesystem"), rows
    assert not has("amd2", "GPUs") and not has("amd2", "workdir"), rows["amd2"]
    assert not has("amd3", "ROCm") and not has("amd3", "workdir"), rows
    summary = json.loads((lab.base / "results" / "main" / "preflight.json").read_text())
    assert {r["host"] for r in summary["nodes"] if r["problems"]} == set(NODES)


def test_check_mode_passes_on_a_fresh_host_and_changes_nothing(lab, inventory):
    # A fresh node has no render group (Debian creates it only with udev's rules): the dry run
    # must not fail on the membership it cannot set, whatever this machine's /etc/group holds.
    lab.sh("amd1", "groupdel render 2>/dev/null; getent group render || true")
    run = lab.playbook(inventory, "site.yml", *TAGS, "--check", "--diff", "--limit", "amd1,localhost")
    lab.timings["check on a fresh host"] = run.seconds
    assert run.recap["amd1"]["failed"] == 0 and run.recap["amd1"]["unreachable"] == 0, run.recap
    assert run.results("rocm : Say what a dry run cannot show") == {"amd1": "ok"}
    assert run.results("docker : Say what a dry run cannot show") == {"amd1": "ok"}
    assert run.results("image : Say what a dry run cannot show") == {"amd1": "ok"}
    assert run.results("rocm : Say which group memberships a dry run cannot set") == {"amd1": "ok"}
    assert lab.sh("amd1", "getent group render || true").strip() == ""
    assert set(lab.package_versions("amd1", ALL_PACKAGES).values()) == {None}
    assert lab.sh("amd1", "ls /etc/apt/sources.list.d/*.list /etc/apt/keyrings/*.asc "
                          "/etc/docker 2>/dev/null || true").strip() == ""
    # the summary is written in check mode too; this run also provisions, so ROCm's version and
    # Docker are left to those stages (GPU count and model come from lspci meanwhile)
    summary = json.loads((lab.base / "results" / "main" / "preflight.json").read_text())
    row = next(r for r in summary["nodes"] if r["host"] == "amd1")
    assert row["problems"] == [] and row["deferred"] == ["rocm", "docker"], row
    assert (row["gpus"]["source"], row["gpus"]["gpu_count"], row["gpus"]["model"]) == ("lspci", 8, "MI300X")


@pytest.fixture(scope="module")
def first_run(lab, inventory):
    # amd1 carries the distribution's docker.io (Docker's install removes it) and its registry
    # fails twice before a pull gets through; amd3 loads the image from shared storage.
    lab.hosts.exec("amd1", ["dpkg", "-i", str(lab.repos.conflicting_deb)], check=True)
    bare_node.write_file(lab.hosts, "amd1", "/etc/docker-standin/pull-failures", "2")
    lab.mark_first = len(lab.server.requests)
    lab.reboots_before = len(reboots(lab))
    run = lab.playbook(inventory, "site.yml", *TAGS)
    lab.timings["first run"] = run.seconds
    return run


def test_first_run_provisions_every_node(lab, first_run):
    assert all(first_run.recap[h]["failed"] == 0 for h in NODES), first_run.recap
    key = (lab.repos.root / "rocm" / "rocm.gpg.key").read_bytes()
    docker_key = (lab.repos.root / "linux" / "debian" / "gpg").read_bytes()
    url = lab.server.url
    for host in NODES:
        versions = lab.package_versions(host, ALL_PACKAGES)
        assert all(versions.values()), versions
        assert versions["amdgpu-dkms"] == f"1:{NEW.amdgpu}-{NEW.build}~24.04", versions
        assert versions["rocm"] == versions["rocm-core"] == NEW.deb_version, versions
        assert versions["docker-ce"] == apt_repo.DOCKER_VERSION, versions
        assert lab.sh(host, "cat /opt/rocm/.info/version").strip() == f"{NEW.rocm}-{NEW.build}"
        assert lab.sh(host, "cat /etc/apt/sources.list.d/amdgpu.list").splitlines()[-1] == (
            f"deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.asc] "
            f"http://repo.radeon.com/amdgpu/{NEW.amdgpu}/ubuntu noble main")
        assert lab.sh(host, "cat /etc/apt/sources.list.d/rocm.list").splitlines()[-1] == (
            f"deb [arch=amd64 signed-by=/etc/apt/keyrings/rocm.asc] "
            f"http://repo.radeon.com/rocm/apt/{NEW.rocm} noble main")
        assert lab.sh(host, "cat /etc/apt/sources.list.d/docker.list").splitlines()[-1] == (
            f"deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] {url}/linux/debian bookworm stable")
        assert lab.sh(host, "cat /etc/apt/keyrings/rocm.asc").encode() == key
        assert lab.sh(host, "cat /etc/apt/keyrings/docker.asc").encode() == docker_key
        assert lab.sh(host, "cat /etc/ld.so.conf.d/rocm.conf").split() == ["/opt/rocm/lib", "/opt/rocm/lib64"]
        groups = lab.sh(host, "id -nG root").split()
        assert {"render", "video", "docker"} <= set(groups), groups
        assert json.loads(lab.sh(host, "cat /etc/docker/daemon.json")) == {
            "log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "3"}}
        if host == "amd3":   # current already: the role left its hand-made setup alone
            continue
        # AMD's pin: the repo.radeon.com origin at priority 600; the proxy only for AMD's hosts
        assert "Pin: release o=repo.radeon.com" in lab.sh(host, "cat /etc/apt/preferences.d/rocm-pin-600")
        policy = lab.sh(host, "apt-cache policy rocm-core")
        assert re.search(r"600 http://repo\.radeon\.com/rocm/apt/7\.2\.2 noble/main", policy), policy
        assert f'Acquire::http::Proxy::repo.radeon.com "{url}";' in lab.sh(
            host, "cat /etc/apt/apt.conf.d/80mlperf-rocm-proxy")
    # amd2's old release was upgraded: nothing of it is left
    assert not lab.sh("amd2", f"ls -d /opt/rocm-{OLD.rocm} /usr/src/amdgpu-{OLD.amdgpu} 2>/dev/null || true")
    # amd3 was current: left alone
    assert first_run.results("rocm : Install the amdgpu driver") == {
        "amd1": "changed", "amd2": "changed", "amd3": "skipping"}
    # the distribution's docker.io is gone from amd1
    assert lab.package_versions("amd1", ["docker.io"]) == {"docker.io": None}
    # AMD's URLs through the proxy, signed indexes first; Docker's from the mirror URL
    fetched = lab.requests_since(lab.mark_first)
    assert any(r.startswith(f"GET http://repo.radeon.com/amdgpu/{NEW.amdgpu}/ubuntu/dists/noble/InRelease")
               for r in fetched), fetched[:20]
    assert any(re.match(r"GET http://repo\.radeon\.com/amdgpu/.*/pool/main/amdgpu-dkms_.*\.deb", r)
               for r in fetched)
    assert any(r.startswith("GET /linux/debian/pool/stable/docker-ce_") for r in fetched)
    # nothing was installed on this machine
    assert not Path("/opt/rocm").exists() and not Path(f"/opt/rocm-{NEW.rocm}").exists()
    here = subprocess.run(["dpkg-query", "-W", "rocm-core"], capture_output=True, text=True)
    assert here.returncode != 0


def test_reboot_only_where_the_driver_changed_one_node_at_a_time(lab, first_run):
    assert first_run.results("rocm : Reboot after a driver change") == {
        "amd1": "changed", "amd2": "changed"}
    assert first_run.results("rocm : Report the reboot the driver needs") == {
        "amd1": "skipping", "amd2": "skipping"}
    done = reboots(lab)[lab.reboots_before:]
    assert sorted(h for h, _a, _b in done) == ["amd1", "amd2"]
    spans = sorted((a, b) for _h, a, b in done)
    assert spans[0][1] <= spans[1][0], spans          # one at a time
    # verified after the reboot
    for host in NODES:
        assert re.search(re.escape(f"{host}: ROCm {NEW.rocm}, 8 x MI300X (gfx942) seen by amd-smi list")
                         + "(?! - reboot)", first_run.stdout), host


def test_image_pulled_with_retries_or_loaded_and_digests_recorded(lab, first_run):
    assert first_run.stdout.count("FAILED - RETRYING: [amd1]: Pull the benchmark image") == 2
    assert first_run.results("image : Pull the benchmark image") == {
        "amd1": "changed", "amd2": "changed", "amd3": "skipping"}
    assert first_run.results("image : Load the benchmark image from shared storage") == {
        "amd1": "skipping", "amd2": "skipping", "amd3": "changed"}
    digests = json.loads((lab.base / "results" / "main" / "image-digests.json").read_text())
    assert set(digests) == set(NODES)
    for host in ("amd1", "amd2"):
        assert digests[host]["name"] == IMAGE and digests[host]["source"] == "registry"
        assert re.fullmatch(r"rocm/amd-mlperf@sha256:[0-9a-f]{64}", digests[host]["repo_digests"][0])
    assert digests["amd3"]["id"] == lab.tarball_image_id and digests["amd3"]["repo_digests"] == []
    assert json.loads(lab.sh("amd3", f"docker image inspect {IMAGE}"))[0]["Id"] == lab.tarball_image_id


def test_tunables_check_reports_this_machines_drift_and_changes_nothing(lab, first_run):
    expected = tunables.drift(tunables.read_state("/"))
    assert first_run.results("tunables : Tunables (check)") == {h: "ok" for h in NODES}
    for host in NODES:
        if expected:
            line = next(l for l in (first_run.stdout + first_run.stderr).splitlines()  # a warning
                        if f"{host}: {len(expected)} setting(s) differ from AMD's" in l)
            assert all(name in line for name in expected), (line, expected)


def test_second_run_changes_nothing(lab, first_run, inventory):
    mark, reboots_before = len(lab.server.requests), len(reboots(lab))
    run = lab.playbook(inventory, "site.yml", *TAGS)
    lab.timings["second run"] = run.seconds
    assert {h: r["changed"] for h, r in run.recap.items()} == {h: 0 for h in run.recap}, run.changed_tasks()
    assert "RUNNING HANDLER" not in run.stdout and len(reboots(lab)) == reboots_before
    assert run.results("rocm : Install the amdgpu driver") == {h: "skipping" for h in NODES}
    assert run.stdout.count(f"ROCm {NEW.rocm} is installed, at least rocm_version {NEW.rocm}") == 3
    assert run.stdout.count(f"ROCm {NEW.rocm}, 8 x MI300X (gfx942) seen by amd-smi list") == 3
    assert not [r for r in lab.requests_since(mark) if ".deb" in r]


def test_the_docker_role_keeps_a_runtime_another_role_registered(lab, first_run, inventory):
    """A GPU platform's container toolkit registers its runtime in daemon.json (nvidia-ctk runtime
    configure); the docker role writes its own settings and keeps that runtime, and a re-run
    changes nothing (the two roles do not undo each other)."""
    runtime = {"toolkit": {"path": "/usr/bin/toolkit-container-runtime", "args": []}}
    current = json.loads(lab.sh("amd1", "cat /etc/docker/daemon.json"))
    lab.sh("amd1", "printf '%s' " + shlex.quote(json.dumps(dict(current, runtimes=runtime)))
           + " > /etc/docker/daemon.json")
    lab.playbook(inventory, "site.yml", "--tags", "docker", "--limit", "amd1")
    assert json.loads(lab.sh("amd1", "cat /etc/docker/daemon.json")) == {
        "log-driver": "json-file", "log-opts": {"max-size": "100m", "max-file": "3"},
        "runtimes": runtime}
    again = lab.playbook(inventory, "site.yml", "--tags", "docker", "--limit", "amd1")
    assert again.recap["amd1"]["changed"] == 0, again.changed_tasks()


def test_preflight_alone_checks_rocm_and_docker_for_real(lab, first_run, inventory):
    run = lab.playbook(inventory, "site.yml", "--tags", "preflight")
    lab.timings["preflight alone"] = run.seconds
    summary = json.loads((lab.base / "results" / "main" / "preflight.json").read_text())
    rows = {row["host"]: row for row in summary["nodes"]}
    for host in NODES:
        assert rows[host]["problems"] == [] and rows[host]["deferred"] == [], rows[host]
        assert rows[host]["gpus"]["rocm_version"] == NEW.rocm
        assert rows[host]["gpus"]["source"] == "amd-smi list"
        assert rows[host]["node"]["container"]["usable"] is True
    assert all(r["changed"] == 0 for r in run.recap.values()), run.recap


def test_tunables_apply_check_reset_under_a_prefix(lab, first_run, inventory):
    machine_before = tunables.read_state("/")
    files = {
        "proc/sys/kernel/nmi_watchdog": "1", "proc/sys/kernel/numa_balancing": "1",
        "proc/sys/kernel/randomize_va_space": "2",
        "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never",
        "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never",
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": "powersave",
        "sys/devices/system/cpu/cpu0/cpuidle/state2/disable": "0",
    }
    for host in NODES:
        for rel, value in files.items():
            bare_node.write_file(lab.hosts, host, f"{TUNABLES_ROOT}/{rel}", value + "\n")
        lab.sh(host, f"mkdir -p {TUNABLES_ROOT}/sys/module/amdgpu {TUNABLES_ROOT}/etc/sysctl.d")   # driver loaded

    def state(host):
        proc = lab.hosts.exec(host, ["/usr/bin/python3", "-c",
                                     "import json,sys; sys.path.insert(0, %r); "
                                     "from mlperf_repro.node import tunables; "
                                     "print(json.dumps(tunables.read_state(%r)))" % (str(ROOT), TUNABLES_ROOT)])
        return json.loads(proc.stdout)

    before = {h: state(h) for h in NODES}
    prefix = {"tunables_root": TUNABLES_ROOT,
              "tunables_sysctl_file": f"{TUNABLES_ROOT}/etc/sysctl.d/90-mlperf-repro.conf"}
    apply = lab.playbook(inventory, "playbooks/tunables.yml", tunables_mode="apply",
                         tunables_persistent=True, **prefix)
    assert apply.results("tunables : Tunables (apply)") == {h: "changed" for h in NODES}
    for host in NODES:  # the kernel settings survive a reboot; THP and cpupower stay runtime-only
        persisted = lab.sh(host, f"cat {prefix['tunables_sysctl_file']}")
        assert persisted.splitlines()[1:] == ["kernel.nmi_watchdog = 0", "kernel.numa_balancing = 0",
                                              "kernel.randomize_va_space = 0"], persisted
    for host in NODES:
        after = state(host)
        assert tunables.drift(after) == {}, after
        assert (after["randomize_va_space"], after["thp_enabled"], after["cpu_governor"]) == (
            "0", "always", "performance")
    # a dry run of apply finds nothing to change; check reports no drift (and may fail on it)
    again = lab.playbook(inventory, "playbooks/tunables.yml", "--check", tunables_mode="apply", **prefix)
    assert again.results("tunables : Tunables (apply)") == {h: "ok" for h in NODES}
    reset = lab.playbook(inventory, "playbooks/tunables.yml", tunables_mode="reset", **prefix)
    assert reset.results("tunables : Tunables (reset)") == {h: "changed" for h in NODES}
    assert {h: state(h) for h in NODES} == before
    for host in NODES:
        assert lab.sh(host, f"ls {TUNABLES_ROOT}/etc/sysctl.d") == ""
    check = lab.playbook(inventory, "playbooks/tunables.yml", check=False, tunables_mode="check",
                         tunables_fail_on_drift=True, **prefix)
    assert check.rc != 0 and check.results("tunables : Tunables (check)") == {h: "fatal" for h in NODES}
    assert "tunables drift: cpu_governor is powersave (AMD: performance)" in check.stdout
    # this machine's settings never moved
    assert tunables.read_state("/") == machine_before
    lab.timings["tunables apply/apply --check/reset/check"] = sum(
        r.seconds for r in (apply, again, reset, check))
