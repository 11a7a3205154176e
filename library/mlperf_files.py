#!/usr/bin/python
"""Ansible module: a directory holding given text files, in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_files
short_description: Make a directory hold given text files (one call per node)
description:
  - Creates O(directory) (with its parents) or sets its mode, then replaces each file of
    O(files) whose content or mode differs, atomically (written beside it, then renamed). A file
    that is already right is not touched.
  - One module run per node, where a C(file) task, a C(copy) per file and a C(template) task need
    several; the contents are rendered on the controller (C(lookup('template', ...)),
    C(lookup('file', ..., rstrip=false))) and travel with the module's arguments, so this is for
    small text files (scripts, configs).
  - The contents are not echoed back in the result's C(invocation), only their sizes.
options:
  directory:
    description: The directory; created with its parents when missing.
    type: path
    required: true
  directory_mode:
    description: Mode of the directory (octal string).
    type: str
    default: "0755"
  files:
    description: The files, by plain name inside O(directory).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: File name (no directory part).
        type: str
        required: true
      content:
        description: Text content, written as UTF-8.
        type: str
        required: true
      mode:
        description: Mode (octal string).
        type: str
        required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Write the code and its config
  mlperf_files:
    directory: /shared/work/code/smoke
    files:
      - {name: run.sh, content: "{{ lookup('ansible.builtin.file', 'run.sh', rstrip=false) }}", mode: "0755"}
      - {name: config.sh, content: "{{ lookup('ansible.builtin.template', 'config.sh.j2') }}", mode: "0644"}
"""

RETURN = r"""
directory:
  description: The directory (absolute).
  returned: always
  type: str
files:
  description: Each file with C(path), C(changed), C(content_changed) and C(mode_changed).
  returned: always
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.render_files import FilesError, ensure


def main():
    module = AnsibleModule(
        argument_spec={
            "directory": {"type": "path", "required": True},
            "directory_mode": {"type": "str", "default": "0755"},
            "files": {"type": "list", "elements": "dict", "required": True, "options": {
                "name": {"type": "str", "required": True},
                "content": {"type": "str", "required": True},
                "mode": {"type": "str", "required": True},
            }},
        },
        supports_check_mode=True,
    )
    params = module.params
    invocation = {"module_args": {
        "directory": params["directory"], "directory_mode": params["directory_mode"],
        "files": [{"name": f["name"], "mode": f["mode"], "content": "<%d characters>" % len(f["content"])}
                  for f in params["files"]]}}
    try:
        result = ensure(params["directory"], params["files"], params["directory_mode"],
                        check=module.check_mode)
    except FilesError as exc:
        module.fail_json(msg=str(exc), invocation=invocation)
    except OSError as exc:
        module.fail_json(msg="%s: %s" % (getattr(exc, "filename", None) or params["directory"],
                                         exc.strerror or exc), invocation=invocation)
    if not module._diff:
        result.pop("diff")
    module.exit_json(invocation=invocation, **result)


if __name__ == "__main__":
    main()
