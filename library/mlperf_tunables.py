#!/usr/bin/python
"""Ansible module: AMD's runtime tunables, with apply, check and reset."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_tunables
short_description: Apply, check or reset AMD's runtime tunables (runtime_tunables.sh)
description:
  - The settings of AMD's C(runtime_tunables.sh) - CPU governor performance, deep C-state
    (idle state 2) disabled, NMI watchdog, NUMA balancing and ASLR off, transparent huge pages
    C(always) (enabled and defrag), amdgpu loaded - as states rather than a script.
  - C(apply) records what was there before the first apply, then sets them; C(reset) restores
    that record; C(check) only reports drift (as a warning, or a failure with O(fail_on_drift)).
    In check mode C(apply) and C(reset) report what would change.
  - With O(persistent), C(apply) also writes the three kernel settings to a sysctl.d file so
    that they survive a reboot (THP and the CPU governor stay runtime-only); C(reset) removes
    that file.
options:
  mode:
    description: What to do.
    type: str
    choices: [apply, check, reset]
    default: apply
  state_file:
    description: Where the values found before the first apply are recorded on the node.
    type: path
    default: /var/lib/mlperf-repro/tunables-before.json
  drop_caches:
    description: Also drop the page cache (an action, reported as a change), as the script does.
    type: bool
    default: false
  use_commands:
    description: Use cpupower and modprobe (true) or write the /sys files directly (false).
    type: bool
    default: true
  root:
    description: Prefix for /proc and /sys paths (tests only).
    type: path
    default: /
  persistent:
    description: With C(apply), keep the kernel settings across reboots in O(sysctl_file).
    type: bool
    default: false
  sysctl_file:
    description: The sysctl.d file O(persistent) writes and C(reset) removes.
    type: path
    default: /etc/sysctl.d/90-mlperf-repro.conf
  fail_on_drift:
    description: With C(check), fail when any setting differs from AMD's value.
    type: bool
    default: false
  node_name:
    description: How warnings and failures name this node (the inventory name; the console does not say which host warned).
    type: str
    default: this node
  actions:
    description:
      - AMD's steps 1 and 3 to do at a campaign's start, after the settings, with C(apply) or
        C(check) - C(drop_caches), the initial C(sync; echo 3 > /proc/sys/vm/drop_caches), and
        C(rocm_agent_enumerator), a probe recording the gfx targets it lists.
      - They are actions, not states - returned in RV(actions), never a change - and are not done
        in check mode. A missing C(rocm_agent_enumerator), or one listing no GPU agent, fails,
        naming the node; where O(gpu) is C(none) or C(any) the probe is not done.
    type: list
    elements: str
    choices: [drop_caches, rocm_agent_enumerator]
    default: []
  gpu:
    description: The catalog's GPU of the platform (C(MI355X), ...); C(none) or C(any) needs no GPU agent.
    type: str
    default: any
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Apply AMD's tunables, the kernel settings persistent across reboots
  mlperf_tunables:
    mode: apply
    persistent: true

- name: Fail where a node drifted from AMD's values
  mlperf_tunables:
    mode: check
    fail_on_drift: true
"""

RETURN = r"""
before:
  description: Values before this call.
  returned: always
  type: dict
after:
  description: Values after this call (in check mode, the values it would set).
  returned: always
  type: dict
drift:
  description: Settings that differ from AMD's values (current and wanted).
  returned: always
  type: dict
sysctl_file_changed:
  description: Whether O(sysctl_file) was (or in check mode would be) written or removed.
  returned: always
  type: bool
actions:
  description: One record per action of O(actions) (name, done, and gfx for rocm_agent_enumerator).
  returned: always
  type: list
  elements: dict
gfx_targets:
  description: The GPU targets rocm_agent_enumerator listed (empty when it was not run).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.module_adapter import finish
from ansible.module_utils.tunables import TunablesError, ensure


def main():
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["apply", "check", "reset"], "default": "apply"},
            "state_file": {"type": "path", "default": "/var/lib/mlperf-repro/tunables-before.json"},
            "drop_caches": {"type": "bool", "default": False},
            "use_commands": {"type": "bool", "default": True},
            "root": {"type": "path", "default": "/"},
            "persistent": {"type": "bool", "default": False},
            "sysctl_file": {"type": "path", "default": "/etc/sysctl.d/90-mlperf-repro.conf"},
            "fail_on_drift": {"type": "bool", "default": False},
            "node_name": {"type": "str", "default": "this node"},
            "actions": {"type": "list", "elements": "str", "default": [],
                        "choices": ["drop_caches", "rocm_agent_enumerator"]},
            "gpu": {"type": "str", "default": "any"},
        },
        supports_check_mode=True,
    )
    finish(module, "mlperf_tunables", (TunablesError,), ensure,
           check_mode=module.check_mode, **module.params)


if __name__ == "__main__":
    main()
