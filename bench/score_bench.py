#!/usr/bin/env python3
"""Time and peak memory of our scorer against mlperf-logging's result summarizer, same sets.

    .venv/bin/python bench/score_bench.py [--repeat 3] [--json] [SET_DIR ...]

Default sets: every published set under tests/data/mlperf-logs/v5.1 (largest: NVIDIA flux1).
Each measurement is a fresh Python process (interpreter start and imports included, as a user
pays them), run one at a time; the figure is the median wall time of ``--repeat`` runs and the
largest peak RSS (``ru_maxrss`` of that process):

* ``ours``: ``mlperf-repro score DIR --json`` (compliance + RCP through mlperf-logging in-process,
  our parse and arithmetic, the catalog comparison);
* ``ours in-process``: ``score_directory(DIR)`` again in an already warm process (no imports);
* ``summarizer x1``: ``python -m mlperf_logging.result_summarizer ORG training 6.0.0 --csv ...``
  on a fresh ORG tree (systems/<system>.json written for it), which reports the score *before*
  its RCP check writes scaling.json;
* ``summarizer x2``: the two passes that the official tooling needs for the normalized score
  (the second reads the scaling.json the first wrote): what ``ours`` is compared with.

* ``+shim``: ``ours`` with mlperf-logging's ``re.sub(".*:::MLLOG ", ...)`` (quadratic in the
  line length, and most of the package's parse time) replaced by an equivalent ``rpartition``
  in the child process only: what scoring.py would gain by installing that shim itself.

``same`` says whether the summarizer's second-pass ``time_to_train`` equals our ``score_minutes``
as floats (bit for bit), and the table shows both to 4 decimals.  No threshold is asserted here.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data" / "mlperf-logs" / "v5.1"
from mlperf_repro.catalog import default_ruleset  # noqa: E402  (after the sys.path line)

RULESET = default_ruleset()

# Runs a module as __main__ with the given argv, then prints its own peak RSS (KiB) on stderr.
_CHILD = r"""
import os, resource, runpy, sys
sys.argv = sys.argv[1:]
if os.environ.get("SCORE_BENCH_SHIM") == "1":
    import re, types
    from mlperf_logging.compliance_checker.mlp_parser import ruleset_600
    from mlperf_logging.rcp_checker import rcp_checker
    TOKEN = ":::MLLOG "
    def sub(pattern, repl, string, *args, **kwargs):
        # re.sub(".*:::MLLOG ", ":::MLLOG ", line) is quadratic in the line length; on a one-line
        # string it equals keeping what follows the last token.
        if pattern == ".*" + TOKEN and repl == TOKEN and not args and not kwargs \
                and "\n" not in string.rstrip("\n"):
            head, token, tail = string.rpartition(TOKEN)
            return TOKEN + tail if token else string
        return re.sub(pattern, repl, string, *args, **kwargs)
    shim = types.SimpleNamespace(**{k: getattr(re, k) for k in dir(re) if not k.startswith("__")})
    shim.sub = sub
    ruleset_600.re = rcp_checker.re = shim
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("MAXRSS_KIB=%d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def run_child(module: str, args: list[str], cwd: Path, shim: bool = False) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in KiB, stdout) of ``python -m module args`` in a fresh process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), SCORE_BENCH_SHIM="1" if shim else "0")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - start
    rss = [line for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KIB=")]
    if not rss:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return wall, int(rss[-1].split("=")[1]), proc.stdout


def org_tree(set_dir: Path, work: Path) -> Path:
    """A fresh ORG/{systems,results} tree holding a copy of the set (no scaling.json)."""
    from mlperf_repro.mllog import summarize_run
    from mlperf_repro.package import system_description
    from mlperf_repro.scoring import find_result_files

    files = find_result_files(set_dir)
    first = summarize_run(files[0])
    org, system, bench = first.organization or "ORG", "benchsys", first.benchmark
    root = work / org
    bench_dir = root / "results" / system / bench
    bench_dir.mkdir(parents=True)
    (root / "systems").mkdir()
    # The summarizer multiplies these two by number_of_nodes: they must be integers.
    desc, _ = system_description(org, system, bench, division=first.division,
                                 submission_platform=first.platform,
                                 fields={"host_processors_per_node": "1", "number_of_nodes": "1",
                                         "accelerators_per_node": "8"})
    (root / "systems" / f"{system}.json").write_text(json.dumps(desc))
    for index, path in enumerate(files):
        shutil.copyfile(path, bench_dir / f"result_{index}.txt")
    return root


def summarizer_score(csv_path: Path, bench: str) -> float:
    with open(csv_path.with_name(csv_path.stem + "_detailed.csv"), newline="") as handle:
        row = next(csv.DictReader(handle))
    return float(row[f"{bench}:time_to_train"])


def label(set_dir: Path) -> str:
    """``ORG/benchmark`` inside a submission tree (ORG/results/SYSTEM/BENCH), else the last two parts."""
    parts = set_dir.parts
    if len(parts) >= 4 and parts[-3] == "results":
        return f"{parts[-4]}/{parts[-2]}/{parts[-1]}"
    return "/".join(parts[-2:])


def bench_set(set_dir: Path, repeat: int) -> dict:
    from mlperf_repro.scoring import score_directory

    ours_wall, ours_rss, ours_score = [], 0, None
    for _ in range(repeat):
        wall, rss, out = run_child("mlperf_repro.cli", ["score", str(set_dir), "--json"], ROOT)
        ours_wall.append(wall)
        ours_rss = max(ours_rss, rss)
        ours_score = json.loads(out)["score_minutes"]
    shim_wall, shim_score = [], None
    for _ in range(repeat):
        wall, _, out = run_child("mlperf_repro.cli", ["score", str(set_dir), "--json"], ROOT, shim=True)
        shim_wall.append(wall)
        shim_score = json.loads(out)["score_minutes"]
    score_directory(set_dir)  # warm up the in-process path
    inproc = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = score_directory(set_dir)
        inproc.append(time.perf_counter() - start)
    bench = result.benchmark

    pass1, both, summ_rss, summ_score = [], [], 0, None
    for _ in range(repeat):
        with tempfile.TemporaryDirectory(prefix="score-bench-") as tmp:
            work = Path(tmp)
            org = org_tree(set_dir, work)
            walls = []
            for n in (1, 2):
                wall, rss, _ = run_child("mlperf_logging.result_summarizer",
                                         [str(org), "training", RULESET, "--csv", f"pass{n}.csv"], work)
                walls.append(wall)
                summ_rss = max(summ_rss, rss)
            summ_score = summarizer_score(work / "pass2.csv", bench)
        pass1.append(walls[0])
        both.append(sum(walls))
    size = sum(p.stat().st_size for p in set_dir.iterdir() if p.is_file())
    med = statistics.median
    return {
        "set": label(set_dir), "benchmark": bench, "mib": size / 2**20,
        "ours_s": med(ours_wall), "ours_rss_mib": ours_rss / 1024, "ours_inproc_s": med(inproc),
        "summ1_s": med(pass1), "summ2_s": med(both), "summ_rss_mib": summ_rss / 1024,
        "ratio": med(both) / med(ours_wall), "ratio_1pass": med(pass1) / med(ours_wall),
        "shim_s": med(shim_wall), "ratio_shim": med(both) / med(shim_wall), "shim_same": shim_score == ours_score,
        "ours_score": ours_score, "summarizer_score": summ_score, "same": ours_score == summ_score,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("sets", nargs="*", type=Path, help="set directories (default: the published v5.1 sets)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median); default 3")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args(argv)
    sets = args.sets or sorted(p for p in DATA.glob("*/results/*/*") if p.is_dir())
    rows = [bench_set(s.resolve(), max(1, args.repeat)) for s in sets]
    header = (f"{'set':<50} {'MiB':>5} {'ours s':>7} {'in-proc':>7} {'+shim s':>7} {'summ x1':>7} "
              f"{'summ x2':>7} {'x2/ours':>7} {'x2/shim':>7} {'RSS ours':>8} {'RSS summ':>8} {'ours min':>9} "
              f"{'summ min':>9} same")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['set'][:50]:<50} {r['mib']:>5.2f} {r['ours_s']:>7.2f} {r['ours_inproc_s']:>7.2f} "
              f"{r['shim_s']:>7.2f} {r['summ1_s']:>7.2f} {r['summ2_s']:>7.2f} {r['ratio']:>6.1f}x "
              f"{r['ratio_shim']:>6.1f}x {r['ours_rss_mib']:>7.0f}M {r['summ_rss_mib']:>7.0f}M "
              f"{r['ours_score']:>9.4f} {r['summarizer_score']:>9.4f} "
              f"{'yes' if r['same'] and r['shim_same'] else 'NO'}")
    largest = max(rows, key=lambda r: r["mib"])
    print(f"\nlargest set ({largest['set']}, {largest['mib']:.2f} MiB): ours {largest['ours_s']:.2f} s vs "
          f"summarizer {largest['summ2_s']:.2f} s for the normalized score (2 passes) = "
          f"{largest['ratio']:.1f}x faster ({largest['ratio_1pass']:.1f}x against one pass); "
          f"with the parse shim {largest['shim_s']:.2f} s = {largest['ratio_shim']:.1f}x; "
          f"peak RSS {largest['ours_rss_mib']:.0f} vs {largest['summ_rss_mib']:.0f} MiB; "
          f"same score: {'yes' if largest['same'] else 'NO'}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0 if all(r["same"] and r["shim_same"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
