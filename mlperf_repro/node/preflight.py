"""Node-side preflight probes, merged into one call (one SSH round trip per node).

Standard library only: Ansible ships this file to the nodes as ``ansible.module_utils.preflight``.
Nothing here changes the node. ``run`` is a callable ``run(argv) -> (rc, stdout, stderr)`` so
tests can drive the command-backed probes with recorded outputs.
"""

import os
import platform
import shutil
import subprocess
import sys

try:
    from ansible.module_utils.fileio import ancestors, existing_ancestor, free_bytes
except ImportError:  # the controller and tests
    from mlperf_repro.node.fileio import ancestors, existing_ancestor, free_bytes

GIB = 1024 ** 3


def default_run(argv, timeout=20):
    """Run a command, never raising: (rc, stdout, stderr); rc 127 when it is missing."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", "%s: command not found" % argv[0]
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %ss" % (" ".join(argv), timeout)
    return proc.returncode, proc.stdout, proc.stderr


def os_release(path="/etc/os-release"):
    info = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                key, sep, value = line.strip().partition("=")
                if sep:
                    info[key] = value.strip().strip('"')
    except OSError:
        pass
    return {"id": info.get("ID", ""), "version_id": info.get("VERSION_ID", ""),
            "pretty_name": info.get("PRETTY_NAME", "")}



def mount_table(text):
    """The rows of a mount table (/proc/mounts' text) as (source, mountpoint, fstype) dicts, in
    order; a mount point's octal escapes (``\\040`` for a space) decoded."""
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            rows.append({"source": fields[0], "mountpoint": fields[1].replace("\\040", " "),
                         "fstype": fields[2]})
    return rows


def mount_at(text, path):
    """The mount table's row mounted exactly at ``path`` (the last, the one in effect), or None."""
    path = path.rstrip("/") or "/"
    found = [row for row in mount_table(text) if row["mountpoint"] == path]
    return found[-1] if found else None


def mount_of(path, mounts_file="/proc/mounts"):
    """The mount entry (source, mountpoint, fstype) holding ``path``: longest matching prefix."""
    path = os.path.realpath(existing_ancestor(path))
    best = {"source": "", "mountpoint": "/", "fstype": ""}
    try:
        with open(mounts_file, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return best
    for row in mount_table(text):
        mnt = row["mountpoint"]
        inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best["mountpoint"]):
            best = row
    return best


def _blocking_file(path):
    """The first existing component of ``path`` that is not a directory, or None."""
    for component in reversed(list(ancestors(path))):
        if not os.path.exists(component):
            return None
        if not os.path.isdir(component):
            return component
    return None


def read_only(path):
    """Is the filesystem holding ``path`` (its nearest existing directory) mounted read-only?"""
    try:
        return bool(os.statvfs(existing_ancestor(path)).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def path_problem(label, path):
    """Why ``path`` cannot be a writable directory (a file in the way, a read-only filesystem,
    no write permission where it is or will be created), or None. Changes nothing."""
    blocking = _blocking_file(path)
    if blocking == os.path.abspath(path):
        return "%s: %s is a file, not a directory" % (label, path)
    if blocking:
        return "%s: %s cannot be created: %s is a file, not a directory" % (label, path, blocking)
    anchor = existing_ancestor(path)
    if read_only(path):
        mount = mount_of(path)
        return "%s: %s is on a read-only filesystem (%s mounted read-only at %s)" % (
            label, path, mount["source"] or mount["fstype"] or "?", mount["mountpoint"])
    if not os.access(anchor, os.W_OK | os.X_OK):
        if anchor == os.path.abspath(path):
            return "%s: %s is not writable by %s" % (label, path, _user())
        return "%s: %s cannot be created: %s is not writable by %s" % (label, path, anchor, _user())
    return None


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return "uid %d" % os.geteuid()


def disk_check(label, path, need_gb):
    """Free space where ``path`` is (or will be created) against ``need_gb``, after what makes
    the path unusable whatever the space (a file in its way, a read-only filesystem, no write
    permission): that is said as such, not as "0.0 GiB free"."""
    anchor = existing_ancestor(path)
    free_gb = free_bytes(anchor) / GIB
    # Whole GiB and no "where it was measured": the summary stays the same from run to run
    # unless something real changed (directories created by the first run included).
    record = {"label": label, "path": path, "free_gb": round(free_gb), "need_gb": need_gb}
    record.update(mount_of(path))
    problem = path_problem(label, path)
    if problem is None and need_gb and free_gb < need_gb:
        problem = "%s: %s has %.1f GiB free, %s needs %.1f GiB" % (
            label, anchor, free_gb, path, need_gb)
    return record, problem


def container_runtime_check(runtime, run, allow_running=False):
    """Is the container runtime usable, and is the node free of other containers?

    AMD's Slurm launcher stops every running container on a node, so by default a node that
    runs other containers is a problem, not something to discover afterwards.
    """
    facts = {"runtime": runtime, "usable": None, "running": []}
    problems = []
    if runtime == "none":
        return facts, problems
    if shutil.which(runtime) is None:
        facts["usable"] = False
        problems.append("%s is not installed (container runtime %s)" % (runtime, runtime))
        return facts, problems
    rc, out, err = run([runtime, "ps", "--format", "{{.Names}}"])
    facts["usable"] = rc == 0
    if rc != 0:
        problems.append("%s cannot list containers (rc %s): %s" % (
            runtime, rc, (err or out).strip().splitlines()[-1:] or ""))
        return facts, problems
    facts["running"] = [name for name in out.split() if name]
    if facts["running"] and not allow_running:
        problems.append(
            "other containers are running (%s): AMD's launch scripts stop every container on the "
            "node; stop them or set preflight_allow_running_containers" % ", ".join(facts["running"]))
    return facts, problems


def sudo_check(run):
    if os.geteuid() == 0:
        return True, None
    if shutil.which("sudo") is None:
        return False, "sudo is not installed and the remote user is not root"
    rc, _, _ = run(["sudo", "-n", "true"])
    if rc != 0:
        return False, "passwordless sudo is not available for %s" % os.environ.get("USER", "?")
    return True, None


def probe(paths, commands=(), runtime="none", need_sudo=False, allow_running=False,
          min_python=(3, 8), run=default_run):
    """All node probes at once. Returns (facts, problems)."""
    problems = []
    facts = {
        "hostname": platform.node(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "kernel": platform.release(),
        "arch": platform.machine(),
        "os": os_release(),
        "cpus": os.cpu_count(),
        "disks": [],
        "commands": {},
    }
    if sys.version_info[:2] < tuple(min_python):
        problems.append("Python %s on the node; %d.%d or later is needed" % (
            facts["python"], min_python[0], min_python[1]))
    for item in paths:
        record, problem = disk_check(item["label"], item["path"], float(item.get("need_gb") or 0))
        facts["disks"].append(record)
        if problem:
            problems.append(problem)
    for name in commands:
        found = shutil.which(name)
        facts["commands"][name] = found
        if not found:
            problems.append("command %r not found on PATH" % name)
    facts["container"], runtime_problems = container_runtime_check(runtime, run, allow_running)
    problems.extend(runtime_problems)
    if need_sudo:
        facts["sudo"], problem = sudo_check(run)
        if problem:
            problems.append(problem)
    return facts, problems
