#!/usr/bin/python
"""Ansible module: the image's own config_<SYSTEM>.sh against the catalog, by name."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_vendor_check
short_description: Compare the image's config_<SYSTEM>.sh with the catalog, by variable name
description:
  - Reads the benchmark image's own C(config_<SYSTEM>.sh) in the code directory copied out of
    the image (and the files it sources), as data - nothing in it is executed - and compares it
    with what the catalog expects, variable by variable, reporting every variable added,
    removed or changed, and every site value that overrides one of the image's.
  - The image's file is left as it is (runs use it). A code directory of the earlier layout,
    where a config rendered from the catalog replaced the image's and the image's was kept as
    C(<file>.from-image), gets the image's file back.
  - Writes the record to C(.mlperf-vendor-check.json) in the code directory (only when it
    differs), so collect and the report carry it.
options:
  code_dir:
    description: The code directory copied out of the image.
    type: path
    required: true
  config_file:
    description: The config's file name (C(config_MI355X_1x8x1.sh)).
    type: str
    required: true
  catalog_env:
    description: The catalog's values of the config (what we expect of the image's file).
    type: dict
    default: {}
  site_env:
    description: The site's values (sourced after the image's config).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Compare the image's config with the catalog
  mlperf_vendor_check:
    code_dir: /opt/mlperf-repro/code/llama31_8b
    config_file: config_MI355X_1x8x1.sh
    catalog_env: "{{ mlperf_spec.catalog_env }}"
    site_env: "{{ mlperf_spec.site_env }}"
  register: vendor
"""

RETURN = r"""
source:
  description: C(image) (the image's file), C(image (kept as ...from-image)) or C(absent) (the image has none for this system).
  returned: always
  type: str
differences:
  description: C(added), C(removed), C(changed) - lists of C({name, image, catalog}) by variable name.
  returned: always
  type: dict
site_overrides:
  description: Site values for names the image's config sets (C({name, image, site})).
  returned: always
  type: list
  elements: dict
summary:
  description: One sentence saying it.
  returned: always
  type: str
record_file:
  description: Where the record was written.
  returned: always
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.fileio import write_atomic
    from ansible.module_utils.vendor_check import LEGACY_SUFFIX, RECORD_NAME, inspect, record_text
except ImportError:  # running from a source checkout (tests)
    from mlperf_repro.node.fileio import write_atomic
    from mlperf_repro.node.vendor_check import LEGACY_SUFFIX, RECORD_NAME, inspect, record_text


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def main():
    module = AnsibleModule(
        argument_spec={
            "code_dir": {"type": "path", "required": True},
            "config_file": {"type": "str", "required": True},
            "catalog_env": {"type": "dict", "default": {}},
            "site_env": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    name = params["config_file"]
    if os.path.basename(name) != name or name in ("", ".", ".."):
        module.fail_json(msg="config_file: expected a plain file name such as config_MI355X_1x8x1.sh, got %r" % name)
    code_dir = params["code_dir"]
    if not os.path.isdir(code_dir):
        if module.check_mode:  # the code is copied out of the image by the same run
            module.exit_json(changed=False, source="unknown", differences={}, site_overrides=[],
                             summary="%s is not there yet (copied out of the image by this run)" % code_dir,
                             record_file=os.path.join(code_dir, RECORD_NAME))
        module.fail_json(msg="code_dir %s is not a directory: copy the code out of the image first" % code_dir)
    try:
        record = inspect(code_dir, name, params["catalog_env"], params["site_env"])
    except (OSError, ValueError) as exc:
        module.fail_json(msg="%s/%s: %s" % (code_dir, name, exc))
    changed = False
    config_path = os.path.join(code_dir, name)
    legacy = config_path + LEGACY_SUFFIX
    record_path = os.path.join(code_dir, RECORD_NAME)
    text = record_text(record).encode("utf-8")
    try:
        if os.path.isfile(legacy):  # the earlier layout: the image's file goes back in place
            changed = True
            if not module.check_mode:
                write_atomic(config_path, _read(legacy), 0o644)
                os.unlink(legacy)
                record = inspect(code_dir, name, params["catalog_env"], params["site_env"])
                text = record_text(record).encode("utf-8")
        if _read(record_path) != text:
            changed = True
            if not module.check_mode:
                write_atomic(record_path, text, 0o644)
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (exc.filename or code_dir, exc.strerror or exc))
    module.exit_json(changed=changed, record_file=record_path, **record)


if __name__ == "__main__":
    main()
