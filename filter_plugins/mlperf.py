"""Filters: inventory validation, the stage host filter and console lines (thin adapters)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: mlperf
short_description: mlperf-repro filters
description:
  - mlperf_validate_hosts - every host's site problems, or every host's resolved benchmark.
  - mlperf_preflight_table - one table of every node's preflight problems.
  - mlperf_preflight_rows - the preflight table's rows from every node's probe result.
  - mlperf_score_line - one console line saying a set's score.
  - mlperf_stage_hosts - a stage play's host pattern, or none when --tags leaves the stage out.
  - mlperf_preflight_summary_changed - whether a preflight summary says more than the file's text.
"""

import os
import sys

import jinja2


try:
    from mlperf_repro import catalog as _catalog, inventory_check as _check
except ImportError:  # a checkout used without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mlperf_repro import catalog as _catalog, inventory_check as _check

_CACHE: dict = {}


def _load(path=None):
    key = path or "default"
    if key not in _CACHE:
        _CACHE[key] = _catalog.load_catalog(path)
    return _CACHE[key]


def _host_var(hostvars, host, name, default=None):
    """``hostvars[host][name]`` (templated), or ``default`` when the host or the variable is
    unset, or its value is null or cannot be templated (an undefined variable inside it)."""
    try:
        value = hostvars[host].get(name, default)
    except Exception:  # noqa: BLE001 - KeyError for an unknown host, a templating error inside
        return default
    if value is None or _has_undefined(value):
        # a value naming a variable defined later (a role default such as rocm_version) is
        # checked where that role runs; here it would fail the whole validation
        return default
    return value


def _has_undefined(value, depth=0):
    """Does ``value`` (or anything in it) stand for an undefined variable? Ansible 2.19 hands
    those over as markers that fail only when the result is finalized."""
    if isinstance(value, jinja2.Undefined):
        return True
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(_has_undefined(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_undefined(v, depth + 1) for v in value)
    return False


def _host_names(hostvars, host):
    """The variable names a host has (inventory, group_vars, extra vars), or none."""
    try:
        return [str(name) for name in hostvars[host].keys()]
    except Exception:  # noqa: BLE001 - an unknown host
        return []


def mlperf_validate_hosts(hosts, hostvars, groups=None, run_tags=None, skip_tags=None,
                          catalog_path=None):
    """``{problems, specs}`` for every host: ``ansible_play_hosts_all | mlperf_validate_hosts(hostvars, groups, ...)``."""
    try:
        cat = _load(catalog_path)
    except _catalog.CatalogError as exc:
        return {"problems": [f"catalog: {exc}"], "specs": {}}
    sites, addresses = {}, {}
    nodes = set((groups or {}).get("mlperf_nodes") or [])
    for host in hosts:
        site = {name: _host_var(hostvars, host, name, default) for name, default in _check.SITE_VARS.items()}
        # every project variable the host has (mlperf_* and role-prefixed): unknown names and
        # declared role variables of the wrong type are found before any host is changed
        for name in _host_names(hostvars, host):
            if name not in site and _check.is_project_variable(name):
                site[name] = _host_var(hostvars, host, name)
        site.update(ansible_run_tags=list(run_tags or []), ansible_skip_tags=list(skip_tags or []))
        sites[host] = site
        if host in nodes:
            addresses[host] = _check.node_address(
                _host_var(hostvars, host, "ansible_connection"), _host_var(hostvars, host, "ansible_host"),
                _host_var(hostvars, host, "ansible_port"), host, site.get("mlperf_logdir"))
    return _check.validate_hosts(sites, dict(groups or {}), cat, addresses)


def mlperf_preflight_table(rows):
    """``rows``: list of {host, problems}. Returns the text of one aligned table."""
    lines = []
    width = max([len(str(r.get("host", ""))) for r in rows] + [4])
    for row in rows:
        for problem in row.get("problems") or []:
            lines.append(f"{str(row['host']).ljust(width)}  {problem}")
    if not lines:
        return "no problems"
    return "\n".join([f"{'host'.ljust(width)}  problem", f"{'-' * width}  -------"] + lines)


def mlperf_score_line(score):
    """One line saying a set's score, for the console."""
    from mlperf_repro.report import score_line
    return score_line(score)


def mlperf_preflight_rows(hosts, hostvars, name, shared=False):
    """``ansible_play_hosts_all | mlperf_preflight_rows(hostvars, '__preflight_probe', true)``."""
    from mlperf_repro.preflight_report import node_rows
    return node_rows({host: _host_var(hostvars, host, name) for host in hosts}, bool(shared))


def mlperf_preflight_summary_changed(summary, previous_text=None):
    """``summary | mlperf_preflight_summary_changed(lookup('file', path, errors='ignore'))``."""
    from mlperf_repro.preflight_report import summary_changed
    return summary_changed(summary, previous_text)


def mlperf_stage_hosts(pattern, stage_tags, run_tags=None):
    """``hosts: "{{ 'mlperf_nodes' | mlperf_stage_hosts(['data'], ansible_run_tags) }}"``."""
    return _check.stage_hosts(str(pattern), list(stage_tags), list(run_tags or []))


class FilterModule:
    def filters(self):
        return {
            "mlperf_validate_hosts": mlperf_validate_hosts,
            "mlperf_preflight_table": mlperf_preflight_table,
            "mlperf_score_line": mlperf_score_line,
            "mlperf_preflight_rows": mlperf_preflight_rows,
            "mlperf_stage_hosts": mlperf_stage_hosts,
            "mlperf_preflight_summary_changed": mlperf_preflight_summary_changed,
        }
