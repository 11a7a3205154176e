"""Filters the roles call: shared files as data, the data stage's plan, the mount table.

Thin adapters over plain Python (mlperf_repro.project_files, mlperf_repro.data_plan,
mlperf_repro.node.preflight, mlperf_repro.preflight_report); each turns that code's ValueError into an AnsibleFilterError.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: mlperf_roles
short_description: mlperf-repro filters for the roles
description:
  - mlperf_project_file - the absolute path of a shared file of the mlperf_repro package.
  - mlperf_data_downloads - a dataset recipe's downloads with {MODEL} resolved.
  - mlperf_data_renames - a dataset recipe's renames with absolute paths.
  - mlperf_data_convert_step - what a conversion command reads and writes, in the container and on the host.
  - mlperf_data_step_records - where each step of a dataset recipe keeps its marker and log.
  - mlperf_data_summary - the data stage's closing lines.
  - mlperf_mount_at - the row of a mount table (/proc/mounts' text) at one mount point.
  - mlperf_shared_marker_problems - what the shared-storage proof found wrong, host by host.
"""

import functools
import os
import sys

from ansible.errors import AnsibleFilterError

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # a checkout used without `pip install -e .`
    sys.path.append(_ROOT)

from mlperf_repro import data_plan, preflight_report, project_files  # noqa: E402
from mlperf_repro.node import preflight  # noqa: E402


def _adapter(function):
    """``function`` as a filter: a ValueError becomes an AnsibleFilterError naming the filter."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as exc:
            raise AnsibleFilterError(f"mlperf_{function.__name__}: {exc}") from None
    return wrapper


def mlperf_mount_at(text, path):
    """``{{ proc_mounts_text | mlperf_mount_at('/data') }}``: source, mountpoint and fstype of
    what is mounted at ``path``, or {} when nothing is."""
    return preflight.mount_at(str(text or ""), str(path)) or {}


class FilterModule:
    def filters(self):
        return {
            "mlperf_project_file": _adapter(project_files.project_file),
            "mlperf_data_downloads": _adapter(data_plan.downloads),
            "mlperf_data_renames": _adapter(data_plan.renames),
            "mlperf_data_convert_step": _adapter(data_plan.convert_step),
            "mlperf_data_step_records": _adapter(data_plan.step_records),
            "mlperf_data_summary": _adapter(data_plan.summary),
            "mlperf_mount_at": mlperf_mount_at,
            "mlperf_shared_marker_problems": preflight_report.shared_marker_problems,
        }
