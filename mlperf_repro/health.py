"""The fleet health check's verdict, on the controller (no Ansible imports).

Every node's figures (mlperf_repro/node/healthcheck.py: ``{name, value, unit, details}``) are
judged two ways:

* against the product's published thresholds (``health_thresholds.yml``: a floor ``min`` or a
  ceiling ``max``, each with its source);
* against the fleet: a node more than ``tolerance`` (default 10 %) below the fleet's median of a
  higher-is-better figure is flagged, even above the floor. Each node's figure is already the
  median of its repeats, so one noisy repeat does not flag a node; the comparison needs at least
  ``min_fleet`` nodes with the figure (with two, "the median" is just their mean).

A figure that could not be measured (value None: the collective failed, a tool crashed) flags
its node, with the error. A node with no result at all (unreachable) is flagged as such.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any, Iterable, Mapping

THRESHOLDS_FILE = Path(__file__).resolve().parent / "health_thresholds.yml"
ON_FAIL = ("stop", "exclude", "warn")
DEFAULT_TOLERANCE = 0.10

#: figure -> unit, shown in the table's header (kept in step with node/healthcheck.py FIGURES).
try:
    from mlperf_repro.node.healthcheck import FIGURES
except ImportError:  # pragma: no cover - the package always has it
    FIGURES = {}


class HealthError(ValueError):
    """Bad input: a threshold file, a tolerance or a result that is not what is expected."""


def load_thresholds(path: str | Path | None = None) -> dict:
    """The thresholds file (default: the packaged one), checked: every figure has exactly one of
    ``min``/``max`` (a number) and a ``source``."""
    import yaml

    packaged = not path
    path = Path(path) if path else THRESHOLDS_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HealthError(f"{path}: cannot be read ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise HealthError(f"{path}: not valid YAML ({exc})") from exc
    products = (data or {}).get("products") if isinstance(data, dict) else None
    if not isinstance(products, dict) or not products:
        raise HealthError(f"{path}: expected a mapping 'products:' of product -> figures")
    if packaged:
        # The GPU products' thresholds live with their platform (platforms.yml, `health`).
        from .platforms import load_platforms  # pylint: disable=import-outside-toplevel

        for platform in load_platforms().platforms.values():
            products.update(platform.health)
    for product, entry in products.items():
        figures = (entry or {}).get("figures")
        if not isinstance(figures, dict):
            raise HealthError(f"{path}: products.{product}.figures must be a mapping of figure -> "
                              "{min|max, source}")
        for name, rule in figures.items():
            where = f"{path}: products.{product}.figures.{name}"
            if not isinstance(rule, dict):
                raise HealthError(f"{where}: expected {{min: N, source: ...}} or {{max: N, source: ...}}")
            bounds = [k for k in ("min", "max") if k in rule]
            if len(bounds) != 1:
                raise HealthError(f"{where}: exactly one of 'min' (a floor) or 'max' (a ceiling) is expected")
            if isinstance(rule[bounds[0]], bool) or not isinstance(rule[bounds[0]], (int, float)):
                raise HealthError(f"{where}.{bounds[0]}: expected a number, got {rule[bounds[0]]!r}")
            if not str(rule.get("source") or "").strip():
                raise HealthError(f"{where}: every threshold needs its source")
    return data


def thresholds_for(data: Mapping, product: str) -> dict:
    """``product``'s figures (name -> rule); an unknown product has none (fleet comparison only)."""
    entry = (data.get("products") or {}).get(product) or {}
    return dict(entry.get("figures") or {})


def check_tolerance(tolerance: Any) -> float:
    try:
        value = float(tolerance)
    except (TypeError, ValueError):
        raise HealthError(f"healthcheck_fleet_tolerance: expected a fraction between 0 and 1 "
                          f"(0.10 = 10 % below the fleet median), got {tolerance!r}") from None
    if not 0 < value < 1:
        raise HealthError(f"healthcheck_fleet_tolerance: expected a fraction between 0 and 1 "
                          f"(0.10 = 10 % below the fleet median), got {tolerance!r}")
    return value


