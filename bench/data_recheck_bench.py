#!/usr/bin/env python3
"""Time `site.yml --tags data` re-checking a staged dataset of many small files.

    .venv/bin/python bench/data_recheck_bench.py [--files 10000] [--repeat 3] [--deep]

A real nginx on loopback serves a dataset in the MLCommons bucket layout (``--files`` files of
100-4000 bytes in 100 directories); a catalog copy gives the smoke benchmark an r2 recipe for
it. The dataset is staged once with ``site.yml -i inventory/local --tags data``, then the same
command, and ``playbooks/data.yml --tags data`` (the stage alone), are timed ``--repeat`` times
each on the staged dataset: the quick re-check reads the manifest against the file system (no
hashing, no request to the bucket: the access log is checked; changed=0 is checked). ``--deep``
also times ``--tags deep_verify`` (everything re-hashed). Prints one JSON object; the target for
the median of ``site.yml --tags data`` is < 10 s. Wall times include ansible-playbook's start-up
and every stage's tag-filtered no-op tasks; the machine's load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from nginx_bucket import NginxBucket, find_nginx  # noqa: E402

TARGET_SECONDS = 10.0


def playbook(args, extra, book="site.yml"):
    argv = [str(BIN / "ansible-playbook"), book, "-i", "inventory/local", *args,
            "-e", json.dumps(extra)]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    seconds = time.monotonic() - t0
    if proc.returncode != 0:
        sys.exit("%s failed:\n%s\n%s" % (" ".join(argv), proc.stdout[-5000:], proc.stderr[-2000:]))
    m = re.search(r"^local\s+: ok=\d+\s+changed=(\d+)", proc.stdout, re.M)
    return seconds, int(m.group(1)) if m else None, proc.stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--deep", action="store_true", help="also time --tags deep_verify")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    if not find_nginx():
        sys.exit("nginx is not installed (apt-get install -y nginx)")
    work = Path(tempfile.mkdtemp(prefix="data-recheck-bench-"))
    rng = random.Random(6)
    report = {"files": args.files, "target_seconds": TARGET_SECONDS}
    try:
        with NginxBucket(work / "nginx") as bucket:
            files = {"shard-%02d/file-%05d.bin" % (i % 100, i): rng.randbytes(rng.randint(100, 4000))
                     for i in range(args.files)}
            ds = bucket.add_dataset("bench-recheck", files)
            report["bytes"] = sum(len(b) for b in files.values())
            del files
            catalog = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
            catalog["benchmarks"]["smoke"]["dataset"] = {
                "recipe": "r2", "downloads": [{"uri": ds.uri, "dest": "data"}],
                "expected_files": ["data/shard-00/file-00000.bin"]}
            (work / "catalog.yml").write_text(yaml.safe_dump(catalog, sort_keys=False))
            extra = {"mlperf_local_root": str(work / "root"),
                     "mlperf_results_dir": str(work / "results"),
                     "validate_catalog_path": str(work / "catalog.yml"), "data_workers": 16}

            seconds, changed, _ = playbook(["--tags", "data"], extra)
            report["stage_seconds"] = round(seconds, 2)
            report["stage_changed"] = changed
            staged = sum(1 for p in (work / "root" / "data" / "data").rglob("*.bin"))
            if staged != args.files:
                sys.exit("staged %d files, expected %d" % (staged, args.files))

            for book in ("site.yml", "playbooks/data.yml"):
                runs = []
                for _ in range(args.repeat):
                    mark = bucket.mark()
                    load = os.getloadavg()[0]
                    seconds, changed, out = playbook(["--tags", "data"], extra, book)
                    requests = bucket.requests(mark)
                    runs.append({"seconds": round(seconds, 2), "changed": changed,
                                 "requests": len(requests), "load_before": round(load, 2)})
                    if changed != 0 or requests:
                        sys.exit("the re-check was not quiet: changed=%s, %d requests"
                                 % (changed, len(requests)))
                report[book] = {
                    "runs": runs,
                    "median_seconds": round(statistics.median(r["seconds"] for r in runs), 2),
                    "min_seconds": min(r["seconds"] for r in runs)}
            report["recheck_seconds"] = report["site.yml"]["median_seconds"]
            report["recheck_under_target"] = report["recheck_seconds"] < TARGET_SECONDS
            if args.deep:
                seconds, changed, _ = playbook(["--tags", "deep_verify"], extra)
                report["deep_verify_seconds"] = round(seconds, 2)
            report["cpus"] = os.cpu_count()
            report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        if args.keep:
            report["work"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))
    return 0 if report.get("recheck_under_target") else 1


if __name__ == "__main__":
    sys.exit(main())
