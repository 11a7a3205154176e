"""Filters of the fleet health check (thin adapters over mlperf_repro.health)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: healthcheck
short_description: mlperf-repro health-check filters
description:
  - mlperf_health_pairs - the node pairs of the pairwise all-reduce (a ring).
  - mlperf_health_addresses - the address mpirun reaches each host at.
  - mlperf_health_evaluate - every node's figures judged against the thresholds and the fleet.
  - mlperf_health_table - the outcome as one table.
  - mlperf_health_line - the one line that says what happens to the campaign.
"""

import os
import sys

from ansible.errors import AnsibleFilterError

try:
    from mlperf_repro import health as _health
except ImportError:  # a checkout used without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mlperf_repro import health as _health


def mlperf_health_pairs(hosts):
    return _health.pair_schedule(list(hosts))


def mlperf_health_addresses(hosts, hostvars):
    """What mpirun reaches over ssh: each host's ``ansible_host``, else its inventory name."""
    addresses = []
    for host in hosts:
        try:
            address = hostvars[host].get("ansible_host")
        except Exception:  # noqa: BLE001 - an unknown host keeps its name
            address = None
        addresses.append(str(address or host))
    return addresses


def mlperf_health_evaluate(hosts, hostvars, rounds_var, product, tolerance=_health.DEFAULT_TOLERANCE,
                           pairs=None, fleet=None, thresholds_file=None, on_fail="warn", min_fleet=3):
    """``ansible_play_hosts_all | mlperf_health_evaluate(hostvars, '__healthcheck_rounds', ...)``:
    ``rounds_var`` names each host's list of measurements (one per round)."""
    results = {}
    for host in hosts:
        try:
            results[host] = hostvars[host].get(rounds_var)
        except Exception:  # noqa: BLE001 - an unreachable host has no result
            results[host] = None
    try:
        data = _health.load_thresholds(thresholds_file or None)
        outcome = _health.evaluate(results, _health.thresholds_for(data, str(product)), tolerance,
                                   pairs=list(pairs or []), fleet=[f for f in (fleet or []) if f],
                                   product=str(product), min_fleet=int(min_fleet))
    except _health.HealthError as exc:
        raise AnsibleFilterError(f"mlperf_health_evaluate: {exc}") from None
    outcome["on_fail"] = on_fail
    outcome["excluded"] = outcome["flagged"] if on_fail == "exclude" else []
    return outcome


def mlperf_health_table(outcome):
    return _health.table(outcome)


def mlperf_health_line(outcome, on_fail="warn"):
    return _health.summary_line(outcome, on_fail)


class FilterModule:
    def filters(self):
        return {
            "mlperf_health_pairs": mlperf_health_pairs,
            "mlperf_health_evaluate": mlperf_health_evaluate,
            "mlperf_health_addresses": mlperf_health_addresses,
            "mlperf_health_table": mlperf_health_table,
            "mlperf_health_line": mlperf_health_line,
        }
