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
  - A run still alive from a runner that died (an orphan) is adopted by the resumed runner, which
    waits for it and records its result: two runs never run at once. A campaign is not started
    while another campaign under O(root) has a live runner or run.
options:
  state:
    description: What to do.
    type: str
    choices: [started, status, stopped]
    default: started
  root:
    description: Directory holding this benchmark/system's campaigns (one subdirectory each).
    type: path
  node_root:
    description:
      - The node's root of all campaigns (O(node_root)/BENCHMARK/SYSTEM/CAMPAIGN). A campaign
        still running anywhere below it (another benchmark or system) stops a new start: a node
        runs one campaign at a time. Without it, only O(root) is searched.
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
      - nexp is a whole number from 1 to 1000.
    type: dict
  env:
    description:
      - Environment for the runs (DATADIR, CONT, MODEL, ...); LOGDIR is set to the campaign
        directory. Not secret (paths and names show in results as they are): secrets go in
        O(secret_env).
    type: dict
    default: {}
  secret_env:
    description:
      - Secret environment for the runs (HF_TOKEN, ...). Stored with O(env) in the campaign's
        env.json (mode 0600), never returned, logged or written anywhere else.
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
    secret_env: {HF_TOKEN: "{{ vault_hf_token }}"}
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
error:
  description: Why the campaign failed or was interrupted (the cause and the path), when it did.
  returned: when there is one
  type: str
orphans:
  description: Runs still alive without their runner (adopted when the campaign is resumed).
  returned: when there are some
  type: list
  elements: int
commands:
  description: In check mode, the shell commands the campaign would run (no secret values).
  returned: check mode, when a campaign would start or resume
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.campaign import CampaignError, manage
from ansible.module_utils.module_adapter import finish


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["started", "status", "stopped"], "default": "started"},
            "root": {"type": "path"},
            "node_root": {"type": "path"},
            "campaign_id": {"type": "str"},
            "campaign_dir": {"type": "path"},
            "resume": {"type": "bool", "default": True},
            "spec": {"type": "dict"},
            "env": {"type": "dict", "default": {}},
            "secret_env": {"type": "dict", "default": {}, "no_log": True},
            "runner_script": {"type": "path"},
            "python": {"type": "path"},
        },
        required_if=[("state", "status", ["campaign_dir"]), ("state", "stopped", ["campaign_dir"])],
        supports_check_mode=True,
    )
    # Never the bare "Module failed.": finish says what broke, in words.
    finish(module, "mlperf_campaign", (CampaignError,), manage,
           check_mode=module.check_mode, **module.params)


if __name__ == "__main__":
    main()
