#!/usr/bin/python
"""Ansible module: what of a dataset is already staged, from its manifests, without the network."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_data_state
short_description: Quick, read-only check of a staged dataset against its manifests
description:
  - For each downloaded dataset, compares the destination's C(.mlperf-manifest.json) (written
    by M(mlperf_dataset_fetch)) with the file system and with the dataset's md5 list kept next
    to the data (C(<dest>/<name>.md5)): every listed file must be recorded as verified with the
    listed md5, and still have the recorded size and modification time. No file is hashed and
    no request is made, so a staged dataset of any size is re-checked in seconds, even when the
    bucket cannot be reached.
  - Reports which of some paths exist, which expected files are missing, and the free space of
    the file system holding O(data_dir).
  - When none of the O(expected) paths relative to O(data_dir) is there, looks one level off:
    in each directory right below O(data_dir) and in its parent. Where expected files are found
    there (a dataset staged with DATADIR set one level up or down, e.g. the toolkit's earlier
    llama31_8b layout C(<datadir>/data)), that directory is reported in RV(misplaced), so the
    stage can refuse before downloading the dataset again beside it.
  - Changes nothing.
options:
  data_dir:
    description: The staging root (DATADIR). Relative paths below are relative to it.
    type: path
    required: true
  datasets:
    description: Downloaded datasets, each with its C(uri) (the C(.uri) metadata URL) or C(name)
      (the C(.uri) file name without C(.uri)), and C(dest) (its directory).
    type: list
    elements: dict
    default: []
  paths:
    description: Paths whose existence is reported in RV(paths).
    type: list
    elements: str
    default: []
  expected:
    description: Paths that must exist; those that do not are listed in RV(missing).
    type: list
    elements: str
    default: []
  markers:
    description: Step markers written by M(mlperf_data_step); the files each recorded are
      checked (existence, size, mtime) and reported in RV(markers).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: What is staged already
  mlperf_data_state:
    data_dir: /data/mlperf_llama31_8b/data
    datasets:
      - {name: llama-3-1-8b-preprocessed-c4-dataset, dest: .}
      - {name: llama-3-1-8b-tokenizer, dest: /data/mlperf_llama31_8b/model}
    expected: [c4-train.en_6_text_document.bin]
  register: staged
"""

RETURN = r"""
downloads:
  description: The O(datasets) entries in their order, each with its C(name) and the fields of
    RV(datasets) added.
  returned: always
  type: list
  elements: dict
datasets:
  description: Per dataset name, C(complete) (bool), C(files) (listed), C(verified) (matching
    the manifest), C(bytes) (of the verified files), C(problems) (the first 20) and
    C(problem_count).
  returned: always
  type: dict
paths:
  description: Per path as given, C(exists) and C(is_dir).
  returned: always
  type: dict
missing:
  description: The O(expected) paths that do not exist.
  returned: always
  type: list
  elements: str
markers:
  description: Per marker as given, C(exists), C(files) (recorded), C(problems) (the first 20:
    recorded files missing, or of another size or mtime) and C(problem_count).
  returned: always
  type: dict
free_bytes:
  description: Free bytes of the file system of O(data_dir) (or of its nearest existing parent).
  returned: always
  type: int
misplaced:
  description: Where the O(expected) files are when none is in O(data_dir) but some are one
    level off (C(path), C(found), C(of), C(where) C(below) or C(above)); null otherwise.
  returned: always
  type: dict
seconds:
  description: Time the check took.
  returned: always
  type: float
"""

import json
import os
import posixpath
import shutil
import time
import urllib.parse

from ansible.module_utils.basic import AnsibleModule

try:
    from ansible.module_utils.r2_download import R2Error, parse_md5_list, read_manifest
except ImportError:  # running from a source checkout (tests)
    from mlperf_repro.node.r2_download import R2Error, parse_md5_list, read_manifest

MAX_PROBLEMS = 20


def _abs(data_dir, path):
    return path if os.path.isabs(path) else os.path.join(data_dir, path)


def dataset_name(ds):
    """The dataset's name: given, or the .uri file name without .uri (as the protocol says)."""
    if ds.get("name"):
        return str(ds["name"])
    name = posixpath.basename(urllib.parse.urlsplit(str(ds.get("uri") or "")).path)
    return name[:-len(".uri")] if name.endswith(".uri") else name


