"""Turn a network-namespace test host (tests/infra/netns.py) into a bare AMD GPU node.

    bare_node.prepare(hosts, "amd1", log=base / "reboots.log")

What it does, inside the host's own mount namespace (nothing on this machine changes):

* copy-on-write ``/usr``, ``/var/cache`` and ``/var/log`` on top of the overlays netns.py gives
  (``/etc /opt /var/lib /usr/local /root``), so apt and dpkg can install and remove packages in
  the host: files land in the host's upper layers, the dpkg database is the host's copy, apt's
  locks and caches are the host's. ``/usr/local``'s overlay is kept (moved aside and back).
* an air-gapped apt: the distribution's sources are disabled (there is no route out), so the
  only repositories are those the roles add;
* no Docker: this machine's ``/usr/local/bin/docker`` (a client without a daemon) is removed;
* the GPUs on the PCI bus: ``lspci`` prints the recorded ``lspci -d 1002:74a1 -PP`` of an
  8 x MI300X node (tests/data/gpu-outputs), as a node's bus shows them before any driver;
* a reboot stand-in for ``ansible.builtin.reboot``: ``/usr/local/sbin/standin-reboot`` appends
  ``<host> <start> <end>`` to ``log`` (shared) and gives the host a new boot id in
  ``/var/lib/standin/boot_id`` (read with ``cat``, the boot_time_command).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .apt_repo import GPU_OUTPUTS, LSPCI_MI300X_X8

BOOT_ID = "/var/lib/standin/boot_id"
REBOOT_COMMAND = "/usr/local/sbin/standin-reboot"
BOOT_TIME_COMMAND = f"cat {BOOT_ID}"

LSPCI = """#!/bin/sh
# lspci stand-in (mlperf-repro tests): the PCI bus of an 8 x MI300X node, recorded
if [ "$1" = -d ] && [ "$2" = 1002:74a1 ]; then exec cat /usr/share/standin/lspci-74a1.txt; fi
exit 0
"""

REBOOT = """#!/bin/sh
# reboot stand-in (mlperf-repro tests): a new boot id, one line per reboot in a shared log
start=$(date +%s.%N)
sleep 0.5
cat /proc/sys/kernel/random/uuid > {boot_id}
echo "$(hostname) $start $(date +%s.%N)" >> {log}
"""


def _overlay(host_dir: Path, directory: str) -> str:
    key = directory.strip("/").replace("/", "_")
    upper, work = host_dir / "ov-extra" / key / "up", host_dir / "ov-extra" / key / "wk"
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    return (f"mount -t overlay ovx_{key} -o lowerdir={directory},upperdir={upper},"
            f"workdir={work} {directory};")


def prepare(hosts, name: str, log: Path) -> None:
    host = hosts.hosts[name]
    keep = host.dir / "usr-local-kept"
    keep.mkdir(parents=True, exist_ok=True)
    lspci = (GPU_OUTPUTS / LSPCI_MI300X_X8).read_text()
    script = [
        "set -e;",
        f"mount --move /usr/local {keep};",
        _overlay(host.dir, "/usr"),
        f"mount --move {keep} /usr/local;",
        _overlay(host.dir, "/var/cache"),
        _overlay(host.dir, "/var/log"),
        "rm -f /usr/local/bin/docker;",
        "for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list "
        "/etc/apt/sources.list.d/*.sources; do [ -f \"$f\" ] && mv \"$f\" \"$f.airgapped\"; done;",
        "rm -rf /var/lib/apt/lists/*.* ;",  # the distribution's indexes: unreachable now
        "mkdir -p /usr/share/standin /var/lib/standin /usr/local/sbin;",
        f"printf %s {shlex.quote(lspci)} > /usr/share/standin/lspci-74a1.txt;",
        f"printf %s {shlex.quote(LSPCI)} > /usr/bin/lspci; chmod 755 /usr/bin/lspci;",
        f"printf %s {shlex.quote(REBOOT.format(boot_id=BOOT_ID, log=log))} > {REBOOT_COMMAND};",
        f"chmod 755 {REBOOT_COMMAND}; cat /proc/sys/kernel/random/uuid > {BOOT_ID};",
    ]
    proc = hosts.exec(name, ["sh", "-c", " ".join(script)])
    if proc.returncode != 0:
        raise RuntimeError(f"preparing {name}: {proc.stderr}")


def write_file(hosts, name: str, path: str, content: str) -> None:
    """A file in host ``name`` (its own copy-on-write layer)."""
    proc = hosts.exec(name, ["sh", "-c", f"mkdir -p {shlex.quote(str(Path(path).parent))} && "
                                         f"cat > {shlex.quote(path)}"], input=content)
    if proc.returncode != 0:
        raise RuntimeError(f"writing {path} on {name}: {proc.stderr}")
