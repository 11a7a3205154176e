#!/usr/bin/env python3
"""mlperf-repro test stand-in for AMD's flux1 scripts/to_webdataset.py (the guide runs
`python /workspace/code/scripts/to_webdataset.py --input_path IN --output_path OUT
--num_workers 8`): packs the files of IN into OUT/shard-000000.tar (a webdataset shard)."""

import argparse
import os
import sys
import tarfile

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--input_path", required=True)
ap.add_argument("--output_path", required=True)
ap.add_argument("--num_workers", type=int, default=1)
args = ap.parse_args()
if not os.path.isdir(args.input_path):
    sys.exit("to_webdataset.py: --input_path %s is not a directory" % args.input_path)
names = []
for root, _dirs, files in os.walk(args.input_path):
    for name in files:
        if not name.startswith(".") and not name.endswith(".md5"):
            names.append(os.path.relpath(os.path.join(root, name), args.input_path))
if not names:
    sys.exit("to_webdataset.py: no files in %s" % args.input_path)
os.makedirs(args.output_path, exist_ok=True)
with tarfile.open(os.path.join(args.output_path, "shard-000000.tar"), "w") as tar:
    for name in sorted(names):
        tar.add(os.path.join(args.input_path, name), arcname=name)
print("to_webdataset.py: %d files of %s into %s" % (len(names), args.input_path, args.output_path))
