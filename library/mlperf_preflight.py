#!/usr/bin/python
"""Ansible module: every preflight probe of a node in one call (read-only)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_preflight
short_description: Probe a node for an MLPerf reproduction, changing nothing
description:
  - Collects OS, kernel, Python, free disk space (and the filesystem) under each given path,
    required commands, container runtime usability and running containers, and passwordless
    sudo, in one module call.
  - Returns every problem found as a list of sentences; it never fails the host itself, so
    preflight can report all problems of all nodes at once.
options:
  paths:
    description: Paths to check, each with a label and the free space needed in GiB.
    type: list
    elements: dict
    default: []
  commands:
    description: Commands that must be on PATH.
    type: list
    elements: str
    default: []
  container_runtime:
    description: Container runtime the benchmark will use.
    type: str
    choices: [docker, podman, none]
    default: none
  need_sudo:
    description: Check for passwordless sudo (AMD's tunables and cache drops need it).
    type: bool
    default: false
  allow_running_containers:
    description: Do not report other running containers as a problem.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Probe the node
  mlperf_preflight:
    paths:
      - {label: DATADIR, path: /data/mlperf_llama2, need_gb: 270}
    commands: [cpupower]
    container_runtime: docker
    need_sudo: true
  register: probe
"""

RETURN = r"""
node:
  description: What was found (hostname, python, kernel, os, disks, commands, container, sudo).
  returned: always
  type: dict
problems:
  description: Every problem found, one sentence each.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.preflight import probe
except ImportError:  # running from a source checkout (tests)
    from mlperf_repro.node.preflight import probe


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "dict", "default": []},
            "commands": {"type": "list", "elements": "str", "default": []},
            "container_runtime": {"type": "str", "choices": ["docker", "podman", "none"],
                                  "default": "none"},
            "need_sudo": {"type": "bool", "default": False},
            "allow_running_containers": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    for index, item in enumerate(module.params["paths"]):
        if not item.get("path") or not item.get("label"):
            module.fail_json(msg="paths[%d]: expected {label, path, need_gb}, got %r" % (index, item))

    def run(argv):
        return module.run_command(argv)

    facts, problems = probe(
        module.params["paths"], module.params["commands"], module.params["container_runtime"],
        module.params["need_sudo"], module.params["allow_running_containers"], run=run)
    module.exit_json(changed=False, node=facts, problems=problems)


if __name__ == "__main__":
    main()
