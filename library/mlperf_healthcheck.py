#!/usr/bin/python
"""Ansible module: measure a node's health, or an all-reduce across nodes (changes nothing)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_healthcheck
short_description: Measure a node (GEMM, memory, GPU copies, all-reduce) or a set of nodes, changing nothing
description:
  - With O(mode=node), runs the health-check script (mlperf_repro/node/healthcheck.py, copied to
    the node by the healthcheck role) on the host or inside the benchmark image, and returns its
    figures (name, value, unit, details).
  - With O(mode=allreduce), runs an all-reduce across O(hosts) with OpenMPI and mpi4py (one rank
    per host; C(mpirun) over ssh, or inside a Slurm allocation with O(slurm)) and returns its
    bus bandwidth as one figure. A collective that fails is returned as a figure without a value
    and its error, not as a module failure, so the stage can name the node.
  - In check mode nothing is measured (the run would load the node's GPUs for minutes).
options:
  mode:
    description: What to measure.
    type: str
    choices: [node, allreduce]
    default: node
  script:
    description: Path of the health-check script on the node.
    type: path
    required: true
  python:
    description: Python interpreter that runs the script (on the host; inside an image, O(container_python)).
    type: str
    default: python3
  backend:
    description: Measurement backend (auto picks torch when it imports, else cpu).
    type: str
    choices: [auto, cpu, torch]
    default: auto
  options:
    description: Sizes and repeats (repeats, gemm_n, matmul_n, copy_mb, allreduce_mb, allreduce_ranks, device, tools).
    type: dict
    default: {}
  runtime:
    description: Container runtime to measure inside the benchmark image with; none runs on the host.
    type: str
    choices: [docker, podman, none]
    default: none
  image:
    description: The benchmark image (with O(runtime) docker or podman).
    type: str
    default: ""
  container_flags:
    description: Options of the container run (devices, network), one argument each.
    type: list
    elements: str
    default: []
  container_python:
    description: Python inside the image.
    type: str
    default: python3
  hosts:
    description: With O(mode=allreduce), the hosts (names or addresses mpirun reaches), one rank each.
    type: list
    elements: str
    default: []
  label:
    description: Inventory names of O(hosts), returned in the figure's details as C(pair).
    type: list
    elements: str
    default: []
  figure:
    description: Name of the returned all-reduce figure.
    type: str
    default: pair_allreduce_busbw_gbps
  bytes:
    description: All-reduce message size per rank, in bytes.
    type: int
    default: 67108864
  iters:
    description: Timed all-reduce iterations (the figure uses their median).
    type: int
    default: 10
  mpirun:
    description: The mpirun command.
    type: str
    default: mpirun
  mca:
    description: OpenMPI MCA parameters (name -> value), e.g. plm_rsh_args for the ssh options between nodes.
    type: dict
    default: {}
  mpirun_args:
    description: Further mpirun arguments, one each.
    type: list
    elements: str
    default: []
  slurm:
    description: Run inside a Slurm allocation (salloc) instead of over ssh; keys partition, time, extra (list).
    type: dict
  timeout:
    description: Seconds the measurement may take.
    type: int
    default: 1800
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Measure the node inside the benchmark image
  mlperf_healthcheck:
    script: /opt/mlperf/healthcheck/healthcheck.py
    backend: torch
    runtime: docker
    image: registry.example.org/mlperf/llama2_70b_lora:v6.0
    container_flags: [--net=host, --ipc=host]

- name: All-reduce between two nodes
  mlperf_healthcheck:
    mode: allreduce
    script: /opt/mlperf/healthcheck/healthcheck.py
    python: /usr/bin/python3
    hosts: [10.0.0.11, 10.0.0.12]
    label: [node1, node2]
"""

RETURN = r"""
result:
  description: O(mode=node) - the measurement (backend, host, figures, seconds), or null in check mode.
  returned: always
  type: dict
figure:
  description: O(mode=allreduce) - the all-reduce figure (value null and details.error when it failed).
  returned: when O(mode=allreduce)
  type: dict
command:
  description: The command that ran, as a list of arguments.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.campaign import RUNTIMES
from ansible.module_utils.healthcheck import BACKENDS, HealthcheckError, module_run
from ansible.module_utils.module_adapter import finish


def main():
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["node", "allreduce"], "default": "node"},
            "script": {"type": "path", "required": True},
            "python": {"type": "str", "default": "python3"},
            "backend": {"type": "str", "choices": list(BACKENDS), "default": "auto"},
            "options": {"type": "dict", "default": {}},
            "runtime": {"type": "str", "choices": list(RUNTIMES), "default": "none"},
            "image": {"type": "str", "default": ""},
            "container_flags": {"type": "list", "elements": "str", "default": []},
            "container_python": {"type": "str", "default": "python3"},
            "hosts": {"type": "list", "elements": "str", "default": []},
            "label": {"type": "list", "elements": "str", "default": []},
            "figure": {"type": "str", "default": "pair_allreduce_busbw_gbps"},
            "bytes": {"type": "int", "default": 64 * 1024 * 1024},
            "iters": {"type": "int", "default": 10},
            "mpirun": {"type": "str", "default": "mpirun"},
            "mca": {"type": "dict", "default": {}},
            "mpirun_args": {"type": "list", "elements": "str", "default": []},
            "slurm": {"type": "dict"},
            "timeout": {"type": "int", "default": 1800},
        },
        supports_check_mode=True,
    )

    def run(argv, timeout=None):
        return module.run_command(argv)

    finish(module, "mlperf_healthcheck", (HealthcheckError,), module_run, module.params, run,
           module.check_mode)


if __name__ == "__main__":
    main()