def dataset_state(dest, name):
    """How much of dataset ``name`` in ``dest`` its manifest vouches for (no hashing)."""
    out = {"complete": False, "files": 0, "verified": 0, "bytes": 0, "problems": [],
           "problem_count": 0}

    def problem(text):
        out["problem_count"] += 1
        if len(out["problems"]) < MAX_PROBLEMS:
            out["problems"].append(text)

    if not os.path.isdir(dest):
        problem("%s: not staged yet" % dest)
        return out
    section = read_manifest(dest)["datasets"].get(name)
    if not section:
        problem("%s: no manifest entry for %s" % (dest, name))
        return out
    list_path = os.path.join(dest, name + ".md5")
    try:
        with open(list_path, encoding="utf-8") as f:
            entries = parse_md5_list(f.read(), list_path)
    except FileNotFoundError:
        problem("%s: missing (the md5 list kept with the data)" % list_path)
        return out
    except (OSError, R2Error) as e:
        problem("%s: unreadable: %s" % (list_path, e))
        return out
    records = {}
    for rec in section.get("files") or []:
        if isinstance(rec, dict) and "path" in rec:
            records[rec["path"]] = rec
    out["files"] = len(entries)
    for e in entries:
        rec = records.get(e.path)
        target = os.path.join(dest, *e.path.split("/"))
        if rec is None or str(rec.get("md5", "")).lower() != e.md5:
            problem("%s: not verified yet" % target)
            continue
        try:
            st = os.stat(target)
        except FileNotFoundError:
            problem("%s: missing" % target)
            continue
        if st.st_size != rec.get("size"):
            problem("%s: %d bytes, the manifest says %s" % (target, st.st_size, rec.get("size")))
        elif st.st_mtime_ns != rec.get("mtime_ns"):
            problem("%s: modified since it was verified" % target)
        else:
            out["verified"] += 1
            out["bytes"] += st.st_size
    out["complete"] = out["problem_count"] == 0
    return out


def marker_state(path):
    """What a step marker says, and whether the files it recorded are still as recorded."""
    out = {"exists": False, "files": 0, "problems": [], "problem_count": 0}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return out
    except (OSError, ValueError) as e:
        out.update(exists=True, problems=["%s: unreadable: %s" % (path, e)], problem_count=1)
        return out
    out["exists"] = True
    records = doc.get("files") if isinstance(doc, dict) else None
    for rec in records or []:
        try:
            target, size, mtime = rec["path"], rec["size"], rec["mtime_ns"]
        except (KeyError, TypeError):
            continue
        out["files"] += 1
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            problem = "%s: missing" % target
        else:
            if st.st_size != size:
                problem = "%s: %d bytes, recorded %d" % (target, st.st_size, size)
            elif st.st_mtime_ns != mtime:
                problem = "%s: modified since the step recorded it" % target
            else:
                continue
        out["problem_count"] += 1
        if len(out["problems"]) < MAX_PROBLEMS:
            out["problems"].append(problem)
    return out


def free_bytes(path):
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return shutil.disk_usage(probe).free


def misplaced(data_dir, expected):
    """The directory one level below or above ``data_dir`` holding the most of the relative
    ``expected`` paths, when ``data_dir`` holds none of them; else None."""
    relative = [p for p in expected if not os.path.isabs(p)]
    if not relative or any(os.path.lexists(os.path.join(data_dir, p)) for p in relative):
        return None
    root = os.path.normpath(os.path.abspath(data_dir))
    candidates = []
    try:
        with os.scandir(root) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True):
                    candidates.append((os.path.join(root, entry.name), "below"))
    except OSError:
        pass
    parent = os.path.dirname(root)
    if parent != root:
        candidates.append((parent, "above"))
    best = None
    for path, where in sorted(candidates):
        found = sum(1 for p in relative if os.path.lexists(os.path.join(path, p)))
        if found and (best is None or found > best["found"]):
            best = {"path": path, "found": found, "of": len(relative), "where": where}
    return best


def state(data_dir, datasets=(), paths=(), expected=(), markers=()):
    t0 = time.monotonic()
    result = {"datasets": {}, "paths": {}, "missing": []}
    result["downloads"] = []
    for ds in datasets:
        name = dataset_name(ds)
        dest = os.path.normpath(_abs(data_dir, ds.get("dest") or "."))
        st = dataset_state(dest, name)
        result["datasets"][name] = st
        result["downloads"].append(dict(ds, name=name, **st))
    for p in paths:
        target = _abs(data_dir, p)
        result["paths"][p] = {"exists": os.path.lexists(target), "is_dir": os.path.isdir(target)}
    result["missing"] = [p for p in expected if not os.path.lexists(_abs(data_dir, p))]
    result["misplaced"] = misplaced(data_dir, expected)
    result["markers"] = {m: marker_state(_abs(data_dir, m)) for m in markers}
    result["free_bytes"] = free_bytes(data_dir)
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type="path", required=True),
            datasets=dict(type="list", elements="dict", default=[]),
            paths=dict(type="list", elements="str", default=[]),
            expected=dict(type="list", elements="str", default=[]),
            markers=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    for ds in p["datasets"]:
        if not dataset_name(ds):
            module.fail_json(msg="every entry of datasets needs a name or a .uri URL, got %r"
                             % (ds,))
    module.exit_json(changed=False, **state(p["data_dir"], p["datasets"], p["paths"],
                                            p["expected"], p["markers"]))


if __name__ == "__main__":
    main()
