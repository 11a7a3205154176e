"""Reports of scored sets: one console line, JSON, Markdown and a self-contained HTML page.

No Ansible imports.  The HTML page needs nothing but itself: the CSS is inline, there is no
JavaScript, and the plots are inline SVG drawn here (no plotting library).  Per set it shows the
eval metric against samples for every run (the ``eval_accuracy`` events of the logs, read with
:mod:`mlperf_repro.mllog`) with the quality target, the minutes of every run as bars with the
runs the olympic mean leaves out marked, the RCP verdict and factor, the reasons and the
comparison with the reference submission.
"""

from __future__ import annotations

import html
import json
import math
import os
import stat
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .mllog import iter_events

REPORT_FILES = ("report.json", "report.md", "report.html")

# Ten colours that stay distinguishable on white (Tableau 10).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
           "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def is_valid(score: Mapping[str, Any]) -> bool:
    """The set's ``valid``, and never for a score that is not a positive number of minutes
    (a score.json from an older scorer may say valid for a negative time)."""
    minutes = score.get("score_minutes")
    positive = (isinstance(minutes, (int, float)) and not isinstance(minutes, bool)
                and math.isfinite(minutes) and minutes > 0)
    return bool(score.get("valid")) and positive


def reasons(score: Mapping[str, Any]) -> list[str]:
    """The set's reasons, plus why a score presented as valid is not (see :func:`is_valid`)."""
    out = list(score.get("reasons") or [])
    if score.get("valid") and not is_valid(score):
        out.append(f"score {score.get('score_minutes')!r} min is not a positive number of minutes")
    return out


def score_line(score: Mapping[str, Any]) -> str:
    """``smoke: 0.0312 min (olympic 0.0312 x RCP 1.0000), 10 runs, valid``"""
    runs = score.get("runs") or []
    verdict = "valid" if is_valid(score) else "NOT VALID: " + "; ".join(reasons(score))
    rcp = score.get("rcp") or {}
    line = (f"{score.get('benchmark')}: score {_fmt(score.get('score_minutes'))} min "
            f"(olympic {_fmt(score.get('olympic_minutes'))} x RCP factor {_fmt(rcp.get('factor'))}, "
            f"RCP {rcp.get('status')}), {len(runs)} runs, {verdict}")
    versus = score.get("versus_reference")
    if versus:
        line += f"; {versus['sentence']}"
    return line


# --------------------------------------------------------------------------
# Which runs the olympic mean leaves out
# --------------------------------------------------------------------------

def _max_dropped(benchmark: Any) -> int:
    # Same rule as scoring.max_dropped_runs, repeated to keep this module free of the
    # mlperf-logging/numpy import (the report runs where only score.json files exist).
    return 4 if benchmark == "unet3d" else 1


def run_roles(score: Mapping[str, Any]) -> list[str]:
    """Per run (in ``runs`` order): ``counted``, ``fastest``/``slowest`` (left out of the
    olympic mean), ``not counted`` (non-compliant, crashed: dropped first) or ``no time``.

    Ties are broken by file order, like a stable sort.  When the set has no olympic mean
    (too few runs, too many dropped) every run with a time is ``counted``.
    """
    runs = score.get("runs") or []
    roles = []
    for run in runs:
        if run.get("counted") is False:
            roles.append("not counted")
        elif run.get("minutes") is None:
            roles.append("no time")
        else:
            roles.append("counted")
    if score.get("olympic_minutes") is None:
        return roles
    counted = sorted((runs[i]["minutes"], i) for i, role in enumerate(roles) if role == "counted")
    max_dropped = _max_dropped(score.get("benchmark"))
    n_dropped = sum(1 for role in roles if role != "counted")
    slow = max(max_dropped - n_dropped, 0)
    for _, index in counted[:max_dropped]:
        roles[index] = "fastest"
    for _, index in counted[len(counted) - slow:] if slow else []:
        roles[index] = "slowest"
    return roles


# --------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------

