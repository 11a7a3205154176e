"""Reports of scored sets: one console line, JSON and Markdown (no Ansible imports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def score_line(score: Mapping[str, Any]) -> str:
    """``smoke: 0.0312 min (olympic 0.0312 x RCP 1.0000), 10 runs, valid``"""
    runs = score.get("runs") or []
    verdict = "valid" if score.get("valid") else "NOT VALID: " + "; ".join(score.get("reasons") or [])
    rcp = score.get("rcp") or {}
    line = (f"{score.get('benchmark')}: score {_fmt(score.get('score_minutes'))} min "
            f"(olympic {_fmt(score.get('olympic_minutes'))} x RCP factor {_fmt(rcp.get('factor'))}, "
            f"RCP {rcp.get('status')}), {len(runs)} runs, {verdict}")
    versus = score.get("versus_reference")
    if versus:
        line += f"; {versus['sentence']}"
    return line


def markdown(title: str, sets: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    out = [f"# {title}", ""]
    for name, score in sets:
        rcp = score.get("rcp") or {}
        out += [f"## {name}", "", score_line(score), "",
                f"- benchmark: `{score.get('benchmark')}`, ruleset {score.get('ruleset')}",
                f"- score: **{_fmt(score.get('score_minutes'))} min** "
                f"(olympic mean {_fmt(score.get('olympic_minutes'))} min x RCP factor "
                f"{_fmt(rcp.get('factor'))}; RCP {rcp.get('status')})",
                f"- valid: {'yes' if score.get('valid') else 'no'}"]
        for reason in score.get("reasons") or []:
            out.append(f"  - {reason}")
        if score.get("versus_reference"):
            out.append(f"- versus reference: {score['versus_reference']['sentence']}")
        out += ["", "| run | minutes | status | samples to converge | compliant |",
                "|---|---:|---|---:|---|"]
        for run in score.get("runs") or []:
            out.append(f"| {run.get('file')} | {_fmt(run.get('minutes'))} | {run.get('status')} | "
                       f"{run.get('samples_to_converge', '-')} | "
                       f"{'yes' if run.get('compliant') else 'no'} |")
        out.append("")
    return "\n".join(out)


def write_reports(campaign_dir: str | Path) -> dict[str, str]:
    """report.json and report.md for every scored set (``*/score.json``) of a campaign."""
    campaign_dir = Path(campaign_dir)
    sets = []
    for path in sorted(campaign_dir.glob("*/score.json")):
        sets.append((path.parent.name, json.loads(path.read_text(encoding="utf-8"))))
    if not sets:
        raise ValueError(f"{campaign_dir}: no scored set (*/score.json): run the score stage first")
    title = f"MLPerf reproduction report - campaign {campaign_dir.name}"
    outputs = {
        "report.json": json.dumps({"campaign": campaign_dir.name, "sets": dict(sets)},
                                  indent=2, sort_keys=True) + "\n",
        "report.md": markdown(title, sets),
    }
    written = {}
    for name, text in outputs.items():
        target = campaign_dir / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written[name] = str(target)
    return written
