"""One reading of ansible-runner's events: the API's result and the live display count a real
playbook's tasks as Ansible's own recap does, an ignore_errors failure included."""

import os
import sys
from pathlib import Path

import ansible_runner

from mlperf_repro.api import PlanResult, _Collector
from mlperf_repro.progress import Progress
from mlperf_repro.runner_events import HostCounts, task_outcome

PLAYBOOK = """\
- name: Render - a play of a known stage
  hosts: localhost
  gather_facts: false
  tasks:
    - name: A task that changes something
      ansible.builtin.command: "true"
    - name: A task that fails, its failure ignored
      ansible.builtin.command: "false"
      ignore_errors: true
    - name: A task that is skipped
      ansible.builtin.debug:
        msg: never
      when: false
    - name: A task that is fine
      ansible.builtin.debug:
        msg: fine
"""


def run_playbook(tmp_path):
    project = tmp_path / "project"
    project.mkdir(parents=True)
    (tmp_path / "private").mkdir()
    (project / "play.yml").write_text(PLAYBOOK)
    events = []
    bin_dir = str(Path(sys.executable).parent)
    result = ansible_runner.run(
        private_data_dir=str(tmp_path / "private"), project_dir=str(project), playbook="play.yml",
        inventory="localhost ansible_connection=local ansible_python_interpreter=" + sys.executable,
        envvars={"PATH": f"{bin_dir}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1"},
        event_handler=lambda event: events.append(event) or True, quiet=True)
    assert result.status == "successful", result.stdout.read()[-3000:]
    return events


def test_api_and_progress_count_an_ignored_failure_as_ansible_does(tmp_path):
    events = run_playbook(tmp_path)
    stats = next(e["event_data"] for e in events if e["event"] == "playbook_on_stats")
    # Ansible's own recap: the ignored failure is ok, ignored and changed (command says changed)
    assert (stats["ok"], stats["changed"], stats["ignored"], stats["skipped"]) == (
        {"localhost": 3}, {"localhost": 2}, {"localhost": 1}, {"localhost": 1})
    assert not stats.get("failures")

    outcomes = [o for o in map(task_outcome, events) if o is not None]
    assert [o.outcome for o in outcomes] == ["ok", "ignored", "skipped", "ok"]
    ignored = outcomes[1]
    assert ignored.task == "A task that fails, its failure ignored" and not ignored.failure

    collector, progress = _Collector(), Progress()
    for event in events:
        if event["event"] != "playbook_on_stats":  # the fold itself, not Ansible's recap
            collector.feed(event)
        progress.feed(event)
    expected = HostCounts(ok=3, changed=2, skipped=1, ignored=1)
    result = collector.result(PlanResult, status="successful", rc=0, ident="x", artifact_dir="",
                              private_data_dir="")
    assert result.recap == {"localhost": expected}
    with_stats = _Collector()
    for event in events:
        with_stats.feed(event)
    assert with_stats.result(PlanResult, status="successful", rc=0, ident="x", artifact_dir="",
                             private_data_dir="").recap == result.recap  # the fold is the recap
    assert result.failed_tasks == []
    assert [c.task for c in result.changes] == ["A task that changes something",
                                                "A task that fails, its failure ignored"]
    assert result.stages == ["render"]
    host = progress.snapshot().hosts["localhost"]
    assert (host.ok, host.changed, host.failed, host.skipped, host.ignored) == (3, 2, 0, 1, 1)
    assert host.last_failure is None
    assert host.stage == "render"


def test_a_failure_that_counts_is_a_failed_task_for_both(tmp_path):
    event = {"event": "runner_on_failed", "event_data": {
        "host": "n1", "task": "Install ROCm", "play": "Provision - amdgpu driver and ROCm",
        "res": {"msg": "no space left"}, "task_action": "ansible.builtin.apt"}}
    collector, progress = _Collector(), Progress()
    collector.feed(event)
    progress.feed(event)
    (failed,) = collector.failed
    assert (failed.host, failed.task, failed.message, failed.action) == ("n1", "Install ROCm", "no space left", "apt")
    assert collector.counts["n1"] == HostCounts(failed=1)
    host = progress.snapshot().hosts["n1"]
    assert (host.failed, host.ignored, host.last_failure) == (1, 0, "Install ROCm: no space left")


def test_a_stage_whose_play_matched_no_host_was_not_entered():
    collector = _Collector()
    for play, matched in (("Render - code", True), ("Collect - logs", True), ("Collect - from the submit host", False),
                          ("Package - the tree", False), ("Report - JSON", True)):
        collector.feed({"event": "playbook_on_play_start", "event_data": {"play": play}})
        if not matched:
            collector.feed({"event": "playbook_on_no_hosts_matched", "event_data": {}})
    assert collector.stages == ["render", "collect", "report"]