def pair_schedule(hosts: Iterable[str]) -> list[list[str]]:
    """Node pairs: each node with its neighbour in a ring (a-b, b-c, ..., last-a), so every node
    is in two pairs and a slow node shows in both, its neighbours in one only. Two nodes: one
    pair; fewer: none."""
    hosts = list(hosts)
    if len(hosts) < 2:
        return []
    if len(hosts) == 2:
        return [hosts]
    return [[hosts[i], hosts[(i + 1) % len(hosts)]] for i in range(len(hosts))]


def pair_figures(pairs: Iterable[Mapping]) -> dict[str, dict]:
    """Per node, the pair all-reduce figure of its best pair (a healthy node has at least one
    good neighbour; the slow one has none). ``pairs``: figures whose details carry ``pair``
    (the two inventory names)."""
    best: dict[str, dict] = {}
    for item in pairs:
        names = list((item.get("details") or {}).get("pair") or [])
        for host in names:
            current = best.get(host)
            value = item.get("value")
            if current is None or (value is not None and (current.get("value") is None
                                                          or value > current["value"])):
                others = [h for h in names if h != host]
                best[host] = {"name": "pair_allreduce_busbw_gbps", "value": value,
                              "unit": item.get("unit", "GB/s"),
                              "details": dict(item.get("details") or {}, partner=others[0] if others else None)}
    return best


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _as_rounds(value) -> list:
    """A measurement, or a list of them (one per round) -> a list of rounds."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def evaluate(results: Mapping[str, Any], thresholds: Mapping[str, Mapping],
             tolerance: float = DEFAULT_TOLERANCE, pairs: Iterable = (),
             fleet: Iterable[Mapping] = (), product: str = "", min_fleet: int = 3) -> dict:
    """The verdict. ``results``: host -> the node's measurement (``{"figures": [...], ...}``), or
    a list of them, one per round (every node measured once per round), or None when the node
    gave none. ``pairs``: pair all-reduce figures (details.pair = the two hosts), or a list of
    such lists, one per round. ``fleet``: whole-set all-reduce figures (judged against floors
    only: they belong to no single node).

    A node's value of a figure is the median over its rounds. The fleet comparison is made
    round by round: each node against that round's median, and a node is flagged when the
    median of its ratios is more than ``tolerance`` below 1. Load that comes and goes on the
    machines (or the network) moves a whole round, not one node, and is not flagged."""
    tolerance = check_tolerance(tolerance)
    pair_rounds = list(pairs or [])
    if pair_rounds and isinstance(pair_rounds[0], Mapping):
        pair_rounds = [pair_rounds]
    rounds: dict[str, list[dict[str, dict]]] = {}
    missing: dict[str, str] = {}
    for host, value in results.items():
        measured = [r for r in _as_rounds(value) if isinstance(r, Mapping)
                    and isinstance(r.get("figures"), list)]
        if not measured:
            last = (_as_rounds(value) or [None])[-1] or {}
            reason = (last.get("msg") or last.get("error") or "") if isinstance(last, Mapping) else ""
            missing[host] = "no health-check result (unreachable, or the measurement failed)" + (
                f": {reason}" if reason else "")
            rounds[host] = []
            continue
        rounds[host] = [{f["name"]: dict(f) for f in r["figures"] if f.get("name")} for r in measured]
    for index, round_pairs in enumerate(pair_rounds):
        for host, item in pair_figures([p for p in round_pairs if p]).items():
            if host in rounds and host not in missing:
                while len(rounds[host]) <= index:
                    rounds[host].append({})
                rounds[host][index][item["name"]] = item

    names: list[str] = []
    for host_rounds in rounds.values():
        for figures in host_rounds:
            for name in figures:
                if name not in names:
                    names.append(name)

    per_host: dict[str, dict[str, dict]] = {}
    for host, host_rounds in rounds.items():
        per_host[host] = {}
        for name in names:
            items = [r[name] for r in host_rounds if name in r]
            if not items:
                continue
            values = [i["value"] for i in items if i.get("value") is not None]
            merged = dict(items[-1])
            merged["value"] = statistics.median(values) if values else None
            if values and len(items) > 1:
                merged["details"] = dict(merged.get("details") or {}, rounds=values)
            if not values:
                errors = [(i.get("details") or {}).get("error") for i in items]
                merged["details"] = dict(merged.get("details") or {},
                                         error=next((e for e in errors if e), None))
            per_host[host][name] = merged

    ratios: dict[str, dict[str, float]] = {h: {} for h in rounds}
    medians: dict[str, float] = {}
    for name in names:
        rule = thresholds.get(name) or {}
        if "max" in rule:
            continue
        node_values = [f[name]["value"] for f in per_host.values()
                       if name in f and f[name].get("value") is not None]
        if len(node_values) >= min_fleet:
            medians[name] = statistics.median(node_values)
        per_round: dict[str, list[float]] = {}
        for index in range(max((len(r) for r in rounds.values()), default=0)):
            values = {h: r[index][name]["value"] for h, r in rounds.items()
                      if len(r) > index and name in r[index] and r[index][name].get("value") is not None}
            if len(values) < min_fleet:
                continue
            middle = statistics.median(values.values())
            if middle <= 0:
                continue
            for host, value in values.items():
                per_round.setdefault(host, []).append(value / middle)
        for host, host_ratios in per_round.items():
            ratios[host][name] = statistics.median(host_ratios)

    nodes = []
    for host in results:
        reasons: list[str] = []
        if host in missing:
            reasons.append(missing[host])
        judged = {}
        for name, item in per_host[host].items():
            value = item.get("value")
            rule = thresholds.get(name) or {}
            entry = {"value": value, "unit": item.get("unit", ""), "status": "ok",
                     "fleet_median": medians.get(name)}
            if "min" in rule:
                entry.update(floor=rule["min"], source=rule.get("source"))
            if "max" in rule:
                entry.update(ceiling=rule["max"], source=rule.get("source"))
            if value is None:
                error = (item.get("details") or {}).get("error")
                if "max" in rule or "min" in rule or error:
                    entry["status"] = "error"
                    reasons.append(f"{name} could not be measured" + (f": {error}" if error else ""))
                else:
                    entry["status"] = "n/a"
            elif "min" in rule and value < rule["min"]:
                entry["status"] = "below floor"
                reasons.append(f"{name} {_fmt(value)} {entry['unit']} is below the floor "
                               f"{_fmt(rule['min'])} ({rule.get('source')})")
            elif "max" in rule and value > rule["max"]:
                entry["status"] = "above ceiling"
                reasons.append(f"{name} {_fmt(value)} {entry['unit']} is above the ceiling "
                               f"{_fmt(rule['max'])} ({rule.get('source')})")
            ratio = ratios.get(host, {}).get(name)
            if value is not None and ratio is not None:
                entry["ratio_to_median"] = round(ratio, 4)
                if ratio < 1 - tolerance:
                    if entry["status"] == "ok":
                        entry["status"] = "below fleet"
                    reasons.append(f"{name} {_fmt(value)} {entry['unit']} is {100 * (1 - ratio):.0f} % "
                                   f"below the fleet median {_fmt(medians.get(name))} "
                                   f"(tolerance {100 * tolerance:.0f} %)")
            judged[name] = entry
        measured = [r for r in _as_rounds(results.get(host)) if isinstance(r, Mapping)]
        seconds = [float(r["seconds"]) for r in measured if isinstance(r.get("seconds"), (int, float))]
        nodes.append({"host": host, "status": "flagged" if reasons else "ok",
                      "reasons": reasons, "figures": judged,
                      "backend": next((r.get("backend") for r in measured if r.get("backend")), None),
                      "measure_seconds": round(sum(seconds), 3) if seconds else None})

    fleet_rows = []
    for item in fleet:
        rule = thresholds.get(item.get("name")) or {}
        value = item.get("value")
        status, reason = "ok", None
        if value is None:
            status, reason = "error", (item.get("details") or {}).get("error") or "no result"
        elif "min" in rule and value < rule["min"]:
            status = "below floor"
            reason = f"{_fmt(value)} {item.get('unit', '')} is below the floor {_fmt(rule['min'])} ({rule.get('source')})"
        fleet_rows.append({"name": item.get("name"), "value": value, "unit": item.get("unit", ""),
                           "hosts": (item.get("details") or {}).get("pair") or (item.get("details") or {}).get("hosts"),
                           "floor": rule.get("min"), "status": status, "reason": reason})
    flagged = [n["host"] for n in nodes if n["status"] == "flagged"]
    return {"product": product, "tolerance": tolerance, "figures": names,
            "units": {n: (FIGURES.get(n) or ("",))[0] for n in names},
            "nodes": nodes, "fleet": fleet_rows, "flagged": flagged,
            "fleet_problems": [f"{r['name']}: {r['reason']}" for r in fleet_rows if r["status"] != "ok"]}


def table(outcome: Mapping) -> str:
    """Every node and figure, one line per node (flagged figures marked ``!``), then the reasons
    and the whole-set figures."""
    names = list(outcome.get("figures") or [])
    header = ["node"] + [f"{n} ({(outcome.get('units') or {}).get(n, '')})" for n in names] + ["status"]
    rows = []
    for node in outcome.get("nodes") or []:
        cells = [node["host"]]
        for name in names:
            entry = (node.get("figures") or {}).get(name)
            if entry is None:
                cells.append("-")
                continue
            mark = "" if entry["status"] in ("ok", "n/a") else "!"
            cells.append(_fmt(entry["value"]) + mark)
        cells.append(node["status"])
        rows.append(cells)
    medians = ["fleet median"] + [_fmt(_median_of(outcome, n)) for n in names] + [""]
    widths = [max(len(str(r[i])) for r in [header, medians] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
             for r in [header] + rows + [medians]]
    for node in outcome.get("nodes") or []:
        for reason in node.get("reasons") or []:
            lines.append(f"! {node['host']}: {reason}")
    for row in outcome.get("fleet") or []:
        hosts = row.get("hosts") or []
        lines.append(f"{'!' if row['status'] != 'ok' else ' '} all nodes ({len(hosts)}): {row['name']} "
                     f"{_fmt(row['value'])} {row['unit']}" + (f" - {row['reason']}" if row.get("reason") else ""))
    return "\n".join(lines)


def _median_of(outcome: Mapping, name: str):
    for node in outcome.get("nodes") or []:
        entry = (node.get("figures") or {}).get(name)
        if entry and entry.get("fleet_median") is not None:
            return entry["fleet_median"]
    return None


def summary_line(outcome: Mapping, on_fail: str) -> str:
    """The one line that says what happened to the campaign."""
    flagged = list(outcome.get("flagged") or [])
    total = len(outcome.get("nodes") or [])
    if not flagged and not outcome.get("fleet_problems"):
        return f"healthcheck: all {total} nodes healthy" if total != 1 else "healthcheck: the node is healthy"
    if not flagged:
        return "healthcheck: the whole-set all-reduce is below its floor: " + "; ".join(outcome["fleet_problems"])
    reasons = {n["host"]: n["reasons"][0] for n in outcome["nodes"] if n["status"] == "flagged"}
    detail = "; ".join(f"{h} ({reasons[h]})" for h in flagged)
    if on_fail == "exclude":
        return (f"healthcheck: excluding {len(flagged)} of {total} nodes from the campaign: {detail}")
    if on_fail == "stop":
        return f"healthcheck: {len(flagged)} of {total} nodes failed, stopping before the runs: {detail}"
    return f"healthcheck: {len(flagged)} of {total} nodes flagged (warn only, all nodes run): {detail}"


def markdown(outcome: Mapping) -> list[str]:
    """The report's section (lines of Markdown)."""
    names = list(outcome.get("figures") or [])
    lines = ["## Fleet health check", ""]
    if outcome.get("on_fail"):
        lines += [f"On failure: `{outcome['on_fail']}`; fleet tolerance "
                  f"{100 * float(outcome.get('tolerance', DEFAULT_TOLERANCE)):.0f} %; "
                  f"thresholds of `{outcome.get('product') or '?'}`.", ""]
    lines.append("| node | " + " | ".join(names) + " | status |")
    lines.append("|---" * (len(names) + 2) + "|")
    for node in outcome.get("nodes") or []:
        cells = []
        for name in names:
            entry = (node.get("figures") or {}).get(name)
            cells.append("-" if entry is None else _fmt(entry["value"]) + (
                "" if entry["status"] in ("ok", "n/a") else " **!**"))
        lines.append(f"| {node['host']} | " + " | ".join(cells) + f" | {node['status']} |")
    lines.append("")
    for node in outcome.get("nodes") or []:
        for reason in node.get("reasons") or []:
            lines.append(f"- **{node['host']}**: {reason}")
    if outcome.get("excluded"):
        lines.append(f"- Excluded from the campaign: {', '.join(outcome['excluded'])}")
    lines.append("")
    return lines


def load_outcome(path: str | Path) -> dict | None:
    """A written healthcheck.json, or None when there is none."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
