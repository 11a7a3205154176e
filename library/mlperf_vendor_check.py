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

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.module_adapter import finish
from ansible.module_utils.vendor_check import VendorCheckError, ensure_record


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
    finish(module, "mlperf_vendor_check", (VendorCheckError,), ensure_record,
           check_mode=module.check_mode, **module.params)


if __name__ == "__main__":
    main()
