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
    that record; C(check) only reports drift. In check mode C(apply) and C(reset) report what
    would change.
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
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Apply AMD's tunables
  mlperf_tunables:
    mode: apply
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
"""

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.tunables import (drift, drop_caches, load_before, read_state,
                                               save_before, set_values, wanted)
except ImportError:  # running from a source checkout (tests)
    from mlperf_repro.node.tunables import (drift, drop_caches, load_before, read_state,
                                            save_before, set_values, wanted)


def main():
    module = AnsibleModule(
        argument_spec={
            "mode": {"type": "str", "choices": ["apply", "check", "reset"], "default": "apply"},
            "state_file": {"type": "path", "default": "/var/lib/mlperf-repro/tunables-before.json"},
            "drop_caches": {"type": "bool", "default": False},
            "use_commands": {"type": "bool", "default": True},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    params = module.params
    before = read_state(params["root"])
    current_drift = drift(before)
    if params["mode"] == "check":
        module.exit_json(changed=False, before=before, after=before, drift=current_drift)
    if params["mode"] == "apply":
        target = {name: value for name, value in wanted().items() if before.get(name) is not None}
        if not params["use_commands"]:
            target.pop("amdgpu_module", None)  # only modprobe can load it
    else:
        recorded = load_before(params["state_file"])
        if recorded is None:
            module.fail_json(msg="mode=reset: no record of the values before apply in %s; "
                                 "nothing to restore" % params["state_file"])
        target = {k: v for k, v in recorded.items() if v is not None and k != "amdgpu_module"}
    changes = {k: v for k, v in target.items() if before.get(k) != v}
    after = dict(before)
    after.update(changes)
    diff = {"before": before, "after": after}
    changed = bool(changes) or params["drop_caches"]
    if module.check_mode:
        module.exit_json(changed=changed, before=before, after=after, drift=current_drift, diff=diff)
    if params["mode"] == "apply":
        save_before(params["state_file"], before)
    errors = set_values(changes, params["root"], params["use_commands"])
    if params["drop_caches"]:
        error = drop_caches(params["root"])
        if error:
            errors.append(error)
    if errors:
        module.fail_json(msg="; ".join(errors), before=before)
    after = read_state(params["root"])
    module.exit_json(changed=changed, before=before, after=after, drift=drift(after), diff=diff)


if __name__ == "__main__":
    main()
