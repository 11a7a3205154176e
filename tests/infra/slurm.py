"""A real Slurm (Debian's slurm-wlm 22.05) on :class:`~tests.infra.netns.NetnsHosts` (root only).

- a private ``munged`` (own key and socket under ``base``; Slurm finds it through
  ``AuthInfo=socket=``), so a munged that something else runs is neither used nor disturbed;
- ``slurmctld`` in this machine's namespace, listening on the bridge address at a free port;
- one ``slurmd`` inside each compute host (entered into the same namespaces as that host's sshd,
  so ``node3`` is one host for SSH and for Slurm), with ``GPUS`` fake GPUs: character devices
  with ``/dev/null``'s numbers named in ``gres.conf`` (22.05 registers zero GPUs from a
  ``Count=``-only line);
- ``slurm.conf`` copied to ``/etc/slurm/`` of every host (their ``/etc`` is copy-on-write, the
  machine's is untouched), so ``sbatch`` on a submit host needs no ``SLURM_CONF``; commands run
  from this machine use :attr:`SlurmCluster.env`;
- job completion records in a text file (``jobcomp/filetxt``), read with ``sacct -c``; there is
  no slurmdbd, so plain ``sacct`` answers that accounting is disabled.

Daemons run in the foreground as children of the test process and are stopped by PID.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from .netns import NetnsHosts, kill_pids

SBIN = "/usr/sbin"
REQUIRED_COMMANDS = (f"{SBIN}/slurmctld", f"{SBIN}/slurmd", f"{SBIN}/munged", "mungekey", "sbatch",
                     "squeue", "scontrol", "sacct", "sinfo", "scancel", "srun")


def missing_commands() -> list[str]:
    return [c for c in REQUIRED_COMMANDS if not (shutil.which(c) or os.access(c, os.X_OK))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


class SlurmCluster:
    """slurmctld + one slurmd per compute host of ``hosts``; see the module docstring."""

    def __init__(self, hosts: NetnsHosts, compute: list[str], *, gpus: int = 8,
                 partition: str = "batch", cpus: int = 4):
        self.hosts = hosts
        self.compute = list(compute)
        self.gpus = gpus
        self.partition = partition
        self.cpus = cpus  # more than the machine has (config_overrides): jobs can share nodes
        self.dir = hosts.base / "slurm"
        self.conf = self.dir / "slurm.conf"
        self.jobcomp = self.dir / "jobcomp.txt"
        self.munge_socket = hosts.base / "munge" / "munge.socket"
        self.port = free_port()
        self.cluster_name = hosts.prefix
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def env(self) -> dict[str, str]:
        """Environment for Slurm commands run from this machine."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def command(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env=self.env, capture_output=True, text=True, check=check)

    # -- bring up --------------------------------------------------------------------------
    def up(self, timeout: float = 30.0) -> "SlurmCluster":
        try:
            self._up(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _start(self, name: str, argv: list[str], log: Path, **kwargs) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        self._procs[name] = proc
        return proc

    def _wait(self, what: str, ready, timeout: float, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{what} exited ({proc.returncode}): "
                                   f"{log.read_text()[-3000:] if log and log.exists() else ''}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} not ready after {timeout:.0f} s: "
                                   f"{log.read_text()[-3000:] if log and log.exists() else ''}")
            time.sleep(0.1)

    def _up(self, timeout):
        for sub in ("state", "log", "spool", "dev"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._munge(timeout)
        self._write_config()
        log = self.dir / "log" / "slurmctld.log"
        ctld = self._start("slurmctld", [f"{SBIN}/slurmctld", "-D", "-i", "-f", str(self.conf)],
                           self.dir / "log" / "slurmctld.out")
        self._wait("slurmctld", lambda: self.command("scontrol", "ping").stdout.count("UP") > 0,
                   timeout, ctld, log)
        for name in self.compute:
            (self.dir / "spool" / name).mkdir(exist_ok=True)
            self._start(f"slurmd-{name}",
                        self.hosts.nsenter(name) + [f"{SBIN}/slurmd", "-D", "-N", name],
                        self.dir / "log" / f"slurmd-{name}.out")
        self._wait(f"{len(self.compute)} idle slurmd nodes", self._all_idle, timeout,
                   log=self.dir / "log" / f"slurmd-{self.compute[0]}.log")

    def _all_idle(self) -> bool:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                logfile = self.dir / "log" / f"{name}.log"
                raise RuntimeError(f"{name} exited ({proc.returncode}): "
                                   f"{logfile.read_text()[-3000:] if logfile.exists() else ''}")
        out = self.command("sinfo", "-h", "-N", "-t", "idle", "-o", "%N").stdout.split()
        return len(set(out)) >= len(self.compute)

    def _munge(self, timeout):
        munge = pwd.getpwnam("munge")
        directory = self.munge_socket.parent
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chown(directory, munge.pw_uid, munge.pw_gid)
        key = directory / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o600)
        log = directory / "munged.log"
        for path in (log, directory / "munged.seed"):
            path.touch()
            os.chown(path, munge.pw_uid, munge.pw_gid)
        proc = self._start("munged", [
            f"{SBIN}/munged", "--foreground", "--force", f"--socket={self.munge_socket}",
            f"--key-file={key}", f"--pid-file={directory / 'munged.pid'}",
            f"--log-file={log}", f"--seed-file={directory / 'munged.seed'}",
            "--num-threads=4"], directory / "munged.out",
            user=munge.pw_uid, group=munge.pw_gid, extra_groups=[])
        os.chmod(self.hosts.base, 0o755)
        # the socket's directory must be reachable by every client (root here, but keep 0711)
        directory.chmod(0o711)

        def ready():
            return subprocess.run(["munge", "-n", "-S", str(self.munge_socket)],
                                  capture_output=True).returncode == 0
        self._wait("munged", ready, timeout, proc, log)

    def _write_config(self):
        host_ips = [self.hosts.hosts[name].ip for name in self.compute]
        nodes = "\n".join(
            f"NodeName={name} NodeAddr={ip} CPUs={self.cpus} RealMemory=1000 Gres=gpu:{self.gpus} "
            f"State=UNKNOWN" for name, ip in zip(self.compute, host_ips))
        s = self.dir
        short = socket.gethostname().split(".")[0]
        self.conf.write_text(f"""ClusterName={self.cluster_name}
SlurmctldHost={short}({self.hosts.gateway})
SlurmctldPort={self.port}
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
SlurmdParameters=config_overrides
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={s}/state
SlurmdSpoolDir={s}/spool/%n
SlurmctldPidFile={s}/slurmctld.pid
SlurmdPidFile={s}/slurmd-%n.pid
SlurmctldLogFile={s}/log/slurmctld.log
SlurmdLogFile={s}/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
ReturnToService=2
SchedulerType=sched/backfill
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=2
GresTypes=gpu
{nodes}
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        for g in range(self.gpus):
            dev = s / "dev" / f"gpu{g}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # a /dev/null clone
        (s / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(
                f"NodeName={name} Name=gpu File={s}/dev/gpu[0-{self.gpus - 1}]\n"
                for name in self.compute))
        # every host reads /etc/slurm (copy-on-write /etc: the machine's own stays untouched)
        for name in self.hosts.hosts:
            self.hosts.exec(name, ["sh", "-c", f"mkdir -p /etc/slurm && cp {self.conf} {s}/gres.conf "
                                               f"/etc/slurm/"], check=True)

    # -- use -------------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still knows (finished ones for MinJobAge): id, name, state, comment."""
        out = self.command("squeue", "-h", "--states=all", "-o", "%i|%j|%T|%k").stdout
        jobs = []
        for line in out.splitlines():
            jid, name, state, comment = (line.split("|", 3) + ["", "", ""])[:4]
            jobs.append({"id": jid, "name": name, "state": state, "comment": comment})
        return jobs

    def cancel_all(self, timeout: float = 15.0) -> None:
        self.command("scancel", "--full", "--state=PENDING")
        for job in self.jobs():
            if job["state"] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED"):
                self.command("scancel", "--full", job["id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(j["state"] in ("RUNNING", "CONFIGURING", "COMPLETING", "PENDING")
                       for j in self.jobs()):
                return
            time.sleep(0.2)

    # -- tear down -------------------------------------------------------------------------
    def down(self) -> None:
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            try:
                self.cancel_all()
            except OSError:
                pass
        order = [n for n in self._procs if n.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is None:
                kill_pids({proc.pid}, 5.0)
            if proc is not None:
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()
