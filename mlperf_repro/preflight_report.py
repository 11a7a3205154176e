"""Controller-side preflight checks across nodes (no Ansible imports)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable, Mapping

#: Figures that are measured anew on every run (free space moves with every file written):
#: a summary that differs only in them says nothing new.
VOLATILE_KEYS = frozenset({"free_gb"})

#: Filesystem types that can be shared between nodes.
SHARED_FSTYPES = ("nfs", "nfs4", "lustre", "gpfs", "cephfs", "beegfs", "wekafs", "glusterfs",
                  "fuse.glusterfs", "fuse.sshfs", "fuse.juicefs", "virtiofs", "9p")


def shared_mount_problems(rows: Iterable[Mapping[str, Any]], label: str = "DATADIR") -> list[dict]:
    """Problems (as {host, problem}) when ``label`` is not one shared filesystem on every node."""
    seen: dict[tuple[str, str], list[str]] = {}
    problems = []
    for row in rows:
        disks = [d for d in (row.get("node") or {}).get("disks", []) if d.get("label") == label]
        if not disks:
            continue
        disk = disks[0]
        if disk.get("fstype") not in SHARED_FSTYPES:
            problems.append({"host": row["host"], "problem": (
                f"{label} {disk.get('path')} is on {disk.get('fstype') or 'an unknown filesystem'} "
                f"({disk.get('mountpoint')}), not a shared filesystem; mount the shared storage there")})
        seen.setdefault((disk.get("source", ""), disk.get("mountpoint", "")), []).append(row["host"])
    if len(seen) > 1:
        groups = "; ".join(f"{src or '?'} at {mnt} on {', '.join(hosts)}"
                           for (src, mnt), hosts in sorted(seen.items()))
        for hosts in seen.values():
            for host in hosts:
                problems.append({"host": host, "problem": (
                    f"{label} is not the same filesystem on every node: {groups}")})
    return problems


def shared_marker_problems(reads: Mapping[str, Iterable[Mapping[str, Any]]], writer: str,
                           content: str) -> list[str]:
    """What the shared-storage proof found wrong: ``reads`` is host -> that host's reads of the
    marker ``writer`` wrote with ``content`` (each ``{item: path, stat: {exists, checksum}}``,
    ansible.builtin.stat's result with a SHA-1 checksum)."""
    expected = hashlib.sha1(content.encode()).hexdigest()
    problems = []
    for host, results in reads.items():
        for read in results or []:
            stat = read.get("stat") or {}
            if not stat.get("exists"):
                problems.append(f"{host}: {read.get('item')}: the marker is not there: not the same "
                                f"filesystem as on {writer} (not mounted, or a local directory)")
            elif stat.get("checksum", "") != expected:
                problems.append(f"{host}: {read.get('item')}: the marker has other content than "
                                f"{writer} wrote (another filesystem holding an old marker?)")
    return problems


def node_rows(probes: Mapping[str, Mapping[str, Any] | None], shared: bool = False) -> list[dict]:
    """The preflight table's rows, one per node, from each node's ``mlperf_preflight`` result.

    ``probes``: host -> the module's registered result (``node``, ``problems``, ``gpus``,
    ``deferred``). A host with no result (unreachable) gets a row saying so. With ``shared``,
    DATADIR and LOGDIR must be one shared filesystem across the nodes (their problems are added
    to the rows of the nodes concerned).
    """
    rows = []
    for host, probe in probes.items():
        if not probe or "node" not in probe:
            rows.append({"host": host, "node": {}, "gpus": None, "deferred": [],
                         "problems": ["no preflight result (unreachable, or the probe failed)"]})
            continue
        rows.append({"host": host, "node": probe["node"], "gpus": probe.get("gpus"),
                     "problems": list(probe.get("problems") or []),
                     "deferred": list(probe.get("deferred") or [])})
    if shared:
        by_host = {row["host"]: row for row in rows}
        for label in ("DATADIR", "LOGDIR"):
            for item in shared_mount_problems(rows, label):
                by_host[item["host"]]["problems"].append(item["problem"])
    return rows


def _stable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _stable(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value


def summary_changed(summary: Mapping[str, Any], previous_text: str | None) -> bool:
    """Does ``summary`` say something the summary file's ``previous_text`` does not?

    Measured figures (``VOLATILE_KEYS``) do not count, so re-running preflight, or planning
    after a run, leaves the file as it is unless a node, a problem or a version changed.
    A missing or unreadable previous file counts as changed.
    """
    try:
        previous = json.loads(previous_text or "")
    except ValueError:
        return True
    return _stable(previous) != _stable(json.loads(json.dumps(summary)))
