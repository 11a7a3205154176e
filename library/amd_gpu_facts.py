#!/usr/bin/python
# -*- coding: utf-8 -*-
# Apache-2.0 (see pyproject.toml)
"""Ansible module: AMD Instinct GPU / ROCm facts.  Thin adapter over mlperf_repro/node/gpu_facts.py."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: amd_gpu_facts
short_description: Gather AMD Instinct GPU, ROCm and amdgpu driver facts
description:
  - Runs C(amd-smi static --json) first, then C(rocm-smi --showproductname --showid --showmeminfo vram
    --showdriverversion --json), then C(lspci -d 1002:<id>) for each known Instinct device ID, and
    reads the ROCm version (C(amd-smi version), else C(/opt/rocm/.info/version)) and the amdgpu
    driver version (C(/sys/module/amdgpu/version), which only the DKMS driver has).
    C(rocminfo) fills the gfx target when the inventory did not report it; C(dkms status) lists
    installed amdgpu DKMS packages.
  - Commands that are not installed are recorded in C(missing_commands), never fatal; a host with
    no GPU returns C(gpu_count=0). The module never fails a host for what it finds; it lists
    C(problems) against the expectations given and leaves the decision to the caller (preflight).
  - Read-only. Parsing lives in C(mlperf_repro/node/gpu_facts.py), shipped as
    C(ansible.module_utils.gpu_facts) (C(module_utils) in C(ansible.cfg)).
version_added: "0.1.0"
author:
  - mlperf-repro
options:
  expected_count:
    description:
      - Number of GPUs the host should expose. A different C(gpu_count) is listed in C(problems).
    type: int
  expected_model:
    description:
      - Product the host should carry, for example C(MI355X), C(MI350X) or C(MI325X)
        (C(AMD Instinct MI355X) is accepted too). A different, mixed or unknown model is a problem.
    type: str
  min_rocm_version:
    description:
      - Oldest acceptable ROCm version, for example C(7.2.2). Quote it in YAML (C(7.10) as a
        number is C(7.1)). A malformed value fails the task.
    type: str
  rocm_pending:
    description:
      - ROCm is about to be installed on this host (the same run provisions it), so GPUs seen only
        on the PCI bus are expected and not listed in C(problems). Count and model are still
        checked against what C(lspci) sees.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Only runs read-only commands; the same facts are returned in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  facts:
    support: full
    description: Returns C(ansible_facts.amd_gpu).
  platform:
    platforms: posix
    description: Linux nodes with (or about to get) AMD Instinct GPUs.
notes:
  - C(amd-smi), C(rocm-smi) and C(rocminfo) are also looked for in C(/opt/rocm/bin), which is often
    not on the C(PATH) of a non-login SSH session.
  - Use the task keyword C(timeout) to bound a hung C(amd-smi) on a sick node.
"""

EXAMPLES = r"""
- name: Gather GPU facts and check them against the MI355X reference system
  amd_gpu_facts:
    expected_count: 8
    expected_model: MI355X
    min_rocm_version: "7.2.2"
  register: gpu

- name: Stop when preflight finds a problem
  ansible.builtin.assert:
    that: gpu.problems | length == 0
    fail_msg: "{{ gpu.problems | join('; ') }}"

- name: Use the facts
  ansible.builtin.debug:
    msg: "{{ ansible_facts.amd_gpu.gpu_count }} x {{ ansible_facts.amd_gpu.model }} ({{ ansible_facts.amd_gpu.gfx_target }}), ROCm {{ ansible_facts.amd_gpu.rocm_version }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts to add to ansible_facts.
  returned: always
  type: complex
  contains:
    amd_gpu:
      description: The normalized GPU / ROCm record.
      returned: always
      type: dict
      contains:
        gpu_count:
          description: Logical GPUs reported by C(source) (partition modes multiply them); 0 when none.
          type: int
          sample: 8
        physical_count:
          description: Distinct PCI devices among those GPUs (from their BDFs), null when BDFs are unknown.
          type: int
          sample: 8
        pci_count:
          description: AMD Instinct devices C(lspci) sees on the bus, null when C(lspci) is missing.
          type: int
          sample: 8
        model:
          description: Product (C(MI300X), C(MI325X), C(MI350X), C(MI355X), ...), null when unknown or mixed.
          type: str
          sample: MI355X
        models:
          description: Distinct products seen.
          type: list
          elements: str
        device_id:
          description: PCI device ID shared by all GPUs, for example C(0x75a3).
          type: str
        gfx_target:
          description: LLVM target (C(gfx942), C(gfx950)), reported by a tool or inferred from the model.
          type: str
          sample: gfx950
        gfx_target_inferred:
          description: True when C(gfx_target) comes from the model table, not from a tool.
          type: bool
        vram_mib_per_gpu:
          description: Smallest VRAM size among the GPUs, in MiB.
          type: int
          sample: 196592
        xgmi:
          description: True when XGMI is visible (amd-smi C(XGMI_PLPD)); null when not visible (never false).
          type: bool
        compute_partition:
          description: Compute partition mode shared by all GPUs (C(SPX), C(CPX), ...), when reported.
          type: str
        memory_partition:
          description: Memory partition mode shared by all GPUs (C(NPS1), ...), when reported.
          type: str
        rocm_version:
          description: ROCm version (build suffix dropped).
          type: str
          sample: 7.2.2
        driver_version:
          description: Loaded amdgpu driver version; null with the kernel's inbox driver.
          type: str
          sample: 6.12.12
        driver_kind:
          description: C(dkms), C(inbox), C(not loaded), or null when C(/sys) could not be read.
          type: str
        inbox_kernel:
          description: Kernel release amd-smi reports in place of the driver version with the inbox driver.
          type: str
        driver_dkms_installed:
          description: amdgpu versions that C(dkms status) lists (installed, not necessarily loaded).
          type: list
          elements: str
        source:
          description: Where the GPU list came from (C(amd-smi), C(amd-smi list), C(rocm-smi), C(lspci)), null if nowhere.
          type: str
        sources:
          description: Source of each derived field (gpus, model, gfx_target, rocm_version, driver_version).
          type: dict
        commands:
          description: Each command run and its exit status (or C(missing)).
          type: dict
        missing_commands:
          description: Tools that are not installed.
          type: list
          elements: str
        errors:
          description: Commands that ran but gave unusable output.
          type: list
          elements: str
        gpus:
          description: Per-GPU entries (index, model, name, device_id, vf, gfx_target, bdf, uuid, vram_mib, partitions, driver_version, board_name, xgmi).
          type: list
          elements: dict
problems:
  description: Human-readable mismatches against the options (empty when all hold).
  returned: always
  type: list
  elements: str
  sample: ["expected 8 GPUs, found 0 (source: none; not installed: amd-smi, rocm-smi, lspci, dkms)"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.gpu_facts import (check_expectations, collect, evaluate,
                                            module_runner)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            expected_count=dict(type="int"),
            expected_model=dict(type="str"),
            min_rocm_version=dict(type="str"),
            rocm_pending=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:  # caller mistakes fail before anything runs
        check_expectations(params["min_rocm_version"])
    except ValueError as exc:
        module.fail_json(msg="invalid option: %s" % exc)
    record = collect(module_runner(module))
    problems = evaluate(record, expected_count=params["expected_count"],
                        expected_model=params["expected_model"],
                        min_rocm_version=params["min_rocm_version"],
                        rocm_pending=params["rocm_pending"])
    module.exit_json(changed=False, ansible_facts={"amd_gpu": record}, problems=problems)


if __name__ == "__main__":
    main()
