"""Controller-side preflight checks across nodes (no Ansible imports)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

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
