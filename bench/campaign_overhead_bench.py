#!/usr/bin/env python3
"""Campaign overhead: the gap between runs under the toolkit versus a bare shell loop.

    .venv/bin/python bench/campaign_overhead_bench.py [--nexp 10] [--json]

With the smoke benchmark on this machine (inventory/local, everything in a fresh directory
under /tmp):

  * toolkit: ``ansible-playbook site.yml -i inventory/local --tags render,run`` with
    ``mlperf_nexp=NEXP``: the campaign role starts the detached runner
    (mlperf_repro/node/campaign.py) and the playbook polls it until the campaign is complete
    (every ``campaign_poll_seconds``, 1 s in inventory/local), as a user runs it;
  * bare loop: the same NEXP runs with the same seeds, config and interpreter, as AMD's loop
    runs them:

        cd CODE_DIR; set -a; . ./config_CPU_1x1x1.sh; set +a; export NEXP=N PYTHON=...
        for seed in ...; do SEED=$seed bash ./run_and_time.sh > result_$k.txt 2>&1; done

The gap of a pair of consecutive runs is run k+1's ``run_start`` minus run k's ``run_stop``
(MLLOG ``time_ms``): the next process's start, imports and init (the same in both) plus what the
launcher adds. The overhead is the toolkit's mean gap minus the loop's; target <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGET_SECONDS = 2.0
MARK = ":::MLLOG "


def mllog_times(path: Path) -> dict[str, int]:
    """time_ms of the run_start and run_stop events of one result file."""
    times = {}
    for line in path.read_text(errors="replace").splitlines():
        if MARK not in line:
            continue
        try:
            record = json.loads(line.rpartition(MARK)[2])
        except ValueError:
            continue
        if record.get("key") in ("run_start", "run_stop"):
            times[record["key"]] = int(record["time_ms"])
    return times


def gaps(directory: Path, nexp: int) -> list[float]:
    """Seconds from run k's run_stop to run k+1's run_start, k = 0 .. nexp-2."""
    times = [mllog_times(directory / f"result_{k}.txt") for k in range(nexp)]
    for k, t in enumerate(times):
        if set(t) != {"run_start", "run_stop"}:
            raise SystemExit(f"{directory}/result_{k}.txt: run_start or run_stop missing")
    return [(times[k + 1]["run_start"] - times[k]["run_stop"]) / 1000 for k in range(nexp - 1)]


def durations(directory: Path, nexp: int) -> list[float]:
    """Seconds from run_start to run_stop of each run (the same work under both launchers)."""
    times = [mllog_times(directory / f"result_{k}.txt") for k in range(nexp)]
    return [(t["run_stop"] - t["run_start"]) / 1000 for t in times]


def run_toolkit(base: Path, nexp: int) -> tuple[Path, dict, float]:
    extravars = {"mlperf_local_root": str(base / "root"), "mlperf_results_dir": str(base / "results"),
                 "mlperf_nexp": nexp, "mlperf_allow_partial": nexp < 10}
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local",
            "--tags", "render,run", "-e", json.dumps(extravars)]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the playbook failed (rc {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-2000:]}")
    root = base / "root" / "logs" / "smoke" / "CPU_1x1x1"
    (campaign,) = [p for p in root.iterdir() if (p / "state.json").exists()]
    state = json.loads((campaign / "state.json").read_text())
    if state["status"] != "complete":
        raise SystemExit(f"campaign {campaign} is {state['status']}")
    return campaign, state, seconds


def run_loop(base: Path, code_dir: Path, seeds: list[int], python: str) -> tuple[Path, float]:
    out = base / "loop"
    out.mkdir()
    script = ("set -euo pipefail; cd %s; set -a; . ./config_CPU_1x1x1.sh; set +a; export NEXP=%d PYTHON=%s; "
              "k=0; for seed in %s; do SEED=$seed bash ./run_and_time.sh > %s/result_$k.txt 2>&1; "
              "k=$((k + 1)); done" % (shlex.quote(str(code_dir)), len(seeds), shlex.quote(python),
                                       " ".join(str(s) for s in seeds), shlex.quote(str(out))))
    t0 = time.monotonic()
    subprocess.run(["bash", "-c", script], check=True, timeout=1200)
    return out, time.monotonic() - t0


def describe(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "median": statistics.median(values),
            "min": min(values), "max": max(values), "n": len(values)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nexp", type=int, default=10, help="runs per campaign (at least 2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    args = ap.parse_args(argv)
    if args.nexp < 2:
        ap.error("--nexp must be at least 2")
    base = Path(tempfile.mkdtemp(prefix="mlperf-campaign-bench-", dir="/tmp"))
    try:
        load_before = os.getloadavg()[0]
        campaign, state, playbook_seconds = run_toolkit(base, args.nexp)
        spec = json.loads((campaign / "campaign.json").read_text())
        env = json.loads((campaign / "env.json").read_text())
        seeds = [run["seed"] for run in state["runs"]]
        loop_dir, loop_seconds = run_loop(base, Path(spec["code_dir"]), seeds,
                                          env.get("PYTHON", sys.executable))
        toolkit_gaps, loop_gaps = gaps(campaign, args.nexp), gaps(loop_dir, args.nexp)
        toolkit, loop = describe(toolkit_gaps), describe(loop_gaps)
        overhead = toolkit["mean"] - loop["mean"]
        results = {
            "machine": {"cpus": os.cpu_count(), "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg()[0]},
            "nexp": args.nexp, "seeds": seeds,
            "toolkit": {"gaps": toolkit_gaps, **toolkit, "playbook_seconds": playbook_seconds,
                        "run_seconds": durations(campaign, args.nexp)},
            "loop": {"gaps": loop_gaps, **loop, "loop_seconds": loop_seconds,
                     "run_seconds": durations(loop_dir, args.nexp)},
            "overhead_seconds": overhead,
            "target": {"value": overhead, "target": f"<= {TARGET_SECONDS}",
                       "met": overhead <= TARGET_SECONDS},
        }
    finally:
        if args.keep:
            print(f"kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average before {load_before:.2f}")
    print(f"{args.nexp} smoke runs, gap = next run_start - run_stop (s): mean / median / min / max")
    for name, d in (("toolkit", toolkit), ("bare loop", loop)):
        print(f"  {name:>9}: {d['mean']:.3f} / {d['median']:.3f} / {d['min']:.3f} / {d['max']:.3f}")
    print("  run_start..run_stop mean (s): toolkit %.3f, bare loop %.3f" % (
        statistics.mean(results["toolkit"]["run_seconds"]), statistics.mean(results["loop"]["run_seconds"])))
    print(f"  toolkit playbook (render + run) {playbook_seconds:.1f} s; bare loop {loop_seconds:.1f} s")
    print(f"overhead per run (mean gap, toolkit - loop): {overhead:.3f} s (target <= {TARGET_SECONDS} s): "
          f"{'met' if overhead <= TARGET_SECONDS else 'MISSED'}")


if __name__ == "__main__":
    main()
