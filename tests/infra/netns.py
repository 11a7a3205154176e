"""SSH hosts as network namespaces on a private bridge (root only).

Each host is a network namespace holding one veth on the bridge, entered with its own mount and
UTS namespaces: a hostname, copy-on-write overlays of ``/etc /opt /var/lib /usr/local /root``,
the machine's cgroup hierarchy re-mounted under ``/sys/fs/cgroup`` (slurmd needs it) and an sshd
in the foreground. ``/usr``, ``/tmp`` and ``/work`` stay shared with the machine, so a directory
under ``/tmp`` is "shared storage" for every host. There is no route and no NAT: nothing leaves
the machine.

    hosts = NetnsHosts(base, ["node1", "node2", "login"]).up()
    hosts.ssh("node1", "hostname")      # CompletedProcess
    hosts.exec("node2", ["hostname"])   # nsenter into the host, without SSH
    hosts.down()                        # by PID, then the namespaces and the bridge

``base`` must be a directory other users can traverse (0755), not a pytest tmp_path (0700).
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
OVERLAID = ("/etc", "/opt", "/var/lib", "/usr/local", "/root")
REQUIRED_COMMANDS = ("ip", "unshare", "nsenter", "ssh", "ssh-keygen", SSHD)


def missing_commands(commands=REQUIRED_COMMANDS) -> list[str]:
    """The commands of ``commands`` that are not installed."""
    import shutil
    return [c for c in commands if not (shutil.which(c) or os.access(c, os.X_OK))]


def _run(argv, check=True, **kwargs):
    return subprocess.run(argv, check=check, capture_output=True, text=True, **kwargs)


def _used_subnets() -> set[str]:
    out = _run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    used = set()
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            net = ipaddress.ip_interface(fields[fields.index("inet") + 1]).network
            used.add(str(ipaddress.ip_network(f"{net.network_address}/24", strict=False)))
    return used


def free_subnet(rng=random) -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/16 .. 10.254.0.0/16 that no interface of this machine uses."""
    used = _used_subnets()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randint(200, 254)}.{rng.randint(0, 255)}.0/24")
        if str(net) not in used:
            return net
    raise RuntimeError("no free /24 found in 10.200-254.x.0")


def cgroup_mount_script() -> str:
    """Shell lines re-creating this machine's cgroup mounts (v1 hierarchies or cgroup2)."""
    fstype = _run(["stat", "-fc", "%T", "/sys/fs/cgroup"]).stdout.strip()
    if fstype == "cgroup2fs":
        return "mount -t cgroup2 cgroup2 /sys/fs/cgroup;"
    lines = ["mount -t tmpfs -o mode=755 cgroup_root /sys/fs/cgroup;"]
    out = _run(["findmnt", "-rn", "-R", "-o", "TARGET,FSTYPE,OPTIONS", "/sys/fs/cgroup"]).stdout
    for line in out.splitlines():
        target, fs, opts = line.split()[:3]
        if target == "/sys/fs/cgroup":
            continue
        keep = ",".join(o for o in opts.split(",")
                        if o not in ("rw", "ro", "relatime", "nosuid", "nodev", "noexec"))
        if fs == "cgroup2":
            lines.append(f"mkdir -p {target}; mount -t cgroup2 cgroup2 {target};")
        else:
            lines.append(f"mkdir -p {target}; mount -t cgroup -o {keep} cgroup {target};")
    return " ".join(lines)


@dataclass
class Host:
    name: str
    ip: str
    netns: str
    dir: Path
    pid: int | None = None  # sshd's (also the process to nsenter)


