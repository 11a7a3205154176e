#!/usr/bin/python
"""Ansible module: assemble an MLCommons submission tree and gate it with the package checker."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_package
short_description: Assemble an MLCommons submission tree from a set and run mlperf-logging's package checker
description:
  - Copies the set's logs into C(out_dir/ORG/results/<system>/<benchmark>/result_N.txt), writes
    C(out_dir/ORG/systems/<system>.json) from what the logs and the catalog say, gathered facts,
    a JSON file and explicit fields, then runs C(python -m mlperf_logging.package_checker) on the tree.
  - The package checker always exits 0; its verdict line is read instead. The task fails when it
    reports errors, unless O(fail_on_errors=false).
  - Runs on the controller, where the mlperf_repro package and mlperf-logging are installed.
    Thin adapter over C(mlperf_repro/package.py).
options:
  path:
    description: Directory holding the set's result_*.txt (or *.log) files.
    type: path
    required: true
  out_dir:
    description: Where the submission tree goes (C(out_dir/ORG/...)); must be outside O(path).
    type: path
    required: true
  org:
    description: Submitting organization (the tree's top directory and the system's submitter).
    type: str
    required: true
  system:
    description: System name (file name of the system description and results directory).
    type: str
    required: true
  ruleset:
    description: Training ruleset of mlperf-logging; the catalog's (catalog.yml C(ruleset)) when omitted.
    type: str
  benchmark:
    description: Benchmark name; detected from submission_benchmark when omitted.
    type: str
  system_json:
    description: A system description JSON whose fields override the derived ones.
    type: path
  system_fields:
    description: System description fields that override everything else.
    type: dict
  facts:
    description: One node's gathered facts (C(ansible_facts), optionally with C(amd_gpu)) to fill
      host and accelerator fields.
    type: dict
  force:
    description: Replace an existing, non-empty results directory for this system and benchmark.
    type: bool
    default: false
  fail_on_errors:
    description: Fail the task when the package checker reports errors.
    type: bool
    default: true
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Package the set and run the package checker
  mlperf_package:
    path: results/llama2_70b_lora/MI355X_1x8x1/20261128T120000Z/node1
    out_dir: submission
    org: ACME
    system: MI355X_1x8x1
    facts: "{{ hostvars[groups['mlperf_nodes'][0]]['ansible_facts'] }}"
  register: package
"""

RETURN = r"""
package:
  description: The tree and the verdict (org_dir, system_json, benchmark_dir, files, log, passed,
    verdict, errors, warnings, empty_fields).
  returned: success
  type: dict
"""

import os

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "out_dir": {"type": "path", "required": True},
            "org": {"type": "str", "required": True},
            "system": {"type": "str", "required": True},
            "ruleset": {"type": "str"},
            "benchmark": {"type": "str"},
            "system_json": {"type": "path"},
            "system_fields": {"type": "dict"},
            "facts": {"type": "dict"},
            "force": {"type": "bool", "default": False},
            "fail_on_errors": {"type": "bool", "default": True},
        },
        supports_check_mode=False,
    )
    try:
        from mlperf_repro.package import package
    except ImportError as exc:
        module.fail_json(msg="mlperf_repro is not importable by %s (%s): install the project "
                             "(pip install -e .) into the controller's Python" % (os.sys.executable, exc))
    params = module.params
    try:
        result = package(params["path"], params["out_dir"], params["org"], params["system"],
                         ruleset=params["ruleset"], benchmark=params["benchmark"],
                         system_json=params["system_json"], system_fields=params["system_fields"],
                         facts=params["facts"], force=params["force"])
    except (ValueError, OSError) as exc:
        module.fail_json(msg=str(exc))
    data = result.to_dict()
    if not result.passed and params["fail_on_errors"]:
        module.fail_json(msg="package checker: %s: %s" % (result.verdict or "no verdict",
                                                          "; ".join(result.errors) or "see " + result.log),
                         changed=True, package=data)
    module.exit_json(changed=True, package=data)


if __name__ == "__main__":
    main()
