#!/usr/bin/env python3
"""Benchmark the native R2 downloader against a real nginx on loopback.

    .venv/bin/python bench/download_bench.py [--big-mib 512] [--big-files 8] [--small-files 5000]

Measures (and prints as JSON):
  * download throughput of a few large files with 1, 4 and 8 workers (md5 computed on the fly);
  * a dataset of many small files: first download, the re-run (manifest check only, no file
    request), and a deep verify (re-hash of everything).
Loopback numbers bound the downloader's own overhead; they say nothing about R2 over a WAN.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from mlperf_repro.node.r2_download import fetch_dataset  # noqa: E402
from nginx_bucket import NginxBucket, find_nginx  # noqa: E402


def timed(fn):
    t0 = time.monotonic()
    res = fn()
    return res, time.monotonic() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--big-mib", type=int, default=512, help="total size of the large files")
    ap.add_argument("--big-files", type=int, default=8)
    ap.add_argument("--small-files", type=int, default=5000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args(argv)
    if not find_nginx():
        sys.exit("nginx is not installed (apt-get install -y nginx)")
    work = Path(tempfile.mkdtemp(prefix="r2-bench-"))
    need = args.big_mib * (1 + len(args.workers)) * (1 << 20) * 1.1
    if shutil.disk_usage(work).free < need:
        sys.exit("need about %.1f GiB free in %s" % (need / (1 << 30), work))
    report = {"big": [], "small": {}}
    try:
        with NginxBucket(work / "nginx") as bucket:
            per = args.big_mib * (1 << 20) // args.big_files
            big = {"shard-%03d.bin" % i: os.urandom(per) for i in range(args.big_files)}
            ds = bucket.add_dataset("bench-big", big)
            del big
            for w in args.workers:
                dest = work / ("big-w%d" % w)
                res, dt = timed(lambda: fetch_dataset(dest, uri=ds.uri, workers=w))
                report["big"].append({"workers": w, "bytes": res.bytes_transferred,
                                      "seconds": round(dt, 3),
                                      "MiB_per_s": round(res.bytes_transferred / dt / (1 << 20), 1)})
                shutil.rmtree(dest)
            small = {"d%02d/f%05d.txt" % (i % 50, i): (b"%d\n" % i) * 64
                     for i in range(args.small_files)}
            ds = bucket.add_dataset("bench-small", small)
            dest = work / "small"
            res, dt = timed(lambda: fetch_dataset(dest, uri=ds.uri, workers=8))
            report["small"]["files"] = len(small)
            report["small"]["first_download_s"] = round(dt, 3)
            mark = bucket.mark()
            res, dt = timed(lambda: fetch_dataset(dest, uri=ds.uri, workers=8))
            report["small"]["rerun_s"] = round(dt, 3)
            report["small"]["rerun_requests"] = len(bucket.requests(mark))
            res, dt = timed(lambda: fetch_dataset(dest, uri=ds.uri, workers=8, deep_verify=True))
            report["small"]["deep_verify_s"] = round(dt, 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
