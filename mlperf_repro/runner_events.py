"""One reading of ansible-runner's events, shared by the API (:mod:`mlperf_repro.api`, a run's
result) and the live display (:mod:`mlperf_repro.progress`).

:func:`task_outcome` says what one event means for one host: ok, failed, ignored (a failure
under ``ignore_errors``), skipped or unreachable, and whether it changed something;
:meth:`HostCounts.add` adds outcomes up exactly as ansible-playbook's recap does (an ignored failure
is ok and ignored, never a failure, and changed when its result says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

#: Events that carry a task's outcome for one host, and the outcome each stands for.
OUTCOME_EVENTS = {
    "runner_on_ok": "ok", "runner_on_failed": "failed", "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


def _counter(stats_key: str) -> Any:
    """A counter, and the key of ansible-playbook's stats (``playbook_on_stats``) that holds it."""
    return field(default=0, metadata={"stats": stats_key})


@dataclass
class HostCounts:
    """A host's task outcomes, as ansible-playbook's recap counts them."""

    ok: int = _counter("ok")
    changed: int = _counter("changed")
    failed: int = _counter("failures")
    unreachable: int = _counter("dark")
    skipped: int = _counter("skipped")
    rescued: int = _counter("rescued")
    ignored: int = _counter("ignored")

    def add(self, outcome: "TaskOutcome") -> None:
        """Count one outcome as the recap does (an ignored failure is ok and ignored)."""
        setattr(self, outcome.outcome, getattr(self, outcome.outcome) + 1)
        if outcome.outcome == "ignored":
            self.ok += 1
        if outcome.changed:
            self.changed += 1


def recap_from_stats(stats: Mapping[str, Any]) -> dict[str, HostCounts]:
    """Every host's counts from ansible-playbook's own recap (a ``playbook_on_stats`` event)."""
    recap: dict[str, HostCounts] = {}
    for counter in fields(HostCounts):
        for host, count in (stats.get(counter.metadata["stats"]) or {}).items():
            setattr(recap.setdefault(host, HostCounts()), counter.name, int(count))
    return recap


@dataclass(frozen=True)
class TaskOutcome:
    """What one task did on one host."""

    event: str          # the ansible-runner event (runner_on_ok, ...)
    host: str
    task: str
    outcome: str        # ok, failed, ignored, skipped or unreachable
    changed: bool
    action: str         # the module's short name (mlperf_campaign, copy, ...)
    res: Mapping[str, Any]
    play: str | None = None
    role: str | None = None

    @property
    def failure(self) -> bool:
        """A failure that counts (stops the host): not one under ``ignore_errors``."""
        return self.outcome in ("failed", "unreachable")

    @property
    def message(self) -> str:
        """The readable failure message (the outcome's name when the result has none)."""
        return failure_message(dict(self.res)) or self.outcome


def task_outcome(event: Mapping[str, Any]) -> TaskOutcome | None:
    """The outcome one event carries, or None for an event that carries none."""
    name = str(event.get("event") or "")
    outcome = OUTCOME_EVENTS.get(name)
    if outcome is None:
        return None
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    if outcome == "failed" and data.get("ignore_errors"):
        outcome = "ignored"
    return TaskOutcome(event=name, host=str(data.get("host") or ""), task=str(data.get("task") or ""),
                       outcome=outcome, changed=outcome in ("ok", "ignored") and bool(res.get("changed")),
                       action=event_action(data), res=res, play=data.get("play"), role=data.get("role"))


def event_action(event_data: Mapping[str, Any]) -> str:
    """The short name of the module an event's task ran (``ansible.builtin.copy`` -> ``copy``)."""
    action = event_data.get("resolved_action") or event_data.get("task_action") or ""
    return str(action).rsplit(".", 1)[-1]


def failure_message(res: Mapping[str, Any] | None) -> str:
    """The readable message of a failed task result (loop items included)."""
    if not isinstance(res, Mapping):
        return ""
    parts = []
    msg = res.get("msg")
    if msg:
        parts.append(str(msg).strip())
    for item in res.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            sub = failure_message(item)
            if sub and sub not in parts:
                parts.append(sub)
    stderr = str(res.get("stderr") or "").strip()
    if stderr and (not parts or parts[0] in ("non-zero return code", "MODULE FAILURE")):
        parts.append(stderr[-2000:])
    if not parts and res.get("reason"):
        parts.append(str(res["reason"]))
    return "\n".join(parts)
