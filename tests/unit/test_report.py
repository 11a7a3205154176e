"""Reports: JSON, Markdown and the self-contained HTML page with its inline SVG plots.

Two real cases: a campaign as the score stage leaves it (``*/score.json`` beside the logs), and
``mlperf-repro report`` on directories of published logs.  The HTML is checked for
well-formedness (tag balance through html.parser), one plot of each kind per set, no network
resource, and numbers equal to the scores; where Debian's chromium is installed it also renders
the page headless and measures the drawn plots.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlperf_repro import cli  # noqa: E402
from mlperf_repro.compare import versus_reference  # noqa: E402
from mlperf_repro.report import (_nice_ticks, eval_curve, markdown, run_roles, score_line,  # noqa: E402
                                 write_reports)
from mlperf_repro.scoring import score_directory  # noqa: E402

DATA = ROOT / "tests" / "data" / "mlperf-logs"
AMD_LORA = DATA / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora"
PUBLISHED = sorted(p for p in (DATA / "v5.1").glob("*/results/*/*") if p.is_dir())
VOID = {"meta", "br", "img", "input", "link", "hr", "wbr", "source", "col", "area", "base", "embed",
        "param", "track"}


# ---------------------------------------------------------------- helpers

class Page(HTMLParser):
    """Parses a page, checks that every element is closed in order, and keeps the elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.elements: list[tuple[str, dict[str, str], list[str]]] = []  # tag, attrs, open ancestors

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), list(self.stack)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.elements.append((tag, dict(attrs), list(self.stack)))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def find(self, tag: str, css: str | None = None) -> list[dict[str, str]]:
        return [attrs for t, attrs, _ in self.elements
                if t == tag and (css is None or css in (attrs.get("class") or "").split())]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert page.problems == [] and page.stack == [], (page.problems, page.stack)
    return page


def sections(text: str) -> list[str]:
    return re.findall(r'<section class="set".*?</section>', text, flags=re.S)


def assert_offline(text: str, page: Page) -> None:
    assert "http://" not in text and "https://" not in text
    for tag, attrs, _ in page.elements:
        assert tag not in ("script", "link", "iframe", "img", "object", "embed"), tag
        for name in ("src", "href", "xlink:href", "action", "data"):
            value = attrs.get(name) or ""
            assert value == "" or value.startswith("#"), (tag, name, value)
    assert "@import" not in text and not re.search(r"url\((?!#)", text)


def assert_numbers_match(section: str, score: dict) -> None:
    """Every number the section shows comes from ``score`` (full precision in data-* attributes)."""
    page = parse(section)
    values = {a["data-key"]: a.get("data-value") for a in page.find("td") if "data-key" in a}
    for key, expected in (("score_minutes", score["score_minutes"]), ("olympic_minutes", score["olympic_minutes"]),
                          ("rcp_factor", score["rcp"]["factor"])):
        assert values[key] == (repr(expected) if expected is not None else None), key
    assert f">{score['rcp']['status']}<" in section
    if score["score_minutes"] is not None:
        assert f"{score['score_minutes']:.4f} min" in section
    bars = page.find("rect", "bar") + page.find("text", "bar")
    assert sorted(b["data-file"] for b in bars) == sorted(r["file"] for r in score["runs"])
    by_file = {b["data-file"]: b for b in bars}
    for run, role in zip(score["runs"], run_roles(score)):
        bar = by_file[run["file"]]
        assert bar["data-minutes"] == (repr(run["minutes"]) if run["minutes"] is not None else "")
        assert bar["data-role"] == role
    target = score["runs"][0]["quality_target"]
    assert page.find("g", "target")[0]["data-target"] == repr(float(target))
    for reason in score["reasons"]:
        assert html.escape(reason, quote=False) in section or html.escape(reason) in section
    if score.get("versus_reference"):
        assert html.escape(score["versus_reference"]["sentence"]) in section


