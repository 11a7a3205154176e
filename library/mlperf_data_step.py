#!/usr/bin/python
"""Ansible module: one dataset preparation step (a container command), run once, recorded."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_data_step
short_description: Run one dataset preparation command once, guarded by what it creates
description:
  - Runs O(argv) (no shell on the node; typically C(docker run ... IMAGE bash -c SCRIPT)) unless
    the step is already done, then writes O(marker), a JSON record of the command (never a
    secret), when it finished, and the size and modification time of every file under
    O(record).
  - A step is done when O(marker) exists, or when every path of O(done_if_exist) exists (a
    dataset staged by hand is adopted, and its marker written). A done step is not run again;
    its recorded files are checked (existence, size, mtime; nothing hashed) and any that
    changed are reported as a failure, because training on silently altered data would be
    worse than stopping.
  - O(secret_env) reaches the command only through its environment (e.g. C(docker run --env
    HF_TOKEN) forwards it by name); its values are never in the command line, the log file,
    the marker or the result.
  - The command's output goes, as it is produced, to O(log_file) (C(tail -f) it for progress);
    the result carries its last lines.
  - Nothing is deleted; a failed command leaves its outputs for the next attempt.
options:
  name:
    description: What the step does, for messages.
    type: str
    required: true
  argv:
    description: The command, as a list of words.
    type: list
    elements: str
    required: true
  chdir:
    description: Directory the command runs in.
    type: path
  env:
    description: Environment variables added for the command (not secret).
    type: dict
    default: {}
  secret_env:
    description: Secret environment variables added for the command; never logged nor returned.
    type: dict
    default: {}
  marker:
    description: The step's record, written when it succeeds; its presence means done.
    type: path
    required: true
  done_if_exist:
    description: When every one of these paths exists, the step counts as done.
    type: list
    elements: path
    default: []
  record:
    description: Files, or directories walked recursively, recorded in O(marker).
    type: list
    elements: path
    default: []
  expect:
    description: Paths that must exist once the command succeeded, or the step fails.
    type: list
    elements: path
    default: []
  min_free_bytes:
    description: Refuse to start when the file system of O(free_path) has less free space.
    type: int
    default: 0
  space_for:
    description: Refuse to start unless the free space is at least O(space_factor) times the
      size of the files under these paths (a conversion's input).
    type: list
    elements: path
    default: []
  space_factor:
    description: See O(space_for).
    type: float
    default: 1.0
  free_path:
    description: Where to measure free space (default the directory of O(marker)).
    type: path
  log_file:
    description: Where the command's output is written while it runs (secrets redacted).
    type: path
attributes:
  check_mode:
    support: full
    details: Reports whether the step would run, and the command it would run (RV(cmd)).
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Convert CC12M to a webdataset in the benchmark container
  mlperf_data_step:
    name: to_webdataset train
    argv: [docker, run, --rm, --volume, "/data/flux:/dataset", "rocm/amd-mlperf:flux1_training_6.0",
           bash, -c, "python /workspace/code/scripts/to_webdataset.py --input_path /dataset/cc12m_preprocessed --output_path /dataset/energon/train"]
    marker: /data/flux/.mlperf-data/convert-1.json
    record: [/data/flux/energon/train]
    log_file: /data/flux/.mlperf-data/convert-1.log
"""

RETURN = r"""
cmd:
  description: The command, shell-quoted (it holds secret names only, never their values).
  returned: always
  type: str
ran:
  description: Whether the command ran in this call.
  returned: always
  type: bool
done_by:
  description: Why the step counts as done without running (C(marker) or C(existing files)), or
    empty when it ran or would run.
  returned: always
  type: str
rc:
  description: The command's exit status (when it ran).
  returned: when the command ran
  type: int
output_tail:
  description: The last lines of the command's output (when it ran).
  returned: when the command ran
  type: list
  elements: str
seconds:
  description: How long the command ran.
  returned: always
  type: float
files_recorded:
  description: Files recorded in (or checked against) the marker.
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.data_steps import DataStepError, run_step
from ansible.module_utils.module_adapter import finish


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            argv=dict(type="list", elements="str", required=True),
            chdir=dict(type="path"),
            env=dict(type="dict", default={}),
            secret_env=dict(type="dict", default={}, no_log=True),
            marker=dict(type="path", required=True),
            done_if_exist=dict(type="list", elements="path", default=[]),
            record=dict(type="list", elements="path", default=[]),
            expect=dict(type="list", elements="path", default=[]),
            min_free_bytes=dict(type="int", default=0),
            space_for=dict(type="list", elements="path", default=[]),
            space_factor=dict(type="float", default=1.0),
            free_path=dict(type="path"),
            log_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    finish(module, "mlperf_data_step", (DataStepError,), run_step,
           check_mode=module.check_mode, **module.params)


if __name__ == "__main__":
    main()
