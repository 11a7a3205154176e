#!/usr/bin/python
"""Ansible module: what of a dataset is already staged, from its manifests, without the network."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_data_state
short_description: Quick, read-only check of a staged dataset against its manifests
description:
  - For each downloaded dataset, compares the destination's C(.mlperf-manifest.json) (written
    by M(mlperf_dataset_fetch)) with the file system and with the dataset's md5 list kept next
    to the data (C(<dest>/<name>.md5)): every listed file must be recorded as verified with the
    listed md5, and still have the recorded size and modification time. No file is hashed and
    no request is made, so a staged dataset of any size is re-checked in seconds, even when the
    bucket cannot be reached.
  - Reports which of some paths exist, which expected files are missing, and the free space of
    the file system holding O(data_dir).
  - When none of the O(expected) paths relative to O(data_dir) is there, looks one level off:
    in each directory right below O(data_dir) and in its parent. Where expected files are found
    there (a dataset staged with DATADIR set one level up or down, e.g. the toolkit's earlier
    llama31_8b layout C(<datadir>/data)), that directory is reported in RV(misplaced), so the
    stage can refuse before downloading the dataset again beside it.
  - Changes nothing.
options:
  data_dir:
    description: The staging root (DATADIR). Relative paths below are relative to it.
    type: path
    required: true
  datasets:
    description: Downloaded datasets, each with its C(uri) (the C(.uri) metadata URL) or C(name)
      (the C(.uri) file name without C(.uri)), and C(dest) (its directory).
    type: list
    elements: dict
    default: []
  paths:
    description: Paths whose existence is reported in RV(paths).
    type: list
    elements: str
    default: []
  expected:
    description: Paths that must exist; those that do not are listed in RV(missing).
    type: list
    elements: str
    default: []
  markers:
    description: Step markers written by M(mlperf_data_step); the files each recorded are
      checked (existence, size, mtime) and reported in RV(markers).
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
- name: What is staged already
  mlperf_data_state:
    data_dir: /data/mlperf_llama31_8b/data
    datasets:
      - {name: llama-3-1-8b-preprocessed-c4-dataset, dest: .}
      - {name: llama-3-1-8b-tokenizer, dest: /data/mlperf_llama31_8b/model}
    expected: [c4-train.en_6_text_document.bin]
  register: staged
"""

RETURN = r"""
downloads:
  description: The O(datasets) entries in their order, each with its C(name) and the fields of
    RV(datasets) added.
  returned: always
  type: list
  elements: dict
datasets:
  description: Per dataset name, C(complete) (bool), C(files) (listed), C(verified) (matching
    the manifest), C(bytes) (of the verified files), C(problems) (the first 20) and
    C(problem_count).
  returned: always
  type: dict
paths:
  description: Per path as given, C(exists) and C(is_dir).
  returned: always
  type: dict
missing:
  description: The O(expected) paths that do not exist.
  returned: always
  type: list
  elements: str
markers:
  description: Per marker as given, C(exists), C(files) (recorded), C(problems) (the first 20:
    recorded files missing, or of another size or mtime) and C(problem_count).
  returned: always
  type: dict
free_bytes:
  description: Free bytes of the file system of O(data_dir) (or of its nearest existing parent).
  returned: always
  type: int
misplaced:
  description: Where the O(expected) files are when none is in O(data_dir) but some are one
    level off (C(path), C(found), C(of), C(where) C(below) or C(above)); null otherwise.
  returned: always
  type: dict
seconds:
  description: Time the check took.
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.data_steps import DataStepError, staged_state
from ansible.module_utils.module_adapter import finish


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type="path", required=True),
            datasets=dict(type="list", elements="dict", default=[]),
            paths=dict(type="list", elements="str", default=[]),
            expected=dict(type="list", elements="str", default=[]),
            markers=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    finish(module, "mlperf_data_state", (DataStepError,), staged_state,
           **module.params)


if __name__ == "__main__":
    main()
