#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see pyproject.toml)
"""Ansible module: NVIDIA GPU and driver facts.  Thin adapter over mlperf_repro/node/nvidia_facts.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nvidia_gpu_facts
short_description: Gather NVIDIA GPU and driver facts from nvidia-smi -q -x
description:
  - Runs C(nvidia-smi -q -x) and reads the driver and CUDA versions and, per GPU, the product, PCI
    device ID, memory, ECC mode and error counts, retired pages, remapped rows, MIG mode, persistence
    mode, NVLink fabric state, PCIe link (current and maximum), clocks, temperature and power.
  - A missing C(nvidia-smi) is recorded in C(missing_commands), a failing one in C(errors); never
    fatal. The module never fails a host for what it finds; it lists C(problems) against the
    expectations given and leaves the decision to the caller (preflight, the nvidia_driver role).
  - Read-only. Parsing lives in C(mlperf_repro/node/nvidia_facts.py), shipped as
    C(ansible.module_utils.nvidia_facts) (C(module_utils) in C(ansible.cfg)).
version_added: "0.1.0"
author:
  - mlperf-repro
options:
  expected_count:
    description: Number of GPUs the host should expose; a different count is a problem.
    type: int
  expected_model:
    description: Product the host should carry (C(H200), C(B200), C(H100); C(NVIDIA H200) is accepted too).
    type: str
  min_driver_version:
    description: Oldest acceptable driver, for example C("570") or C("570.133.20"). Quote it in YAML.
    type: str
  min_memory_mib:
    description: Least memory each GPU must report, in MiB.
    type: int
  require_persistence:
    description: Persistence mode off is a problem.
    type: bool
    default: true
  require_ecc:
    description: ECC disabled is a problem (not supported is not).
    type: bool
    default: true
  allow_mig:
    description: MIG enabled is not a problem.
    type: bool
    default: false
  pci_models:
    description:
      - PCI device ID to product, for example C(0x2335) to C(H200) (the platform definition's table);
        it takes precedence over the product name the tool reports.
    type: dict
  driver_pending:
    description: The driver is about to be installed in this run; a missing C(nvidia-smi) is no problem.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Only runs C(nvidia-smi -q -x); the same facts are returned in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  facts:
    support: full
    description: Returns C(ansible_facts.nvidia_gpu).
  platform:
    platforms: posix
    description: Linux nodes with (or about to get) NVIDIA GPUs.
notes:
  - Use the task keyword C(timeout) to bound a hung C(nvidia-smi) on a sick node.
"""

EXAMPLES = r"""
- name: Gather GPU facts and check them against an 8 x H200 node
  nvidia_gpu_facts:
    expected_count: 8
    expected_model: H200
    min_driver_version: "570"
    min_memory_mib: 140000
  register: gpu

- name: Stop when preflight finds a problem
  ansible.builtin.assert:
    that: gpu.problems | length == 0
    fail_msg: "{{ gpu.problems | join('; ') }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    nvidia_gpu:
      description: The normalized GPU record (the keys AMD's record shares mean the same).
      returned: always
      type: dict
      contains:
        gpu_count:
          description: GPUs nvidia-smi describes; 0 when none.
          type: int
          sample: 8
        attached_gpus:
          description: GPUs nvidia-smi says are attached (its own count).
          type: int
        model:
          description: Product (C(H100), C(H200), C(A100), ...), null when unknown or mixed.
          type: str
          sample: H200
        models:
          description: Distinct products seen.
          type: list
          elements: str
        device_id:
          description: PCI device ID shared by all GPUs, for example C(0x2335).
          type: str
        vram_mib_per_gpu:
          description: Smallest memory size among the GPUs, in MiB.
          type: int
          sample: 143771
        driver_version:
          description: NVIDIA driver version.
          type: str
          sample: 570.133.20
        cuda_version:
          description: Highest CUDA version the driver supports.
          type: str
        persistence_mode:
          description: C(Enabled), C(Disabled) or C(mixed) over the GPUs; null when not reported.
          type: str
        mig_enabled:
          description: True when any GPU has MIG enabled; null when not supported.
          type: bool
        ecc_enabled:
          description: True when any GPU has ECC enabled; null when not supported.
          type: bool
        fabric_state:
          description: NVLink fabric state (C(Completed) on a ready NVSwitch system), null when not reported.
          type: str
        source:
          description: C(nvidia-smi -q -x) when GPUs were read, else null.
          type: str
        commands:
          description: Each command run and its exit status (or C(missing)).
          type: dict
        missing_commands:
          description: Tools that are not installed.
          type: list
          elements: str
        errors:
          description: Commands that failed or gave unusable output.
          type: list
          elements: str
        notes:
          description: Worth knowing but no fault (an idle GPU's slower PCIe link, lifetime ECC counts).
          type: list
          elements: str
        gpus:
          description: Per-GPU entries (index, bus_id, name, model, architecture, device_id, sub_system_id,
            uuid, serial, vbios_version, memory_mib, memory_used_mib, persistence_mode, mig_mode,
            mig_mode_pending, mig_devices, ecc_mode, ecc_mode_pending, ecc_errors, retired_pages,
            remapped_rows, reset_required, recovery_action, pcie, fabric, performance_state, temperature_c,
            memory_temperature_c, power_draw_w, power_limit_w, clocks_mhz).
          type: list
          elements: dict
problems:
  description: Human-readable faults against the options (empty when all hold).
  returned: always
  type: list
  elements: str
  sample: ["GPU 3 (00000000:5D:00.0): row remapping pending (4 uncorrectable rows): reset the GPU or reboot the node before a run"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.module_adapter import finish
from ansible.module_utils.nvidia_facts import gather, module_runner


def main():
    module = AnsibleModule(
        argument_spec=dict(
            expected_count=dict(type="int"),
            expected_model=dict(type="str"),
            min_driver_version=dict(type="str"),
            min_memory_mib=dict(type="int"),
            require_persistence=dict(type="bool", default=True),
            require_ecc=dict(type="bool", default=True),
            allow_mig=dict(type="bool", default=False),
            pci_models=dict(type="dict"),
            driver_pending=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    finish(module, "nvidia_gpu_facts", (ValueError,), gather, module_runner(module), **module.params)


if __name__ == "__main__":
    main()