def markdown(title: str, sets: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    out = [f"# {title}", ""]
    for name, score in sets:
        rcp = score.get("rcp") or {}
        out += [f"## {name}", "", score_line(score), "",
                f"- benchmark: `{score.get('benchmark')}`, ruleset {score.get('ruleset')}",
                f"- score: **{_fmt(score.get('score_minutes'))} min** "
                f"(olympic mean {_fmt(score.get('olympic_minutes'))} min x RCP factor "
                f"{_fmt(rcp.get('factor'))}; RCP {rcp.get('status')})",
                f"- valid: {'yes' if is_valid(score) else 'no'}"]
        for reason in reasons(score):
            out.append(f"  - {reason}")
        if score.get("versus_reference"):
            out.append(f"- versus reference: {score['versus_reference']['sentence']}")
        for line in _vendor_lines(score):
            kind, _, text = line.partition(": ")
            out.append(f"- {kind}: {text}")
        out += ["", "| run | minutes | status | samples to converge | compliant | in the mean |",
                "|---|---:|---|---:|---|---|"]
        for run, role in zip(score.get("runs") or [], run_roles(score)):
            out.append(f"| {run.get('file')} | {_fmt(run.get('minutes'))} | {run.get('status')} | "
                       f"{run.get('samples_to_converge', '-')} | "
                       f"{'yes' if run.get('compliant') else 'no'} | {_role_words(role)} |")
        out.append("")
    return "\n".join(out)


def vendor_notes(set_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What the campaign recorded about AMD's own files when it started (its campaign.json,
    collected beside the logs): the image's config against the catalog, AMD's launcher against
    the native runner. ``{"config": sentence or None, "config_differences": {...},
    "launch": [sentence, ...]}``; empty when the campaign recorded none."""
    if set_dir is None:
        return {}
    try:
        spec = json.loads((Path(set_dir) / "campaign.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    notes: dict[str, Any] = {}
    config = spec.get("vendor_config") if isinstance(spec, dict) else None
    if isinstance(config, dict):
        notes["config"] = config.get("summary")
        notes["config_source"] = config.get("source")
        notes["config_differences"] = config.get("differences") or {}
    launch = spec.get("vendor_launch") if isinstance(spec, dict) else None
    if isinstance(launch, dict):
        notes["launch"] = [f"{d.get('kind')} {d.get('name')}: {d.get('difference')}"
                           + (f" (AMD's: {d.get('amd')})" if d.get("amd") not in (None, "") else "")
                           + (f" (native: {d.get('native')})" if d.get("native") not in (None, "") else "")
                           for d in launch.get("differences") or []]
        notes["launch_script"] = launch.get("script")
    return notes


def _vendor_lines(score: Mapping[str, Any]) -> list[str]:
    """The report's lines about the vendor's files and the logs' own label (plain text)."""
    lines = []
    label = (score.get("platform") or {}).get("label_disagrees")
    if label:
        lines.append(f"label: {label}")
    vendor = score.get("vendor") or {}
    if vendor.get("config"):
        lines.append(f"config: {vendor['config']}")
        if vendor.get("config_source") == "absent":
            lines.append("config: NOT the vendor's file - rendered from the catalog")
    if vendor.get("launch_script"):
        launch = vendor.get("launch") or []
        lines.append(f"launch: the native runner against AMD's {vendor['launch_script']}: "
                     + ("the same container options" if not launch else f"{len(launch)} difference(s)"))
        lines += [f"launch: {item}" for item in launch]
    return lines


def _role_words(role: str) -> str:
    return {"counted": "yes", "fastest": "no (fastest)", "slowest": "no (slowest)",
            "not counted": "no (dropped)", "no time": "no (no time)"}[role]


# --------------------------------------------------------------------------
# Eval curves from the logs
# --------------------------------------------------------------------------

def eval_curve(path: str | os.PathLike) -> tuple[str, list[tuple[float, float]]]:
    """(x unit, points) of one log's ``eval_accuracy`` events up to its first ``run_stop``.

    x is ``samples_count`` (``epoch_num`` when a log has no samples_count); lines repeated by
    every rank collapse to one point per x (the last value logged for it).
    """
    by_samples: dict[float, float] = {}
    by_epoch: dict[float, float] = {}
    for event in iter_events(path):
        if event.key == "run_stop":
            break
        if event.key != "eval_accuracy" or isinstance(event.value, bool) \
                or not isinstance(event.value, (int, float)) or not math.isfinite(event.value):
            continue
        for unit, store in (("samples_count", by_samples), ("epoch_num", by_epoch)):
            x = event.metadata.get(unit)
            if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                store[float(x)] = float(event.value)
    if by_samples:
        return "samples", sorted(by_samples.items())
    return "epochs", sorted(by_epoch.items())


def _log_path(run: Mapping[str, Any], set_dir: Path | None) -> Path | None:
    candidates = []
    if set_dir is not None and run.get("file"):
        candidates.append(set_dir / str(run["file"]))
    if run.get("path"):
        candidates.append(Path(str(run["path"])))
    return next((p for p in candidates if p.is_file()), None)


def set_curves(score: Mapping[str, Any], set_dir: str | os.PathLike | None) -> dict[str, Any]:
    """``{"unit": ..., "runs": {file: [(x, y), ...]}, "missing": [files]}`` for one set."""
    base = Path(set_dir) if set_dir is not None else None
    curves: dict[str, list[tuple[float, float]]] = {}
    missing, units = [], set()
    for run in score.get("runs") or []:
        path = _log_path(run, base)
        if path is None:
            missing.append(str(run.get("file")))
            continue
        unit, points = eval_curve(path)
        curves[str(run.get("file"))] = points
        if points:
            units.add(unit)
    unit = units.pop() if len(units) == 1 else ("samples" if not units else "samples or epochs")
    return {"unit": unit, "runs": curves, "missing": missing}


# --------------------------------------------------------------------------
# SVG
# --------------------------------------------------------------------------

def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (about ``count`` intervals)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi <= lo:
        pad = abs(lo) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = magnitude
    for mult in (1, 2, 2.5, 5, 10):
        step = mult * magnitude
        if (hi - lo) / step <= count:
            break
    start, end = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return [round(start + i * step, 12) for i in range(n + 1)]


def _tick_labels(ticks: Sequence[float]) -> list[tuple[float, str]]:
    """Each tick with its label, escaped for SVG (as many decimals as the ticks' step needs)."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    return [(tick, _esc(_tick_label(tick, step))) for tick in ticks]


def _tick_label(value: float, step: float) -> str:
    big = max(abs(value), abs(step))
    if big >= 1e6:
        return f"{value / 1e6:.{_decimals(step / 1e6)}f}M"
    if big >= 1e4:
        return f"{value / 1e3:.{_decimals(step / 1e3)}f}k"
    return f"{value:.{_decimals(step)}f}"


def _decimals(step: float) -> int:
    if step <= 0 or step >= 1:
        return 0 if step == int(step) else 1
    return min(6, max(0, -math.floor(math.log10(step) + 1e-9)) + (0 if _is_round(step) else 1))


def _is_round(step: float) -> bool:
    scaled = step / 10 ** math.floor(math.log10(step))
    return abs(scaled - round(scaled)) < 1e-9


def _num(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


class _Frame:
    """A plot area inside an SVG of ``width`` x ``height`` with linear scales."""

    def __init__(self, width: int, height: int, left: int, right: int, top: int, bottom: int,
                 xticks: Sequence[float], yticks: Sequence[float]) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top
        self.xticks, self.yticks = list(xticks), list(yticks)

    def x(self, value: float) -> float:
        lo, hi = self.xticks[0], self.xticks[-1]
        return self.x0 + (value - lo) / (hi - lo) * (self.x1 - self.x0)

    def y(self, value: float) -> float:
        lo, hi = self.yticks[0], self.yticks[-1]
        return self.y0 + (value - lo) / (hi - lo) * (self.y1 - self.y0)

    def axes(self, xlabel: str, ylabel: str, xlabels: bool = True) -> list[str]:
        out = ['<g class="axes">']
        for tick, label in _tick_labels(self.yticks):
            y = _num(self.y(tick))
            out.append(f'<line class="grid" x1="{self.x0}" y1="{y}" x2="{self.x1}" y2="{y}"/>')
            out.append(f'<text class="tick" x="{self.x0 - 6}" y="{y}" text-anchor="end" '
                       f'dominant-baseline="middle">{label}</text>')
        for tick, label in _tick_labels(self.xticks) if xlabels else ():
            x = _num(self.x(tick))
            out.append(f'<line class="tickmark" x1="{x}" y1="{self.y0}" x2="{x}" y2="{self.y0 + 4}"/>')
            out.append(f'<text class="tick" x="{x}" y="{self.y0 + 16}" text-anchor="middle">{label}</text>')
        out.append(f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x1}" y2="{self.y0}"/>')
        out.append(f'<line class="axis" x1="{self.x0}" y1="{self.y0}" x2="{self.x0}" y2="{self.y1}"/>')
        out.append(f'<text class="label" x="{_num((self.x0 + self.x1) / 2)}" y="{self.height - 6}" '
                   f'text-anchor="middle">{_esc(xlabel)}</text>')
        mid = _num((self.y0 + self.y1) / 2)
        out.append(f'<text class="label" x="14" y="{mid}" text-anchor="middle" '
                   f'transform="rotate(-90 14 {mid})">{_esc(ylabel)}</text>')
        out.append("</g>")
        return out


def _svg_open(css_class: str, frame: _Frame, label: str) -> str:
    return (f'<svg class="plot {css_class}" role="img" aria-label="{_esc(label)}" '
            f'width="{frame.width}" height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}">'
            f'<title>{_esc(label)}</title>')


def eval_plot_svg(name: str, score: Mapping[str, Any], curves: Mapping[str, Any]) -> str:
    """Eval metric vs samples, one line per run, the quality target dashed."""
    runs = score.get("runs") or []
    series = [(i, str(run.get("file")), curves["runs"].get(str(run.get("file"))) or [])
              for i, run in enumerate(runs)]
    target = next((run.get("quality_target") for run in runs if run.get("quality_target") is not None), None)
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts] + ([float(target)] if target is not None else [])
    xticks = _nice_ticks(min(xs) if xs else 0.0, max(xs) if xs else 1.0)
    yticks = _nice_ticks(min(ys) if ys else 0.0, max(ys) if ys else 1.0)
    frame = _Frame(780, 340, 70, 170, 14, 44, xticks, yticks)
    label = f"{name}: eval_accuracy vs {curves['unit']} for {len(series)} runs"
    out = [_svg_open("eval-plot", frame, label), *frame.axes(curves["unit"], "eval_accuracy (lower is better)")]
    roles = run_roles(score)
    for (index, file, points), role in zip(series, roles):
        colour = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="2 3"' if role in ("not counted", "no time") else ""
        coords = " ".join(f"{_num(frame.x(x))},{_num(frame.y(y))}" for x, y in points)
        out.append(f'<g class="run" data-file="{_esc(file)}" data-points="{len(points)}">'
                   f'<title>{_esc(file)}: {len(points)} evals</title>')
        if len(points) > 1:
            out.append(f'<polyline class="curve" points="{coords}" stroke="{colour}"{dash}/>')
        if len(points) <= 60:
            for x, y in points:
                out.append(f'<circle cx="{_num(frame.x(x))}" cy="{_num(frame.y(y))}" r="2.5" '
                           f'fill="{colour}"><title>{_esc(file)}: {_esc(f"{y:.4f}")} at '
                           f'{_esc(f"{x:g}")} {_esc(curves["unit"])}</title></circle>')
        out.append("</g>")
    if target is not None:
        y = _num(frame.y(float(target)))
        out.append(f'<g class="target" data-target="{_esc(repr(float(target)))}">'
                   f'<line x1="{frame.x0}" y1="{y}" x2="{frame.x1}" y2="{y}"/>'
                   f'<text x="{frame.x1 - 4}" y="{y}" dy="-5" text-anchor="end">target {_esc(f"{target:g}")}'
                   f'</text></g>')
    out += _legend(frame, [(PALETTE[i % len(PALETTE)], file + ("" if pts else " (no eval)"))
                           for i, file, pts in series])
    if not xs:
        out.append(f'<text class="empty" x="{_num((frame.x0 + frame.x1) / 2)}" '
                   f'y="{_num((frame.y0 + frame.y1) / 2)}" text-anchor="middle">no eval_accuracy in the logs</text>')
    out.append("</svg>")
    return "".join(out)


def _legend(frame: _Frame, entries: Sequence[tuple[str, str]]) -> list[str]:
    out = ['<g class="legend">']
    for row, (colour, text) in enumerate(entries):
        y = frame.y1 + 6 + row * 17
        out.append(f'<rect x="{frame.x1 + 12}" y="{y}" width="11" height="11" fill="{colour}"/>'
                   f'<text x="{frame.x1 + 28}" y="{y + 9}">{_esc(text)}</text>')
    out.append("</g>")
    return out


_BAR_STYLE = {  # role -> (css class, legend text)
    "counted": ("bar-counted", "in the olympic mean"),
    "fastest": ("bar-olympic", "left out: fastest"),
    "slowest": ("bar-olympic", "left out: slowest"),
    "not counted": ("bar-dropped", "dropped (see note)"),
    "no time": ("bar-dropped", "no time"),
}


def minutes_plot_svg(name: str, score: Mapping[str, Any]) -> str:
    """Minutes per run as bars; the olympic mean's left-out and dropped runs marked."""
    runs = score.get("runs") or []
    roles = run_roles(score)
    minutes = [run.get("minutes") for run in runs]
    known = [m for m in minutes if m is not None]
    lines = [(score.get("olympic_minutes"), "olympic mean", "mean-line"),
             (score.get("score_minutes"), "score", "score-line")]
    top = max(known + [v for v, _, _ in lines if v is not None] + [0.0])
    yticks = _nice_ticks(0.0, top * 1.05 if top > 0 else 1.0)
    n = max(len(runs), 1)
    frame = _Frame(780, 320, 70, 170, 14, 60, [0.0, float(n)], yticks)
    label = f"{name}: minutes to train per run"
    out = [_svg_open("ttt-plot", frame, label), '<defs><pattern id="hatch" width="6" height="6" '
           'patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" '
           'fill="#f4c7c3"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c0392b" stroke-width="3"/>'
           '</pattern></defs>', *frame.axes("run", "minutes to train", xlabels=False)]
    slot = (frame.x1 - frame.x0) / n
    for i, (run, role) in enumerate(zip(runs, roles)):
        file = str(run.get("file"))
        css, words = _BAR_STYLE[role]
        x = frame.x0 + i * slot + slot * 0.15
        width = slot * 0.7
        centre = _num(x + width / 2)
        value = run.get("minutes")
        reason = run.get("dropped_reason") or ""
        tip = f"{file}: {_fmt(value)} min, {words}" + (f" ({reason})" if reason else "")
        attrs = (f'class="bar {css}" data-file="{_esc(file)}" data-role="{_esc(role)}" '
                 f'data-minutes="{_esc(repr(value) if value is not None else "")}"')
        if value is not None:
            y = frame.y(float(value))
            out.append(f'<rect {attrs} x="{_num(x)}" y="{_num(y)}" width="{_num(width)}" '
                       f'height="{_num(frame.y0 - y)}"><title>{_esc(tip)}</title></rect>')
        else:
            out.append(f'<text {attrs} x="{centre}" y="{frame.y0 - 6}" text-anchor="middle">'
                       f'&#215;<title>{_esc(tip)}</title></text>')
        if role != "counted":
            mark = {"fastest": "fastest", "slowest": "slowest"}.get(role, "dropped")
            out.append(f'<text class="mark" x="{centre}" y="{frame.y0 + 28}" text-anchor="middle">'
                       f'{mark}</text>')
        out.append(f'<text class="tick" x="{centre}" y="{frame.y0 + 15}" text-anchor="middle">'
                   f'{_esc(_short_run_name(file, i))}</text>')
    shown_lines: list[tuple[str, str]] = []
    for value, words, css in lines:
        if value is None or (css == "score-line" and value == score.get("olympic_minutes")):
            continue
        y = _num(frame.y(float(value)))
        out.append(f'<g class="{css}" data-minutes="{_esc(repr(float(value)))}">'
                   f'<line x1="{frame.x0}" y1="{y}" x2="{frame.x1}" y2="{y}"/>'
                   f'<title>{_esc(words)} {_esc(_fmt(value))} min</title></g>')
        shown_lines.append((css, f"{words} {_fmt(value)}"))
    present = []
    for role in roles:
        css, words = _BAR_STYLE[role]
        if (css, words) not in present:
            present.append((css, words))
    out.append('<g class="legend">')
    for row, (css, words) in enumerate(shown_lines):
        y = frame.y1 + 6 + row * 17
        out.append(f'<g class="{css}"><line x1="{frame.x1 + 8}" y1="{y + 5}" x2="{frame.x1 + 26}" '
                   f'y2="{y + 5}"/></g><text x="{frame.x1 + 30}" y="{y + 9}">{_esc(words)}</text>')
    for offset, (css, words) in enumerate(present):
        y = frame.y1 + 6 + (len(shown_lines) + offset) * 17
        out.append(f'<rect class="{css}" x="{frame.x1 + 12}" y="{y}" width="11" height="11"/>'
                   f'<text x="{frame.x1 + 30}" y="{y + 9}">{_esc(words)}</text>')
    out.append("</g></svg>")
    return "".join(out)


def _short_run_name(file: str, index: int) -> str:
    stem = file.rsplit(".", 1)[0]
    return stem.replace("result_", "#") if len(stem) > 10 else stem or f"#{index}"


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:980px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600;padding:.4em .6em;border-radius:4px;display:inline-block}
.valid{background:#e3f4e1;color:#1e6b1a}.invalid{background:#fbe4e2;color:#9b1c12}
.versus{font-size:1.05em}.reasons li{margin:.15em 0}
figure{margin:1em 0}figcaption{font-size:.88em;color:#555}
svg.plot{display:block;max-width:100%;height:auto;font-size:11px;background:#fff}
svg .grid{stroke:#eee}svg .axis,svg .tickmark{stroke:#555}
svg .curve{fill:none;stroke-width:1.6}
svg .target line{stroke:#c0392b;stroke-width:1.4;stroke-dasharray:6 4}svg .target text{fill:#c0392b}
svg .mean-line line{stroke:#222;stroke-width:1.2}
svg .score-line line{stroke:#222;stroke-width:1.2;stroke-dasharray:5 3}
svg .bar-counted{fill:#4e79a7}svg .bar-olympic{fill:#c9c9c9;stroke:#777}
svg .bar-dropped{fill:url(#hatch);stroke:#c0392b}svg text.bar-dropped{fill:#c0392b;font-size:16px}
svg .mark{fill:#555;font-size:10px}svg .label{fill:#333}svg .empty{fill:#999}
tr.role-fastest td,tr.role-slowest td{color:#777}tr.role-not-counted td,tr.role-no-time td{color:#9b1c12}
"""


def _row(label: str, value: Any, attr: str, raw: Any = None) -> str:
    data = "" if raw is None else f' data-value="{_esc(repr(raw))}"'
    return f'<tr><th>{_esc(label)}</th><td class="num" data-key="{_esc(attr)}"{data}>{_esc(value)}</td></tr>'


def _set_section(index: int, name: str, score: Mapping[str, Any], curves: Mapping[str, Any]) -> str:
    rcp = score.get("rcp") or {}
    valid = is_valid(score)
    out = [f'<section class="set" id="set-{index}" data-name="{_esc(name)}">',
           f'<h2>{_esc(name)} &#8212; {_esc(score.get("benchmark"))}</h2>',
           f'<p class="verdict {"valid" if valid else "invalid"}">'
           f'{"Valid score" if valid else "Not a valid score"}: '
           f'{_esc(_fmt(score.get("score_minutes")))} min</p>']
    versus = score.get("versus_reference")
    if versus:
        out.append(f'<p class="versus">{_esc(versus["sentence"])}</p>')
    samples = score.get("samples_to_converge")
    out += ['<table class="summary">',
            _row("score (minutes)", _fmt(score.get("score_minutes")), "score_minutes", score.get("score_minutes")),
            _row("olympic mean (minutes)", _fmt(score.get("olympic_minutes")), "olympic_minutes",
                 score.get("olympic_minutes")),
            _row("RCP verdict", rcp.get("status"), "rcp_status"),
            _row("RCP normalization factor", _fmt(rcp.get("factor"), ".6f"), "rcp_factor", rcp.get("factor")),
            _row("RCP message", rcp.get("message"), "rcp_message"),
            _row("samples to converge (olympic)", _fmt(samples, ".1f"), "samples_to_converge", samples),
            _row("global batch size", score.get("global_batch_size"), "global_batch_size"),
            _row("runs", f'{len(score.get("runs") or [])} of {score.get("expected_runs", "?")}', "runs"),
            _row("ruleset", score.get("ruleset"), "ruleset"),
            _row("division", score.get("division"), "division"),
            "</table>"]
    if reasons(score):
        out.append('<ul class="reasons">' + "".join(f"<li>{_esc(r)}</li>" for r in reasons(score)) + "</ul>")
    if _vendor_lines(score):
        out.append('<ul class="vendor">' + "".join(f"<li>{_esc(r)}</li>" for r in _vendor_lines(score)) + "</ul>")
    out.append(f'<figure>{eval_plot_svg(name, score, curves)}<figcaption>eval_accuracy against '
               f'{_esc(curves["unit"])}, one line per run; dashed red: the quality target.'
               + (f' Logs not found: {_esc(", ".join(curves["missing"]))}.' if curves["missing"] else "")
               + '</figcaption></figure>')
    out.append(f'<figure>{minutes_plot_svg(name, score)}<figcaption>Minutes to train per run. Grey: '
               'left out of the olympic mean (fastest and slowest); hatched red: dropped (not compliant '
               'or no time). Solid line: olympic mean; dashed: score (after the RCP factor).</figcaption>'
               '</figure>')
    out.append('<table class="runs"><tr><th>run</th><th class="num">minutes</th><th>status</th>'
               '<th class="num">samples to converge</th><th>compliant</th><th>in the mean</th>'
               '<th>note</th></tr>')
    for run, role in zip(score.get("runs") or [], run_roles(score)):
        minutes = run.get("minutes")
        out.append(f'<tr class="role-{role.replace(" ", "-")}"><td>{_esc(run.get("file"))}</td>'
                   f'<td class="num" data-minutes="{_esc(repr(minutes) if minutes is not None else "")}">'
                   f'{_esc(_fmt(minutes))}</td><td>{_esc(run.get("status"))}</td>'
                   f'<td class="num">{_esc(run.get("samples_to_converge", "-"))}</td>'
                   f'<td>{"yes" if run.get("compliant") else "no"}</td><td>{_esc(_role_words(role))}</td>'
                   f'<td>{_esc(run.get("dropped_reason") or "")}</td></tr>')
    out.append("</table></section>")
    return "\n".join(out)


def html_report(title: str, sets: Sequence[tuple[str, Mapping[str, Any]]],
                curves: Sequence[Mapping[str, Any]] | None = None) -> str:
    """The whole page.  ``curves[i]`` is :func:`set_curves` of ``sets[i]`` (empty when None)."""
    if curves is None:
        curves = [{"unit": "samples", "runs": {}, "missing": []} for _ in sets]
    body = [_set_section(i, name, score, curve) for i, ((name, score), curve) in enumerate(zip(sets, curves))]
    toc = "".join(f'<li><a href="#set-{i}">{_esc(name)}</a>: {_esc(_fmt(score.get("score_minutes")))} min'
                  f'{"" if is_valid(score) else " (not valid)"}</li>' for i, (name, score) in enumerate(sets))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
            f"<style>{_CSS}</style></head><body>\n<h1>{_esc(title)}</h1>\n<ul class=\"toc\">{toc}</ul>\n"
            + "\n".join(body) + "\n</body></html>\n")


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def render_reports(title: str, campaign: str, sets: Sequence[tuple[str, Mapping[str, Any]]],
                   set_dirs: Sequence[str | os.PathLike | None]) -> dict[str, str]:
    """The text of report.json, report.md and report.html for ``sets`` (logs in ``set_dirs``)."""
    # A set is never presented as valid with a score that is not a positive time (is_valid).
    notes = [vendor_notes(set_dir) for set_dir in set_dirs]  # each campaign.json read once
    sets = [(name, {**score, "valid": is_valid(score), "reasons": reasons(score),
                    **({"vendor": note} if note else {})})
            for (name, score), note in zip(sets, notes)]
    curves = [set_curves(score, set_dir) for (_, score), set_dir in zip(sets, set_dirs)]
    tunables = {name: run_tunables(score, set_dir) for (name, score), set_dir in zip(sets, set_dirs)}
    page = html_report(title, sets, curves)
    return {
        "report.json": json.dumps({"campaign": campaign, "sets": dict(sets), "tunables": tunables},
                                  indent=2, sort_keys=True) + "\n",
        "report.md": markdown(title, sets) + tunables_markdown(tunables),
        "report.html": page.replace("\n</body></html>", "\n" + tunables_html(tunables) + "\n</body></html>", 1),
    }


# --------------------------------------------------------------------------
# Runtime tunables per run (the campaign runner's record in state.json)
# --------------------------------------------------------------------------

def run_tunables(score: Mapping[str, Any], set_dir: str | os.PathLike | None) -> dict[str, Any]:
    """Per run of the set (its log's name): the tunables the runner read at the run's start -
    ``as_amd``, ``drift`` (name -> current, wanted), ``state`` - or None where not recorded
    (campaign_tunables off, a Slurm job, a campaign from before the record existed)."""
    records: dict[str, Any] = {}
    try:
        state = json.loads((Path(set_dir) / "state.json").read_text(encoding="utf-8")) if set_dir else {}
    except (OSError, ValueError):
        state = {}
    for record in (state or {}).get("runs") or []:
        if isinstance(record, Mapping) and isinstance(record.get("tunables"), Mapping):
            records[os.path.basename(str(record.get("log")))] = dict(record["tunables"])
    return {str(run.get("file")): records.get(os.path.basename(str(run.get("file"))))
            for run in score.get("runs") or []}


def tunables_words(record: Mapping[str, Any] | None) -> str:
    """``as AMD sets them`` / ``drift from AMD's: nmi_watchdog is 1 (AMD: 0), ...`` / ``not recorded``."""
    if not record:
        return "not recorded"
    if record.get("error"):
        return f"not read: {record['error']}"
    drift = record.get("drift") or {}
    if not drift:
        return "as AMD sets them"
    return "drift from AMD's: " + ", ".join(
        f"{name} is {item.get('current')} (AMD: {item.get('wanted')})" if isinstance(item, Mapping) else str(name)
        for name, item in sorted(drift.items()))


_NOT_RECORDED = ("Not recorded for these runs (campaign_tunables off, or runs launched by Slurm, "
                 "whose nodes are checked before the job is submitted).")


def tunables_markdown(tunables: Mapping[str, Mapping[str, Any]]) -> str:
    out = ["## Runtime tunables per run", "",
           "AMD's runtime_tunables.sh settings as read at the start of each run.", ""]
    if not any(record for runs in tunables.values() for record in runs.values()):
        return "\n".join(out[:2] + [_NOT_RECORDED, ""])
    for name, runs in tunables.items():
        recorded = [r for r in runs.values() if r]
        as_amd = sum(1 for r in recorded if not r.get("error") and not r.get("drift"))
        out += [f"### {name}", "", f"As AMD sets them in {as_amd} of {len(runs)} runs"
                + ("" if len(recorded) == len(runs) else f" ({len(runs) - len(recorded)} not recorded)")
                + ".", ""]
        out += [f"- {file}: {tunables_words(record)}" for file, record in runs.items()]
        out.append("")
    return "\n".join(out)


def tunables_html(tunables: Mapping[str, Mapping[str, Any]]) -> str:
    out = ['<section class="tunables"><h2>Runtime tunables per run</h2>',
           "<p>AMD's runtime_tunables.sh settings as read at the start of each run.</p>"]
    if not any(record for runs in tunables.values() for record in runs.values()):
        return "\n".join(out[:1] + [f"<p>{_esc(_NOT_RECORDED)}</p>", "</section>"])
    for name, runs in tunables.items():
        out.append(f'<h3>{_esc(name)}</h3><table class="tunables" data-set="{_esc(name)}">'
                   '<tr><th>run</th><th>as AMD sets them</th><th>tunables</th></tr>')
        for file, record in runs.items():
            verdict = "-" if not record or record.get("error") else ("yes" if not record.get("drift") else "no")
            out.append(f'<tr data-as-amd="{verdict}"><td>{_esc(file)}</td><td>{verdict}</td>'
                       f'<td>{_esc(tunables_words(record))}</td></tr>')
        out.append("</table>")
    out.append("</section>")
    return "\n".join(out)


REPORT_MODE = 0o644
REPORT_DIR_MODE = 0o755


def write_files(out_dir: str | os.PathLike, outputs: Mapping[str, str]) -> dict[str, str]:
    """Write ``outputs`` (name -> text) into ``out_dir``; returns those that changed.

    Files are replaced atomically with mode 0644, directories created 0755, whatever the umask.
    """
    from .node.fileio import make_dirs, write_atomic  # pylint: disable=import-outside-toplevel

    out = Path(out_dir)
    make_dirs(out, REPORT_DIR_MODE)
    written = {}
    for name, text in outputs.items():
        target = out / name
        data = text.encode("utf-8")
        if not target.is_file() or target.read_bytes() != data:
            write_atomic(str(target), data, REPORT_MODE)
            written[name] = str(target)
        elif stat.S_IMODE(target.stat().st_mode) != REPORT_MODE:
            os.chmod(target, REPORT_MODE)
            written[name] = str(target)
    return written


def load_scored_sets(campaign_dir: str | os.PathLike) -> list[tuple[str, dict[str, Any], Path]]:
    """(name, score, set directory) for every ``*/score.json`` of a campaign."""
    campaign_dir = Path(campaign_dir)
    return [(path.parent.name, json.loads(path.read_text(encoding="utf-8")), path.parent)
            for path in sorted(campaign_dir.glob("*/score.json"))]


def write_reports(campaign_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, str]:
    """report.json, report.md and report.html for every scored set (``*/score.json``) of a campaign.

    Written into ``out_dir`` (default: the campaign directory); returns the files that changed.
    """
    campaign_dir = Path(campaign_dir)
    loaded = load_scored_sets(campaign_dir)
    if not loaded:
        raise ValueError(f"{campaign_dir}: no scored set (*/score.json): run the score stage first")
    title = f"MLPerf reproduction report - campaign {campaign_dir.name}"
    outputs = render_reports(title, campaign_dir.name, [(name, score) for name, score, _ in loaded],
                             [set_dir for _, _, set_dir in loaded])
    return write_files(out_dir if out_dir is not None else campaign_dir, outputs)