def copy_set(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.glob("result_*.txt"):
        shutil.copyfile(path, target / path.name)
    return target


def set_lora_rank(path: Path, rank: int) -> None:
    path.write_text(path.read_text().replace('"key": "lora_rank", "value": 16',
                                             f'"key": "lora_rank", "value": {rank}'))


def drop_run_stop(path: Path) -> None:
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                            if '"key": "run_stop"' not in line))


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """A campaign as the score stage leaves it: node sets with their score.json (module output)."""
    root = tmp_path_factory.mktemp("campaign") / "20261128T120000Z"
    good = copy_set(AMD_LORA, root / "node1")
    one_dropped = copy_set(AMD_LORA, root / "node2")
    set_lora_rank(one_dropped / "result_4.txt", 8)
    reference = {"score_minutes": 8.27, "submission_id": "6.0-0036", "expected_minutes": 8.5}
    scores = {}
    for node in (good, one_dropped):
        score = score_directory(node).to_dict()
        score["versus_reference"] = versus_reference(score["score_minutes"], reference, "MI355X")
        (node / "score.json").write_text(json.dumps(score, indent=2, sort_keys=True) + "\n")
        scores[node.name] = score
    written = write_reports(root)
    return root, scores, written


@pytest.fixture(scope="module")
def logs_report(tmp_path_factory):
    """``mlperf-repro report`` on the published sets plus a set with two dropped runs."""
    work = tmp_path_factory.mktemp("logs")
    bad = copy_set(AMD_LORA, work / "two_dropped")
    set_lora_rank(bad / "result_2.txt", 8)
    drop_run_stop(bad / "result_5.txt")
    out = work / "report"
    dirs = [*PUBLISHED, bad]
    assert cli.main(["report", *map(str, dirs), "--out", str(out), "--title", "published"]) == 0
    return out, dirs


# ---------------------------------------------------------------- campaign reports

def test_campaign_writes_three_files_and_is_idempotent(campaign):
    root, _, written = campaign
    assert set(written) == {"report.json", "report.md", "report.html"}
    assert write_reports(root) == {}  # unchanged: nothing rewritten


def test_campaign_json_and_markdown(campaign):
    root, scores, _ = campaign
    data = json.loads((root / "report.json").read_text())
    assert data["campaign"] == root.name and data["sets"] == scores
    text = (root / "report.md").read_text()
    assert score_line(scores["node1"]) in text and "| result_7.txt | 9.7849 | success | 3072 | yes | no (fastest) |" in text
    assert "| result_4.txt |" in text and "no (dropped)" in text


def test_campaign_html(campaign):
    root, scores, _ = campaign
    text = (root / "report.html").read_text()
    page = parse(text)
    assert_offline(text, page)
    assert len(page.find("svg", "eval-plot")) == len(page.find("svg", "ttt-plot")) == len(scores) == 2
    for section, name in zip(sections(text), ("node1", "node2")):
        assert f'data-name="{name}"' in section
        assert_numbers_match(section, scores[name])
    roles = run_roles(scores["node2"])
    assert roles.count("not counted") == 1 and roles.count("fastest") == 1 and "slowest" not in roles
    assert roles[4] == "not counted"
    assert run_roles(scores["node1"]).count("slowest") == 1


def test_eval_plot_has_every_runs_points(campaign):
    root, scores, _ = campaign
    page = parse((root / "report.html").read_text())
    groups = [g for g in page.find("g", "run")]
    assert len(groups) == 20
    for group in groups[:10]:
        _, points = eval_curve(AMD_LORA / group["data-file"])
        assert int(group["data-points"]) == len(points) > 1
    assert len(page.find("polyline", "curve")) == 20


def test_report_without_logs_still_renders(campaign, tmp_path):
    root, scores, _ = campaign
    score = json.loads((root / "node1" / "score.json").read_text())
    for run in score["runs"]:
        run["path"] = str(tmp_path / "gone" / run["file"])
    moved = tmp_path / "campaign" / "node1"
    moved.mkdir(parents=True)
    (moved / "score.json").write_text(json.dumps(score))
    out = tmp_path / "out"
    assert set(write_reports(moved.parent, out_dir=out)) == {"report.json", "report.md", "report.html"}
    assert not (moved.parent / "report.html").exists()
    text = (out / "report.html").read_text()
    page = parse(text)
    assert_offline(text, page)
    assert "Logs not found: result_0.txt" in text and "no eval_accuracy in the logs" in text
    assert len(page.find("svg", "eval-plot")) == 1
    assert_numbers_match(sections(text)[0], score)


