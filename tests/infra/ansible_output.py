"""Reading ansible-playbook's console output (the default callback), for tests."""

from __future__ import annotations

import re

_TASK_RE = re.compile(r"^TASK \[(.+?)\] \*+")


def changed_tasks(stdout: str) -> set[str]:
    """Names of the tasks that reported changed on any host, from the default callback's output."""
    changed, task = set(), None
    for line in stdout.splitlines():
        header = _TASK_RE.match(line)
        if header:
            task = header.group(1)
        elif line.startswith("changed: ") and task:
            changed.add(task)
    return changed


def recap(stdout: str) -> dict:
    """The PLAY RECAP's counters per host: ``{host: {"ok": 3, "changed": 0, ...}}``."""
    out = {}
    for line in stdout.split("PLAY RECAP")[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line)
        if match:
            out[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return out
