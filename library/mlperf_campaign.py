#!/usr/bin/python
"""Ansible module: start, re-attach to, inspect or stop a detached benchmark campaign."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_campaign
short_description: Run NEXP benchmark runs on a node, detached and resumable
description:
  - C(state=started) re-attaches to the newest campaign under O(root) that is unfinished
    (resuming its runner at the first run that has not finished when the runner is gone) or
    finished but not yet collected (the collect stage marks it), or creates a fresh
    campaign directory O(root)/O(campaign_id) and starts a detached runner in it.
  - C(state=status) reports a campaign's state; C(state=stopped) stops its runner.
  - Campaign directories are never overwritten or deleted; finished runs are never re-run.
options:
  state:
    description: What to do.
    type: str
    choices: [started, status, stopped]
    default: started
  root:
    description: Directory holding this benchmark/system's campaigns (one subdirectory each).
    type: path
  campaign_id:
    description: Name of the campaign directory to create when none is resumable.
    type: str
  campaign_dir:
    description: An existing campaign directory (for O(state=status) and O(state=stopped)).
    type: path
  resume:
    description: Re-attach to an unfinished campaign under O(root) instead of starting a new one.
    type: bool
    default: true
  spec:
    description:
      - What to run; keys nexp, code_dir, config_file, runtime (docker, podman or none), image,
        container_name, container_flags, mounts (host paths may use {DATADIR}-style fields of
        O(env) and {LOGDIR}), clear_caches, stop_on_failure, benchmark, system.
    type: dict
  env:
    description: Environment for the runs (DATADIR, CONT, MODEL, secrets, ...); LOGDIR is set to
      the campaign directory. Stored 0600 in the campaign directory, never returned.
    type: dict
    default: {}
  runner_script:
    description: Path of campaign.py on the node (the detached runner).
    type: path
  python:
    description: Interpreter that runs the runner.
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Start or re-attach to the campaign
  mlperf_campaign:
    root: /data/results/llama31_8b/MI355X_1x8x1
    campaign_id: 20261128T120000-1a2b
    spec: "{{ campaign_spec }}"
    env: {DATADIR: /data/mlperf_llama31_8b/data, CONT: "rocm/amd-mlperf:llama31_8b_training_6.0"}
    runner_script: /opt/mlperf-repro/bin/mlperf_campaign.py
  register: campaign
"""

RETURN = r"""
campaign_dir:
  description: The campaign directory (the run's LOGDIR).
  returned: always
  type: str
action:
  description: started (new campaign), resumed (runner restarted), attached (runner alive) or none.
  returned: always
  type: str
status:
  description: pending, running, complete, stopped, failed or interrupted.
  returned: always
  type: str
runs:
  description: One record per run (index, status, seed, rc, log, started, finished).
  returned: always
  type: list
  elements: dict
done:
  description: Number of runs that have finished.
  returned: always
  type: int
commands:
  description: In check mode, the shell commands the campaign would run (no secret values).
  returned: check mode, when a campaign would start or resume
  type: list
  elements: str
"""

import os
import random

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.campaign import (find_resumable, new_state, planned_commands,
                                               prepare, read_json, start_detached, stop, summarize)
except ImportError:  # running from a source checkout (tests)
    from mlperf_repro.node.campaign import (find_resumable, new_state, planned_commands, prepare,
                                            read_json, start_detached, stop, summarize)

SPEC_REQUIRED = ("nexp", "code_dir", "config_file", "runtime")


def public(state):
    keys = ("campaign_id", "campaign_dir", "status", "runs", "done", "nexp", "counts",
            "runner_alive", "started", "finished", "error")
    return {k: state.get(k) for k in keys}


