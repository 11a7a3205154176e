#!/usr/bin/python
"""Ansible module: one dataset preparation step (a container command), run once, recorded."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_data_step
short_description: Run one dataset preparation command once, guarded by what it creates
description:
  - Runs O(argv) (no shell on the node; typically C(docker run ... IMAGE bash -c SCRIPT)) unless
    the step is already done, then writes O(marker), a JSON record of the command (never a
    secret), when it finished, and the size and modification time of every file under
    O(record).
  - A step is done when O(marker) exists, or when every path of O(done_if_exist) exists (a
    dataset staged by hand is adopted, and its marker written). A done step is not run again;
    its recorded files are checked (existence, size, mtime; nothing hashed) and any that
    changed are reported as a failure, because training on silently altered data would be
    worse than stopping.
  - O(secret_env) reaches the command only through its environment (e.g. C(docker run --env
    HF_TOKEN) forwards it by name); its values are never in the command line, the log file,
    the marker or the result.
  - The command's output goes, as it is produced, to O(log_file) (C(tail -f) it for progress);
    the result carries its last lines.
  - Nothing is deleted; a failed command leaves its outputs for the next attempt.
options:
  name:
    description: What the step does, for messages.
    type: str
    required: true
  argv:
    description: The command, as a list of words.
    type: list
    elements: str
    required: true
  chdir:
    description: Directory the command runs in.
    type: path
  env:
    description: Environment variables added for the command (not secret).
    type: dict
    default: {}
  secret_env:
    description: Secret environment variables added for the command; never logged nor returned.
    type: dict
    default: {}
  marker:
    description: The step's record, written when it succeeds; its presence means done.
    type: path
    required: true
  done_if_exist:
    description: When every one of these paths exists, the step counts as done.
    type: list
    elements: path
    default: []
  record:
    description: Files, or directories walked recursively, recorded in O(marker).
    type: list
    elements: path
    default: []
  expect:
    description: Paths that must exist once the command succeeded, or the step fails.
    type: list
    elements: path
    default: []
  min_free_bytes:
    description: Refuse to start when the file system of O(free_path) has less free space.
    type: int
    default: 0
  space_for:
    description: Refuse to start unless the free space is at least O(space_factor) times the
      size of the files under these paths (a conversion's input).
    type: list
    elements: path
    default: []
  space_factor:
    description: See O(space_for).
    type: float
    default: 1.0
  free_path:
    description: Where to measure free space (default the directory of O(marker)).
    type: path
  log_file:
    description: Where the command's output is written while it runs (secrets redacted).
    type: path
attributes:
  check_mode:
    support: full
    details: Reports whether the step would run, and the command it would run (RV(cmd)).
  diff_mode:
    support: none
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Convert CC12M to a webdataset in the benchmark container
  mlperf_data_step:
    name: to_webdataset train
    argv: [docker, run, --rm, --volume, "/data/flux:/dataset", "rocm/amd-mlperf:flux1_training_6.0",
           bash, -c, "python /workspace/code/scripts/to_webdataset.py --input_path /dataset/cc12m_preprocessed --output_path /dataset/energon/train"]
    marker: /data/flux/.mlperf-data/convert-1.json
    record: [/data/flux/energon/train]
    log_file: /data/flux/.mlperf-data/convert-1.log
"""

RETURN = r"""
cmd:
  description: The command, shell-quoted (it holds secret names only, never their values).
  returned: always
  type: str
ran:
  description: Whether the command ran in this call.
  returned: always
  type: bool
done_by:
  description: Why the step counts as done without running (C(marker) or C(existing files)), or
    empty when it ran or would run.
  returned: always
  type: str
rc:
  description: The command's exit status (when it ran).
  returned: when the command ran
  type: int
output_tail:
  description: The last lines of the command's output (when it ran).
  returned: when the command ran
  type: list
  elements: str
seconds:
  description: How long the command ran.
  returned: always
  type: float
files_recorded:
  description: Files recorded in (or checked against) the marker.
  returned: always
  type: int
"""

