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
  gpus:
    description:
      - Also read the GPUs and their driver stack through the platform's GPU facts source and
        check them; omit on CPU-only platforms.
    type: dict
    suboptions:
      source:
        description:
          - The platform's GPU facts source (C(gpu_facts_module) in mlperf_repro/platforms.yml);
            each reads its own checks below (node/gpu_sources.py).
        type: str
        default: amd_gpu_facts
      expected_count:
        description: GPUs the node must have.
        type: int
      expected_model:
        description: GPU model the node must have (MI325X, MI350X, MI355X).
        type: str
      min_rocm_version:
        description: Lowest ROCm version accepted.
        type: str
      rocm_pending:
        description: ROCm is installed later in this run, so a missing or old one is not a problem.
        type: bool
        default: false
      min_driver_version:
        description: Lowest driver version accepted (the platform's driver version check).
        type: str
      min_memory_mib:
        description: Least memory each GPU must report, in MiB.
        type: int
      pci_models:
        description: PCI device ID to product (the platform's C(pci_ids)).
        type: dict
      driver_pending:
        description: The driver stack is installed later in this run, so a missing or old one is not a problem.
        type: bool
        default: false
  deferred:
    description: Checks this run leaves to a later stage (e.g. C(rocm), C(docker)); returned as given, for the report.
    type: list
    elements: str
    default: []
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
    gpus: {expected_count: 8, expected_model: MI355X, min_rocm_version: 7.2.2}
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
gpus:
  description: The record the platform's GPU facts module returns (count, model, memory, driver and more); null without O(gpus).
  returned: always
  type: dict
ansible_facts:
  description: That module's fact (named by the platform definition), the same as RV(gpus), when O(gpus) is given.
  returned: when O(gpus) is given
  type: dict
deferred:
  description: O(deferred), as given.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.gpu_sources import GpuSourceError, check, gather, module_runner
from ansible.module_utils.preflight import probe
from ansible.module_utils.campaign import RUNTIMES


def main():
    module = AnsibleModule(
        argument_spec={
            "paths": {"type": "list", "elements": "dict", "default": []},
            "commands": {"type": "list", "elements": "str", "default": []},
            "container_runtime": {"type": "str", "choices": list(RUNTIMES),
                                  "default": "none"},
            "need_sudo": {"type": "bool", "default": False},
            "allow_running_containers": {"type": "bool", "default": False},
            "gpus": {"type": "dict", "options": {
                "source": {"type": "str", "default": "amd_gpu_facts"},
                "expected_count": {"type": "int"},
                "expected_model": {"type": "str"},
                "min_rocm_version": {"type": "str"},
                "rocm_pending": {"type": "bool", "default": False},
                "min_driver_version": {"type": "str"},
                "min_memory_mib": {"type": "int"},
                "pci_models": {"type": "dict"},
                "driver_pending": {"type": "bool", "default": False},
            }},
            "deferred": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    gpus = module.params["gpus"]
    try:  # caller mistakes fail before anything runs
        if gpus is not None:
            check(gpus["source"], gpus)
    except GpuSourceError as exc:
        module.fail_json(msg=str(exc))
    for index, item in enumerate(module.params["paths"]):
        if not item.get("path") or not item.get("label"):
            module.fail_json(msg="paths[%d]: expected {label, path, need_gb}, got %r" % (index, item))

    def run(argv):
        return module.run_command(argv)

    facts, problems = probe(
        module.params["paths"], module.params["commands"], module.params["container_runtime"],
        module.params["need_sudo"], module.params["allow_running_containers"], run=run)
    if gpus is None:
        module.exit_json(changed=False, node=facts, problems=problems, gpus=None,
                         deferred=module.params["deferred"])
    fact, record, gpu_problems = gather(gpus["source"], gpus, module_runner(module))
    module.exit_json(changed=False, node=facts, problems=problems + gpu_problems, gpus=record,
                     ansible_facts={fact: record}, deferred=module.params["deferred"])


if __name__ == "__main__":
    main()
