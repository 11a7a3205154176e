#!/usr/bin/python
"""Ansible module: write a campaign's report from its scored sets."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_report
short_description: Write report.json, report.md and report.html for a scored campaign
description:
  - Reads every C(*/score.json) of a campaign directory on the controller and writes
    C(report.json), C(report.md) and C(report.html) (self-contained, inline SVG plots) beside them;
    changed only when a file changed.
options:
  campaign_dir:
    description: Controller directory of one campaign (results/<benchmark>/<system>/<campaign>).
    type: path
    required: true
attributes:
  check_mode:
    support: none
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Write the report
  mlperf_report:
    campaign_dir: results/smoke/CPU_1x1x1/20261128T120000Z
"""

RETURN = r"""
written:
  description: Files written (name to path); empty when all were up to date.
  returned: success
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={"campaign_dir": {"type": "path", "required": True}})
    try:
        from mlperf_repro.report import write_reports
    except ImportError as exc:
        module.fail_json(msg="mlperf_repro is not importable (%s): pip install -e ." % exc)
    try:
        written = write_reports(module.params["campaign_dir"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(written), written=written)


if __name__ == "__main__":
    main()