import collections
import datetime
import json
import os
import shlex
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule

MARKER_FORMAT = "mlperf-repro/data-step/v1"
REDACTED = "********"
TAIL_LINES = 40


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def walk_files(paths):
    """(path, size, mtime_ns) of every file under ``paths`` (directories walked, sorted)."""
    out = []
    for top in paths:
        if os.path.isdir(top) and not os.path.islink(top):
            for root, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    full = os.path.join(root, name)
                    st = os.lstat(full)
                    out.append({"path": full, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
        elif os.path.lexists(top):
            st = os.lstat(top)
            out.append({"path": top, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def read_marker(path):
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"format": "unreadable", "files": []}
    return doc if isinstance(doc, dict) else {"format": "unreadable", "files": []}


def check_recorded(doc, limit=20):
    """Problems with the files a marker recorded (missing, other size, other mtime)."""
    problems = []
    for rec in doc.get("files") or []:
        try:
            st = os.lstat(rec["path"])
        except FileNotFoundError:
            problems.append("%s: missing" % rec["path"])
            continue
        except (KeyError, TypeError):
            continue
        if st.st_size != rec.get("size"):
            problems.append("%s: %d bytes, recorded %s" % (rec["path"], st.st_size, rec.get("size")))
        elif st.st_mtime_ns != rec.get("mtime_ns"):
            problems.append("%s: modified since the step recorded it" % rec["path"])
    return problems[:limit], len(problems)


def write_marker(path, doc):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def free_bytes(path):
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    return shutil.disk_usage(probe).free


class Redactor:
    def __init__(self, secrets):
        self.secrets = sorted((s for s in secrets if s), key=len, reverse=True)

    def __call__(self, text):
        for s in self.secrets:
            text = text.replace(s, REDACTED)
        return text


def run_streaming(argv, cwd, env, log_file, redact):
    """Run ``argv``; its output goes (redacted) to ``log_file`` as it comes. (rc, tail lines)."""
    tail = collections.deque(maxlen=TAIL_LINES)
    log = None
    if log_file:
        os.makedirs(os.path.dirname(log_file) or ".", exist_ok=True)
        log = open(log_file, "a", encoding="utf-8")
        log.write("# %s %s\n" % (now_iso(), " ".join(shlex.quote(a) for a in argv)))
        log.flush()
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for raw in iter(proc.stdout.readline, b""):
            line = redact(raw.decode("utf-8", "replace"))
            if log is not None:
                log.write(line)
                log.flush()
            for part in line.replace("\r", "\n").splitlines():
                if part.strip():
                    tail.append(part)
        proc.stdout.close()
        rc = proc.wait()
        if log is not None:
            log.write("# %s exit status %d\n" % (now_iso(), rc))
    finally:
        if log is not None:
            log.close()
    return rc, list(tail)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            argv=dict(type="list", elements="str", required=True),
            chdir=dict(type="path"),
            env=dict(type="dict", default={}),
            secret_env=dict(type="dict", default={}, no_log=True),
            marker=dict(type="path", required=True),
            done_if_exist=dict(type="list", elements="path", default=[]),
            record=dict(type="list", elements="path", default=[]),
            expect=dict(type="list", elements="path", default=[]),
            min_free_bytes=dict(type="int", default=0),
            space_for=dict(type="list", elements="path", default=[]),
            space_factor=dict(type="float", default=1.0),
            free_path=dict(type="path"),
            log_file=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    name, argv = p["name"], p["argv"]
    secrets = [str(v) for v in p["secret_env"].values() if v is not None and str(v)]
    redact = Redactor(secrets)
    for word in argv:
        if any(s in word for s in secrets):
            module.fail_json(msg="%s: a secret value is part of the command line; pass it by "
                             "name through secret_env instead" % name)
    cmd = " ".join(shlex.quote(a) for a in argv)
    out = dict(changed=False, cmd=cmd, ran=False, done_by="", seconds=0.0, files_recorded=0)

    # Done already?
    doc = read_marker(p["marker"])
    if doc is not None:
        problems, count = check_recorded(doc)
        if count:
            module.fail_json(
                msg="%s: %d file(s) changed since the step recorded them in %s (first: %s). "
                    "Nothing was re-run or deleted. If the change is intended, delete the "
                    "marker to run the step again." % (name, count, p["marker"],
                                                       "; ".join(problems[:5])),
                problems=problems, **out)
        out.update(done_by="marker", files_recorded=len(doc.get("files") or []))
        module.exit_json(**out)
    adopted = bool(p["done_if_exist"]) and all(os.path.lexists(x) for x in p["done_if_exist"])
    if adopted:
        out["done_by"] = "existing files"
        if module.check_mode:
            module.exit_json(**out)
        files = walk_files(p["record"])
        write_marker(p["marker"], {
            "format": MARKER_FORMAT, "name": name, "argv": argv, "adopted": True,
            "finished": now_iso(), "files": files})
        out.update(changed=True, files_recorded=len(files))
        module.exit_json(msg="%s: already done (%s exist); recorded in %s"
                         % (name, ", ".join(p["done_if_exist"]), p["marker"]), **out)

    # To be run.
    free_at = p["free_path"] or os.path.dirname(p["marker"])
    need = p["min_free_bytes"]
    if p["space_for"] and p["space_factor"] > 0:
        need = max(need, int(p["space_factor"] * sum(f["size"] for f in walk_files(p["space_for"]))))
    if need > 0:
        free = free_bytes(free_at)
        if free < need:
            module.fail_json(
                msg="%s needs about %.1f GiB free in %s, only %.1f GiB are: free space or "
                    "choose another DATADIR" % (name, need / 2.0 ** 30, free_at, free / 2.0 ** 30),
                **out)
    if module.check_mode:
        out["changed"] = True
        module.exit_json(msg="would run: %s" % cmd, **out)
    executable = argv[0]
    if os.sep not in executable and shutil.which(executable) is None:
        module.fail_json(msg="%s: %s is not installed on this host (the container runtime the "
                         "data stage uses; see data_container_command)" % (name, executable),
                         **out)
    env = dict(os.environ)
    env.update({k: str(v) for k, v in p["env"].items()})
    env.update({k: str(v) for k, v in p["secret_env"].items()})
    t0 = time.monotonic()
    try:
        rc, tail = run_streaming(argv, p["chdir"], env, p["log_file"], redact)
    except OSError as e:
        module.fail_json(msg="%s: could not start %s: %s" % (name, executable, redact(str(e))),
                         **out)
    out.update(ran=True, changed=True, rc=rc, output_tail=tail,
               seconds=round(time.monotonic() - t0, 3))
    where = " (full output in %s)" % p["log_file"] if p["log_file"] else ""
    if rc != 0:
        module.fail_json(msg="%s failed with exit status %d%s; what it wrote is kept for the "
                         "next attempt. Last lines:\n%s" % (name, rc, where, "\n".join(tail[-15:])),
                         **out)
    missing = [x for x in p["expect"] if not os.path.lexists(x)]
    if missing:
        module.fail_json(msg="%s exited 0 but did not create %s%s. Last lines:\n%s"
                         % (name, ", ".join(missing), where, "\n".join(tail[-15:])), **out)
    files = walk_files(p["record"])
    write_marker(p["marker"], {
        "format": MARKER_FORMAT, "name": name, "argv": argv, "adopted": False,
        "finished": now_iso(), "seconds": out["seconds"], "files": files})
    out["files_recorded"] = len(files)
    module.exit_json(**out)


if __name__ == "__main__":
    main()
