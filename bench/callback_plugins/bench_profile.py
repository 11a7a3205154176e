"""Callback for the benchmarks: per-task wall time (as profile_tasks counts it) and the recap.

Neither ``ansible.posix.profile_tasks`` nor a timer callback ships with ansible-core, so the
benchmarks carry this one. Enabled with

    ANSIBLE_CALLBACK_PLUGINS=bench/callback_plugins ANSIBLE_CALLBACKS_ENABLED=bench_profile
    BENCH_PROFILE_OUT=/path/to/profile.json

it writes one JSON object when the playbook ends: ``tasks`` (each task's wall time, from its
start to the next task's start, with the number of hosts that ran it, and the results by
status), ``recap`` (each host's ok/changed/failed/skipped/unreachable counts) and ``seconds``
(the whole playbook). It prints nothing.
"""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_profile
type: aggregate
short_description: per-task wall time and the recap, as JSON (benchmarks only)
description:
  - Writes each task's wall time (start to the next task's start) and the play recap to the
    JSON file named by the environment variable BENCH_PROFILE_OUT.
requirements:
  - enable in the callbacks_enabled setting
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started = time.monotonic()
        self.tasks = []        # dicts, in order of start
        self.current = None
        self.play = ""

    def _close(self):
        if self.current is not None:
            self.current["seconds"] = time.monotonic() - self.current.pop("_t0")
            self.current = None

    def v2_playbook_on_play_start(self, play):
        self._close()
        self.play = play.get_name().strip()

    def _start(self, task, kind="task"):
        self._close()
        self.current = {"play": self.play, "task": task.get_name().strip(), "kind": kind,
                        "_t0": time.monotonic(), "results": {}}
        self.tasks.append(self.current)

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task, "handler")

    def _count(self, status):
        if self.current is not None:
            results = self.current["results"]
            results[status] = results.get(status, 0) + 1

    def v2_runner_on_ok(self, result):
        self._count("changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count("failed")

    def v2_runner_on_skipped(self, result):
        self._count("skipped")

    def v2_runner_on_unreachable(self, result):
        self._count("unreachable")

    def v2_playbook_on_stats(self, stats):
        self._close()
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        out = os.environ.get("BENCH_PROFILE_OUT")
        if not out:
            return
        for task in self.tasks:
            task.pop("_t0", None)
        with open(out, "w", encoding="utf-8") as handle:
            json.dump({"seconds": time.monotonic() - self.started, "tasks": self.tasks,
                       "recap": recap}, handle, indent=1)