class NetnsHosts:
    """Hosts ``names`` on a fresh bridge; see the module docstring."""

    def __init__(self, base: str | os.PathLike, names: list[str], *, prefix: str | None = None,
                 subnet: str | None = None):
        self.base = Path(base)
        self.prefix = prefix or "mr%04x" % random.getrandbits(16)
        self.bridge = f"{self.prefix}br"
        self.subnet = ipaddress.ip_network(subnet) if subnet else free_subnet()
        gateway = self.subnet.network_address + 1
        self.gateway = str(gateway)
        self.hosts = {
            name: Host(name=name, ip=str(gateway + 10 + i), netns=f"{self.prefix}-{name}",
                       dir=self.base / "hosts" / name)
            for i, name in enumerate(names, start=1)
        }
        self.ssh_dir = self.base / "ssh"
        self.key = self.ssh_dir / "id_ed25519"
        self._procs: list[subprocess.Popen] = []
        self._bridge_made = False

    # -- bring up --------------------------------------------------------------------------
    def up(self, timeout: float = 20.0) -> "NetnsHosts":
        try:
            self._up(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, timeout):
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.ssh_dir.mkdir(mode=0o700, exist_ok=True)
        if not self.key.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key), "-C", "mlperf-test"])
        hostkey = self.ssh_dir / "hostkey"
        if not hostkey.exists():
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(hostkey), "-C", "mlperf-test-host"])
        authorized = self.ssh_dir / "authorized_keys"
        authorized.write_text((self.ssh_dir / "id_ed25519.pub").read_text())
        authorized.chmod(0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory

        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        self._bridge_made = True
        _run(["ip", "addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

        hosts_file = self.base / "etc-hosts"
        hosts_file.write_text("127.0.0.1 localhost\n%s ctl\n%s" % (
            self.gateway, "".join(f"{h.ip} {h.name}\n" for h in self.hosts.values())))
        cgroups = cgroup_mount_script()

        for i, host in enumerate(self.hosts.values(), start=1):
            host.dir.mkdir(parents=True, exist_ok=True)
            veth = f"{self.prefix}v{i}"
            _run(["ip", "netns", "add", host.netns])
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns])
            _run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            _run(["ip", "-n", host.netns, "addr", "add", f"{host.ip}/{self.subnet.prefixlen}", "dev", "eth0"])
            _run(["ip", "-n", host.netns, "link", "set", "lo", "up"])
            _run(["ip", "-n", host.netns, "link", "set", "eth0", "up"])
            config = host.dir / "sshd_config"
            config.write_text(f"""ListenAddress {host.ip}
Port 22
HostKey {hostkey}
PidFile none
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 200
MaxSessions 200
Subsystem sftp internal-sftp
LogLevel ERROR
""")
            script = [f"set -e; hostname {host.name}; mount --make-rprivate /;", cgroups]
            for directory in OVERLAID:
                key = directory.replace("/", "_")
                upper, work = host.dir / "ov" / key / "up", host.dir / "ov" / key / "wk"
                upper.mkdir(parents=True, exist_ok=True)
                work.mkdir(parents=True, exist_ok=True)
                script.append(f"mount -t overlay ov{key} -o lowerdir={directory},"
                              f"upperdir={upper},workdir={work} {directory};")
            script.append(f"cp {hosts_file} /etc/hosts; echo {host.name} > /etc/hostname;")
            script.append(f"exec {SSHD} -D -e -f {config}")
            log = open(host.dir / "sshd.log", "ab")
            # ip netns exec -> unshare -> sh -> exec sshd: one pid throughout, sshd's
            proc = subprocess.Popen(
                ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts",
                 "sh", "-c", " ".join(script)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            self._procs.append(proc)
            host.pid = proc.pid

        deadline = time.monotonic() + timeout
        for host in self.hosts.values():
            while True:
                proc = next(p for p in self._procs if p.pid == host.pid)
                if proc.poll() is not None:
                    raise RuntimeError(f"sshd of {host.name} exited: "
                                       f"{(host.dir / 'sshd.log').read_text()[-2000:]}")
                try:
                    with socket.create_connection((host.ip, 22), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd of {host.name} did not listen on {host.ip}:22")
                    time.sleep(0.05)

    # -- use -------------------------------------------------------------------------------
    def nsenter(self, name: str) -> list[str]:
        """argv prefix that runs a command inside host ``name`` (network, mount, UTS)."""
        return ["nsenter", "-t", str(self.hosts[name].pid), "-n", "-m", "-u"]

    def exec(self, name: str, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(self.nsenter(name) + list(argv), **kwargs)

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]

    def ssh(self, name: str, command: str, **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        return subprocess.run(["ssh", *self.ssh_options(), f"root@{self.hosts[name].ip}", command],
                              **kwargs)

    def ansible_vars(self) -> dict:
        """Connection variables for an Ansible inventory of these hosts."""
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                       "-o LogLevel=ERROR",
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    # -- tear down -------------------------------------------------------------------------
    def pids_in(self, name: str) -> list[int]:
        """Every process in host ``name``'s network namespace (sshd, sessions, daemons, jobs)."""
        out = _run(["ip", "netns", "pids", self.hosts[name].netns], check=False).stdout
        return [int(p) for p in out.split()]

    def down(self, grace: float = 3.0) -> None:
        """Stop every process of the hosts by PID, then remove the namespaces and the bridge."""
        pids = set(p.pid for p in self._procs)
        for name in self.hosts:
            pids.update(self.pids_in(name))
        kill_pids(pids, grace)
        for proc in self._procs:
            try:
                proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
        self._procs.clear()
        for host in self.hosts.values():
            _run(["ip", "netns", "del", host.netns], check=False)  # its veth goes with it
        if self._bridge_made:
            _run(["ip", "link", "del", self.bridge], check=False)
            self._bridge_made = False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_pids(pids, grace: float) -> None:
    """SIGTERM each pid, SIGKILL what is left after ``grace`` seconds."""
    pids = {p for p in pids if p and p != os.getpid()}
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

