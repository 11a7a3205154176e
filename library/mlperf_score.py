#!/usr/bin/python
"""Ansible module: score a directory of MLPerf result logs as MLCommons does."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_score
short_description: Score a set of MLPerf Training result logs exactly as MLCommons does
description:
  - Per run, time to train, run_stop status, samples to converge and compliance (mlperf-logging's
    checker, the ruleset given explicitly); per set, the olympic mean with the non-compliant-run
    rules, the RCP check and normalization factor, and the run-count rule.
  - Writes the result as JSON (O(output)) and reports changed only when that file changed.
  - Runs on the controller, where the mlperf_repro package and mlperf-logging are installed.
options:
  path:
    description: Directory holding result_*.txt (or *.log) files of one set.
    type: path
    required: true
  ruleset:
    description: Training ruleset of mlperf-logging; the catalog's (catalog.yml C(ruleset)) when omitted.
    type: str
  benchmark:
    description: Benchmark name; detected from submission_benchmark when omitted.
    type: str
  allow_partial:
    description: Accept fewer runs than the benchmark needs; the result is then marked not valid.
    type: bool
    default: false
  expected_runs:
    description: Run count for benchmarks unknown to mlperf-logging (the smoke benchmark).
    type: int
  quality_target:
    description: Quality target (lower is better) to report per run whether it was reached.
    type: float
  reference:
    description: The catalog's reference result (score_minutes, submission_id) to compare with.
    type: dict
  gpu:
    description: GPU model, for the comparison sentence.
    type: str
    default: ""
  system:
    description: The campaign's system (catalog platform name); the logs' own label is compared with it.
    type: str
  catalog_path:
    description: The catalog to read platforms from (default the packaged one).
    type: path
  output:
    description: Where to write the JSON result; default is score.json inside O(path).
    type: path
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Score the collected set
  mlperf_score:
    path: results/llama31_8b/MI355X_1x8x1/20261128T120000Z/node1
    reference: {score_minutes: 86.84, submission_id: "6.0-0036"}
    gpu: MI355X
  register: score
"""

RETURN = r"""
score:
  description: The set's score (benchmark, ruleset, runs, olympic_minutes, rcp, score_minutes,
    valid, reasons, versus_reference).
  returned: success
  type: dict
output:
  description: The JSON file written.
  returned: success
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

SCORE_MODE = 0o644  # explicit: never left to the umask


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "ruleset": {"type": "str"},
            "benchmark": {"type": "str"},
            "allow_partial": {"type": "bool", "default": False},
            "expected_runs": {"type": "int"},
            "quality_target": {"type": "float"},
            "reference": {"type": "dict"},
            "gpu": {"type": "str", "default": ""},
            "output": {"type": "path"},
            "system": {"type": "str"},
            "catalog_path": {"type": "path"},
        },
        supports_check_mode=True,
    )
    try:
        from mlperf_repro.compare import campaign_platform, versus_reference
        from mlperf_repro.node.fileio import ensure_content
        from mlperf_repro.scoring import find_result_files, score_directory
    except ImportError as exc:
        module.fail_json(msg="mlperf_repro is not importable by %s (%s): install the project "
                             "(pip install -e .) into the controller's Python" % (
                                 os.sys.executable, exc))
    params = module.params
    if not os.path.isdir(params["path"]):
        module.fail_json(msg="path %s is not a directory of result logs" % params["path"])
    try:
        result = score_directory(params["path"], ruleset=params["ruleset"],
                                 benchmark=params["benchmark"],
                                 allow_partial=params["allow_partial"],
                                 expected_runs=params["expected_runs"],
                                 quality_target=params["quality_target"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    score = result.to_dict()
    score["versus_reference"] = versus_reference(score.get("score_minutes"), params["reference"],
                                                 params["gpu"], params["system"] or "",
                                                 valid=score.get("valid"))
    if params["system"]:  # held against the campaign's system; the logs' own label is said
        score["platform"] = campaign_platform(find_result_files(params["path"]), params["benchmark"],
                                              params["system"], params["catalog_path"])
    output = params["output"] or os.path.join(params["path"], "score.json")
    text = json.dumps(score, indent=2, sort_keys=True) + "\n"
    try:
        changed = ensure_content(output, text, SCORE_MODE, module.check_mode)
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (exc.filename or output, exc.strerror or exc))
    module.exit_json(changed=changed, score=score, output=output)


if __name__ == "__main__":
    main()
