"""The data stage on a node: what of a dataset is staged, and one preparation step run once.

Standard library only: Ansible ships this file to the nodes as ``ansible.module_utils.data_steps``
for the ``mlperf_data_state`` (:func:`staged_state`, read only) and ``mlperf_data_step``
(:func:`run_step`) modules.

A step's *marker* is a JSON record written when the step succeeded (or adopted files staged by
hand): its command (never a secret), when it finished, and the size and mtime of every file it
recorded. A marker's files are checked the same way by both modules (:func:`marker_state`).
"""

import collections
import datetime
import os
import posixpath
import shlex
import shutil
import subprocess
import time
import urllib.parse

try:
    from ansible.module_utils.fileio import changed_since, free_bytes, read_json_file, write_json
    from ansible.module_utils.r2_download import dataset_state
except ImportError:  # the controller and tests
    from mlperf_repro.node.fileio import changed_since, free_bytes, read_json_file, write_json
    from mlperf_repro.node.r2_download import dataset_state

MARKER_FORMAT = "mlperf-repro/data-step/v1"
MARKER_MODE = 0o644
REDACTED = "********"
TAIL_LINES = 40
MAX_PROBLEMS = 20


class DataStepError(Exception):
    """A step cannot run or failed; ``result`` holds what the module returns with the message."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _abs(data_dir, path):
    return path if os.path.isabs(path) else os.path.join(data_dir, path)


# ---------------------------------------------------------------------------------------------
# Markers

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


def marker_state(path):
    """What a step marker says: ``exists``, ``files`` (recorded), ``problems`` (the first 20:
    recorded files missing, or of another size or mtime; an unreadable marker) and
    ``problem_count``."""
    out = {"exists": False, "files": 0, "problems": [], "problem_count": 0}
    try:
        doc = read_json_file(path)
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
        problem = changed_since(target, size, mtime, since="the step recorded it")
        if problem:
            out["problem_count"] += 1
            if len(out["problems"]) < MAX_PROBLEMS:
                out["problems"].append(problem)
    return out


def write_marker(path, doc):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_json(path, doc, MARKER_MODE, indent=1)


# ---------------------------------------------------------------------------------------------
# What is staged (read only)

def dataset_name(ds):
    """The dataset's name: given, or the .uri file name without .uri (as the protocol says)."""
    if ds.get("name"):
        return str(ds["name"])
    name = posixpath.basename(urllib.parse.urlsplit(str(ds.get("uri") or "")).path)
    return name[:-len(".uri")] if name.endswith(".uri") else name


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


def staged_state(data_dir, datasets=(), paths=(), expected=(), markers=()):
    """What of a dataset is staged under ``data_dir`` (see the mlperf_data_state module).

    Raises DataStepError for a dataset entry with neither a name nor a .uri URL."""
    t0 = time.monotonic()
    for ds in datasets:
        if not dataset_name(ds):
            raise DataStepError("every entry of datasets needs a name or a .uri URL, got %r"
                                % (ds,))
    result = {"changed": False, "datasets": {}, "paths": {}, "missing": [], "downloads": []}
    for ds in datasets:
        name = dataset_name(ds)
        dest = os.path.normpath(_abs(data_dir, ds.get("dest") or "."))
        st = dataset_state(dest, name, MAX_PROBLEMS)
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


# ---------------------------------------------------------------------------------------------
# One step, run once

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


def run_step(name, argv, marker, chdir=None, env=None, secret_env=None, done_if_exist=(),
             record=(), expect=(), min_free_bytes=0, space_for=(), space_factor=1.0,
             free_path=None, log_file=None, check_mode=False):
    """Run one preparation command once, guarded by its marker (see the mlperf_data_step
    module). Returns the module's result; raises DataStepError (with the result so far)."""
    env, secret_env = env or {}, secret_env or {}
    secrets = [str(v) for v in secret_env.values() if v is not None and str(v)]
    redact = Redactor(secrets)
    for word in argv:
        if any(s in word for s in secrets):
            raise DataStepError("%s: a secret value is part of the command line; pass it by "
                                "name through secret_env instead" % name)
    cmd = " ".join(shlex.quote(a) for a in argv)
    out = dict(changed=False, cmd=cmd, ran=False, done_by="", seconds=0.0, files_recorded=0)

    # Done already?
    done = marker_state(marker)
    if done["exists"]:
        if done["problem_count"]:
            raise DataStepError(
                "%s: %d file(s) changed since the step recorded them in %s (first: %s). "
                "Nothing was re-run or deleted. If the change is intended, delete the "
                "marker to run the step again." % (name, done["problem_count"], marker,
                                                   "; ".join(done["problems"][:5])),
                problems=done["problems"], **out)
        out.update(done_by="marker", files_recorded=done["files"])
        return out
    if done_if_exist and all(os.path.lexists(x) for x in done_if_exist):
        out["done_by"] = "existing files"
        if check_mode:
            return out
        files = walk_files(record)
        write_marker(marker, {
            "format": MARKER_FORMAT, "name": name, "argv": argv, "adopted": True,
            "finished": now_iso(), "files": files})
        out.update(changed=True, files_recorded=len(files),
                   msg="%s: already done (%s exist); recorded in %s"
                       % (name, ", ".join(done_if_exist), marker))
        return out

    # To be run.
    free_at = free_path or os.path.dirname(marker)
    need = min_free_bytes
    if space_for and space_factor > 0:
        need = max(need, int(space_factor * sum(f["size"] for f in walk_files(space_for))))
    if need > 0:
        free = free_bytes(free_at)
        if free < need:
            raise DataStepError(
                "%s needs about %.1f GiB free in %s, only %.1f GiB are: free space or "
                "choose another DATADIR" % (name, need / 2.0 ** 30, free_at, free / 2.0 ** 30),
                **out)
    if check_mode:
        out.update(changed=True, msg="would run: %s" % cmd)
        return out
    executable = argv[0]
    if os.sep not in executable and shutil.which(executable) is None:
        raise DataStepError("%s: %s is not installed on this host (the container runtime the "
                            "data stage uses; see data_container_command)" % (name, executable),
                            **out)
    run_env = dict(os.environ)
    run_env.update({k: str(v) for k, v in env.items()})
    run_env.update({k: str(v) for k, v in secret_env.items()})
    t0 = time.monotonic()
    try:
        rc, tail = run_streaming(argv, chdir, run_env, log_file, redact)
    except OSError as e:
        raise DataStepError("%s: could not start %s: %s" % (name, executable, redact(str(e))),
                            **out) from None
    out.update(ran=True, changed=True, rc=rc, output_tail=tail,
               seconds=round(time.monotonic() - t0, 3))
    where = " (full output in %s)" % log_file if log_file else ""
    if rc != 0:
        raise DataStepError("%s failed with exit status %d%s; what it wrote is kept for the "
                            "next attempt. Last lines:\n%s"
                            % (name, rc, where, "\n".join(tail[-15:])), **out)
    missing = [x for x in expect if not os.path.lexists(x)]
    if missing:
        raise DataStepError("%s exited 0 but did not create %s%s. Last lines:\n%s"
                            % (name, ", ".join(missing), where, "\n".join(tail[-15:])), **out)
    files = walk_files(record)
    write_marker(marker, {
        "format": MARKER_FORMAT, "name": name, "argv": argv, "adopted": False,
        "finished": now_iso(), "seconds": out["seconds"], "files": files})
    out["files_recorded"] = len(files)
    return out