def test_cli_report_on_a_scored_campaign(campaign, tmp_path, capsys):
    root, _, _ = campaign
    out = tmp_path / "out"
    assert cli.main(["report", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / n) for n in ("report.json", "report.md", "report.html")]
    for name in ("report.json", "report.md", "report.html"):
        assert (out / name).read_text() == (root / name).read_text()


def test_cli_report_from_logs_defaults_to_the_cwd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", str(AMD_LORA), "--allow-partial"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "report.json", "report.md"]
    assert json.loads((tmp_path / "report.json").read_text())["campaign"] == "llama2_70b_lora"
    capsys.readouterr()


def test_markdown_signature_unchanged():
    score = {"benchmark": "smoke", "ruleset": "6.0.0", "runs": [], "valid": False, "reasons": ["x"],
             "rcp": {}, "score_minutes": None, "olympic_minutes": None}
    assert markdown("t", [("s", score)]).startswith("# t")


# ---------------------------------------------------------------- report from logs (CLI)

def test_logs_report_one_plot_per_set(logs_report):
    out, dirs = logs_report
    text = (out / "report.html").read_text()
    page = parse(text)
    assert_offline(text, page)
    assert len(sections(text)) == len(dirs) == 5
    assert len(page.find("svg", "eval-plot")) == len(dirs)
    assert len(page.find("svg", "ttt-plot")) == len(dirs)
    assert "<title>published</title>" in text


def test_logs_report_numbers_match_the_scores(logs_report):
    out, dirs = logs_report
    data = json.loads((out / "report.json").read_text())
    text = (out / "report.html").read_text()
    by_name = {re.search(r'data-name="([^"]+)"', s).group(1): s for s in sections(text)}
    assert set(by_name) == set(data["sets"])
    for name, score in data["sets"].items():
        assert_numbers_match(by_name[name], score)
    lora = next(s for n, s in data["sets"].items() if n.endswith("MI355X_EPYC_9575F_pytorch/llama2_70b_lora"))
    assert round(lora["score_minutes"], 4) == 10.1847
    assert lora["versus_reference"]["submission_id"] == "6.0-0036"
    bad = data["sets"]["two_dropped"]
    assert bad["valid"] is False and bad["score_minutes"] is None
    assert run_roles(bad).count("not counted") == 2
    assert "Not a valid score" in by_name["two_dropped"]


def test_logs_report_writes_nothing_beside_the_logs(logs_report):
    _, dirs = logs_report
    for directory in dirs[:-1]:
        assert not any((directory / name).exists() for name in ("report.html", "report.json", "report.md"))


def test_nice_ticks():
    assert _nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    assert _nice_ticks(0.921, 0.944) == pytest.approx([0.92, 0.925, 0.93, 0.935, 0.94, 0.945])
    ticks = _nice_ticks(5.0, 5.0)
    assert ticks[0] < 5.0 < ticks[-1]


# ---------------------------------------------------------------- a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

_PROBE = """<script>
const plots = [...document.querySelectorAll('svg.eval-plot')].map(svg => {
  const box = svg.getBoundingClientRect();
  const curves = [...svg.querySelectorAll('polyline.curve')].map(p => p.getBBox());
  return {w: box.width, h: box.height, curves: curves.length,
          drawn: curves.filter(b => b.width > 0 && b.height > 0).length};
});
const bars = [...document.querySelectorAll('svg.ttt-plot rect.bar')].map(r => r.getBBox().height);
const out = document.createElement('pre');
out.id = 'probe';
out.textContent = JSON.stringify({plots, bars});
document.body.appendChild(out);
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_chromium_renders_the_plots(campaign, tmp_path):
    root, _, _ = campaign
    page = tmp_path / "probe.html"
    page.write_text((root / "report.html").read_text().replace("</body>", _PROBE))
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                           "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    match = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, flags=re.S)
    assert match, proc.stderr[-2000:]
    probe = json.loads(html.unescape(match.group(1)))
    assert len(probe["plots"]) == 2
    for plot in probe["plots"]:
        assert plot["w"] > 300 and plot["h"] > 150
        assert plot["curves"] == plot["drawn"] == 10
    assert len(probe["bars"]) == 20 and all(h > 10 for h in probe["bars"])  # a dropped run is hatched, not absent