def fail_on_spec(module, spec):
    for key in SPEC_REQUIRED:
        if key not in spec:
            module.fail_json(msg="spec.%s is required (got keys %s)" % (key, sorted(spec)))
    try:
        nexp = int(spec["nexp"])
    except (TypeError, ValueError):
        module.fail_json(msg="spec.nexp: expected a positive integer, got %r" % (spec["nexp"],))
    if nexp < 1:
        module.fail_json(msg="spec.nexp: expected a positive integer, got %r" % (spec["nexp"],))
    if spec["runtime"] not in ("docker", "podman", "none"):
        module.fail_json(msg="spec.runtime: expected docker, podman or none, got %r" % spec["runtime"])


def started(module):
    params = module.params
    for key in ("root", "campaign_id", "spec", "runner_script"):
        if not params[key]:
            module.fail_json(msg="%s is required with state=started" % key)
    existing = find_resumable(params["root"]) if params["resume"] else None
    if existing:
        state = summarize(existing)
        if state["runner_alive"] or state["status"] == "complete":
            module.exit_json(changed=False, action="attached", **public(state))
        if module.check_mode:
            spec = read_json(os.path.join(existing, "campaign.json"), {})
            todo = [r["index"] for r in state["runs"] if r["status"] in ("pending", "running")]
            module.exit_json(changed=True, action="resumed", **public(state),
                             commands=planned_commands(spec, existing, todo, params["env"]))
        start_detached(existing, params["runner_script"], params["python"])
        module.exit_json(changed=True, action="resumed", **public(summarize(existing)))

    spec = dict(params["spec"])
    fail_on_spec(module, spec)
    campaign_dir = os.path.join(params["root"], params["campaign_id"])
    if os.path.exists(campaign_dir):
        module.fail_json(msg="%s already exists: campaigns never overwrite each other; "
                             "choose another campaign_id" % campaign_dir)
    spec["nexp"] = int(spec["nexp"])
    spec["campaign_id"] = params["campaign_id"]
    spec.setdefault("root_seed", random.SystemRandom().randrange(1, 2 ** 31))
    env = {k: str(v) for k, v in (params["env"] or {}).items()}
    env["LOGDIR"] = campaign_dir
    fields = dict(env)
    try:
        spec["mounts"] = [{"host": m["host"].format_map(fields), "container": m["container"]}
                          for m in spec.get("mounts", [])]
    except KeyError as exc:
        module.fail_json(msg="spec.mounts refers to %s, which env does not set" % exc)
    if module.check_mode:
        state = new_state(spec)
        state.update(campaign_dir=campaign_dir, done=0, counts={"pending": spec["nexp"]})
        module.exit_json(changed=True, action="started", **public(state),
                         commands=planned_commands(spec, campaign_dir, env=params["env"]))
    prepare(campaign_dir, spec, env)
    start_detached(campaign_dir, params["runner_script"], params["python"])
    module.exit_json(changed=True, action="started", **public(summarize(campaign_dir)))


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["started", "status", "stopped"], "default": "started"},
            "root": {"type": "path"},
            "campaign_id": {"type": "str"},
            "campaign_dir": {"type": "path"},
            "resume": {"type": "bool", "default": True},
            "spec": {"type": "dict"},
            "env": {"type": "dict", "default": {}, "no_log": True},
            "runner_script": {"type": "path"},
            "python": {"type": "path"},
        },
        required_if=[("state", "status", ["campaign_dir"]), ("state", "stopped", ["campaign_dir"])],
        supports_check_mode=True,
    )
    state = module.params["state"]
    if state == "started":
        started(module)
    directory = module.params["campaign_dir"]
    if not os.path.isfile(os.path.join(directory, "campaign.json")):
        module.fail_json(msg="%s is not a campaign directory (no campaign.json)" % directory)
    if state == "stopped":
        changed = False if module.check_mode else stop(directory)
        module.exit_json(changed=changed, action="stopped" if changed else "none",
                         **public(summarize(directory)))
    module.exit_json(changed=False, action="none", **public(summarize(directory)))


if __name__ == "__main__":
    main()
