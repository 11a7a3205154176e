"""A campaign: NEXP benchmark runs on one node, detached from the SSH session, resumable.

Standard library only. The same file is
- shipped to nodes by Ansible as ``ansible.module_utils.campaign`` (the ``mlperf_campaign``
  module uses it to start, re-attach to and inspect campaigns: :func:`ensure_started`), and
- copied to the node as a script and executed detached as ``python3 campaign.py run DIR``:
  the runner itself, which survives the SSH session for a 15-hour campaign.

Files in a campaign directory (a fresh, timestamped LOGDIR; nothing earlier is overwritten):
  campaign.json   what to run (written once by the module)
  env.json        DATADIR, LOGDIR, CONT, ... and secrets (mode 0600; never printed)
  state.json      where it stands: one record per run (written atomically after each event)
  runner.out      the runner's own messages
  runner.lock     held (flock) by the live runner: never two runners of one campaign
  result_<k>.txt  the output of run k (0-based, as MLCommons names submission files)

Every file and directory the campaign creates gets its mode set explicitly (the campaign
directory ``spec.logdir_mode``, default 02770, and group ``spec.logdir_group``; files 0644,
env.json 0600), whatever the umask; the runner runs the benchmark under umask 007.

The runner owns its processes. The runner and each run are recorded with their identity (pid,
start time from ``/proc/<pid>/stat`` and the boot id), so a pid the kernel has since given to an
unrelated process is never taken for them. Each run is the leader of its own process group. A
run whose runner died (killed, the node lost its SSH session) lives on as an orphan: the next
runner adopts it (waits for it to end and records its result) instead of starting it again
beside it, so two runs of a campaign never run at once. A run that finished while no runner
watched is recorded from its log; a run whose processes are gone without a finished log (the
node rebooted) is started again and its partial log is kept beside it as
``result_<k>.txt.interrupted-<n>``. A finished run is never started again.
"""

import errno
import fcntl
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time

try:
    from ansible.module_utils import fileio, mllog_line
except ImportError:
    try:  # the controller and tests
        from mlperf_repro.node import fileio, mllog_line
    except ImportError:  # the detached runner: installed beside this script
        import fileio
        import mllog_line

#: A run in any other state (success, aborted, crashed, failed, ...) has finished.
OPEN_STATES = ("pending", "running")
#: More runs than any benchmark's rules ask for (10 for most, up to a few dozen): a larger count
#: is a typo, and one record per run would exhaust the node's memory.
MAX_NEXP = 1000
DIR_MODE = 0o2770
FILE_MODE = 0o644
SECRET_MODE = 0o600
#: The runner's umask (the benchmark's own files: no access for others).
RUNNER_UMASK = 0o007
#: A run is not started with less free space than this in the campaign directory.
MIN_FREE_BYTES = 1 << 20
COLLECTED_MARK = ".collected"
POLL_SECONDS = 1.0


class CampaignError(ValueError):
    """A campaign cannot be started or resumed; the message says why, for the user."""


class ContainerError(RuntimeError):
    """The long-lived container could not be started."""


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json(path, default=None):
    return fileio.read_json(path, default)


def describe(value):
    """A value as a user typed it (never a Python type's internal name)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, str):
        return '"%s"' % str.__str__(value)
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a value of another kind"


os_error_text = fileio.os_error_text


def _open_new(path, mode):
    """Open ``path`` for writing (truncated), its mode set to ``mode`` whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
    except OSError:
        os.close(fd)
        raise
    return fd


def write_json(path, data, mode=FILE_MODE):
    """Write ``data`` to ``path`` atomically (fileio.write_atomic), mode ``mode``.

    On a full disk the temporary file is removed (never left behind, empty or partial) and the
    file is rewritten in place when its new content fits in the space it already holds, so a
    campaign can still record why it stopped; otherwise the OSError names ``path``.
    """
    fileio.write_json(path, data, mode, in_place_when_full=True)


def makedirs(path, mode=0o755):
    """``os.makedirs`` that gives every directory it creates ``mode``, whatever the umask."""
    fileio.make_dirs(path, mode)


log_name = mllog_line.log_name

#: The container runtimes a site may choose (mlperf_container_runtime); ``none`` runs the
#: benchmark on the node itself (the smoke benchmark, which has no image).
RUNTIMES = ("docker", "podman", "none")


# ---------------------------------------------------------------------------------------------
# Process identity

def _proc_stat(pid):
    """(state, pgid, start time in clock ticks since boot) of ``pid``, or None."""
    try:
        with open("/proc/%d/stat" % int(pid), "rb") as handle:
            data = handle.read().decode("ascii", "replace")
    except (OSError, ValueError, TypeError):
        return None
    fields = data[data.rindex(")") + 2:].split()  # comm may hold spaces and parentheses
    # fields[0] is stat's field 3 (state); pgid is field 5, starttime field 22.
    return fields[0], int(fields[2]), int(fields[19])


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def identity(pid):
    """What tells process ``pid`` apart from a later process given the same pid."""
    stat = _proc_stat(pid)
    return {"pid": int(pid), "start": stat[2] if stat else None, "boot": boot_id()}


def is_same_process(ident):
    """Is the process recorded as ``ident`` alive (not a zombie, not a recycled pid)?"""
    if not isinstance(ident, dict) or not ident.get("pid") or ident.get("start") is None:
        return False
    if ident.get("boot") and ident["boot"] != boot_id():
        return False  # recorded before the node rebooted
    stat = _proc_stat(ident["pid"])
    return bool(stat) and stat[0] != "Z" and stat[2] == ident["start"]


def group_members(ident):
    """Live pids of the process group led by the process recorded as ``ident``.

    The kernel never gives a pid that is still some process group's id to a new process; so
    while any member of the run's group lives, the leader's pid cannot belong to an unrelated
    process. If the leader's pid is alive with another start time, the group is gone.
    """
    if not isinstance(ident, dict) or not ident.get("pid") or ident.get("start") is None:
        return []
    if ident.get("boot") and ident["boot"] != boot_id():
        return []
    pgid = int(ident["pid"])
    leader = _proc_stat(pgid)
    if leader and leader[2] != ident["start"]:
        return []  # the pid was given to another process: the run's group ended before
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _proc_stat(int(name))
        if stat and stat[1] == pgid and stat[0] != "Z" and stat[2] >= ident["start"]:
            members.append(int(name))
    return members


def signal_group(ident, sig):
    """Signal the run's process group, if it is still the run's; True when it was."""
    if not group_members(ident):
        return False
    try:
        os.killpg(int(ident["pid"]), sig)
    except OSError:
        return False
    return True


def runner_alive(state, campaign_dir):
    """Is the runner recorded in ``state`` alive (and the same process)?"""
    if isinstance(state.get("runner"), dict):
        return is_same_process(state["runner"])
    return _legacy_pid_alive(state.get("runner_pid"), campaign_dir)


def _legacy_pid_alive(pid, campaign_dir):
    """A state written before runners recorded their identity: the test of that time (a live
    process whose command line names the campaign). Every runner now records its identity."""
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            cmdline = handle.read().decode("utf-8", "replace")
    except (OSError, ValueError, TypeError):
        return False
    return os.path.abspath(campaign_dir) in cmdline and "campaign" in cmdline


def pid_alive(pid, campaign_dir):
    """Backward compatible: is ``pid`` the live runner of ``campaign_dir``?"""
    state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
    runner = state.get("runner")
    if isinstance(runner, dict) and runner.get("pid") == pid:
        return is_same_process(runner)
    return _legacy_pid_alive(pid, campaign_dir)


def live_runs(state):
    """Indexes of runs recorded as running whose processes are still alive (orphans, or the
    live runner's current run)."""
    return [r["index"] for r in state.get("runs", [])
            if r.get("status") == "running" and group_members(r.get("process"))]


# ---------------------------------------------------------------------------------------------
# Spec and state

def check_nexp(value, name="spec.nexp"):
    """The number of runs as an int, or CampaignError naming ``name``."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise CampaignError("%s: expected a whole number of runs from 1 to %d, got %s"
                            % (name, MAX_NEXP, describe(value)))
    value = int(value)
    if not 1 <= value <= MAX_NEXP:
        raise CampaignError("%s: expected a whole number of runs from 1 to %d (10 for a "
                            "submission), got %d" % (name, MAX_NEXP, value))
    return value


def new_state(spec):
    nexp = check_nexp(spec.get("nexp"))
    return {
        "campaign_id": spec["campaign_id"],
        "status": "pending",
        "runner_pid": None,
        "started": None,
        "finished": None,
        "nexp": nexp,
        "runs": [{"index": k, "status": "pending", "seed": None, "rc": None, "log": log_name(k),
                  "started": None, "finished": None} for k in range(nexp)],
    }


def _last_error_line(campaign_dir):
    """The last line of runner.out that looks like an exception, e.g. ``OSError: ...``."""
    try:
        with open(os.path.join(campaign_dir, "runner.out"), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 8192))
            lines = handle.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b.*:", line):
            return line.strip()
    return None


def summarize(campaign_dir):
    """State of a campaign as the module reports it."""
    spec = read_json(os.path.join(campaign_dir, "campaign.json"), {}) or {}
    state = read_json(os.path.join(campaign_dir, "state.json"))
    if state is None:
        try:
            state = new_state(spec) if spec else {"status": "missing", "runs": []}
        except (CampaignError, KeyError) as exc:
            state = {"status": "failed", "runs": [], "error": "%s: %s" % (
                os.path.join(campaign_dir, "campaign.json"), exc)}
    alive = runner_alive(state, campaign_dir)
    if state.get("status") == "running" and not alive:
        state["status"] = "interrupted"
        free = free_bytes(campaign_dir)
        if not state.get("error") and free is not None and free < MIN_FREE_BYTES:
            # The runner could not even record why it stopped: the disk is full.
            state["error"] = "%s: %s (%d bytes free; the runner stopped there; free some space, " \
                "then resume the campaign with --tags run)" % (
                    os.strerror(errno.ENOSPC), campaign_dir, free)
        if not state.get("error"):
            last = _last_error_line(campaign_dir)
            state["error"] = ("the runner stopped: %s (see %s)" % (
                last, os.path.join(campaign_dir, "runner.out"))) if last else \
                "the runner is gone (killed, or the node restarted)"
    if not alive:
        orphans = live_runs(state)
        if orphans:
            state["orphans"] = orphans  # runs still going without their runner: adopted on resume
    counts = {}
    for run in state.get("runs", []):
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    state["runner_alive"] = alive
    state["counts"] = counts
    state["done"] = sum(n for s, n in counts.items() if s not in OPEN_STATES)
    state["campaign_dir"] = campaign_dir
    return state


def find_resumable(root):
    """The newest campaign under ``root`` still to be finished or collected, or None.

    A campaign that completed while nobody watched (the controller lost the node, the playbook
    was stopped) is attached to, not replaced, until the collect stage has marked it collected.
    """
    try:
        names = sorted(os.listdir(root), reverse=True)
    except OSError:
        return None
    for name in names:
        path = os.path.join(root, name)
        if not os.path.isfile(os.path.join(path, "campaign.json")):
            continue
        state = summarize(path)
        if state["status"] != "complete":
            return path  # running, interrupted, stopped or failed: re-attach and finish it
        if not os.path.exists(os.path.join(path, COLLECTED_MARK)):
            return path  # finished but never collected: attach to it
        return None  # the newest campaign finished and was collected: a new one starts
    return None


def busy_campaigns(root, but=None, depth=1):
    """Campaigns under ``root`` (other than ``but``) with a live runner or a live run.

    ``depth`` 1 looks at ``root``'s subdirectories (one benchmark/system's campaigns); 3 at
    ``<root>/<benchmark>/<system>/<campaign>`` (every campaign of a node's LOGDIR).
    """
    busy = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return busy
    for name in names:
        path = os.path.join(root, name)
        if os.path.abspath(path) == os.path.abspath(but or "") or not os.path.isdir(path) \
                or os.path.islink(path):
            continue
        if os.path.isfile(os.path.join(path, "campaign.json")):
            state = read_json(os.path.join(path, "state.json"), {}) or {}
            if runner_alive(state, path) or live_runs(state):
                busy.append(path)
        elif depth > 1:
            busy += busy_campaigns(path, but, depth - 1)
    return busy


def logdir_mode(spec):
    """The campaign directory's mode and group id from ``spec`` (``logdir_mode``, an octal
    string, default 2770; ``logdir_group``, a name or gid, default none), or CampaignError.
    World-writable only with ``logdir_world_writable`` (AMD's guide runs chmod 777)."""
    value = spec.get("logdir_mode")
    if value in (None, ""):
        mode = DIR_MODE
    else:
        try:
            mode = int(str(value), 8)
        except ValueError:
            mode = -1
        if isinstance(value, bool) or not 0 <= mode <= 0o3777 or mode & 0o700 != 0o700:
            raise CampaignError("spec.logdir_mode: expected an octal directory mode the owner "
                                "can read, write and enter, like 2770, got %s" % describe(value))
    if mode & 0o002 and spec.get("logdir_world_writable") is not True:
        raise CampaignError("spec.logdir_mode %o would make the campaign directory "
                            "world-writable: use group permissions (e.g. 2770 with logdir_group),"
                            " or set logdir_world_writable" % mode)
    group = spec.get("logdir_group")
    if group in (None, ""):
        return mode, None
    try:
        import grp
        return mode, grp.getgrnam(str(group)).gr_gid
    except KeyError:
        if str(group).isdigit():
            return mode, int(group)
        raise CampaignError("spec.logdir_group: group %s does not exist on this node"
                            % describe(group))


def prepare(campaign_dir, spec, env, mode=DIR_MODE, group=None):
    """Create a campaign directory with its spec and environment (never overwrites one).

    The directory is filled under a temporary name and renamed into place, so a failure (a full
    disk) leaves no half-made campaign that a later resume would take for a real one.
    """
    state = new_state(spec)  # checks nexp before anything is created
    parent = os.path.dirname(os.path.abspath(campaign_dir))
    makedirs(parent)
    if os.path.lexists(campaign_dir):
        raise FileExistsError(errno.EEXIST, "campaign directory exists", campaign_dir)
    tmp = os.path.join(parent, ".%s.new-%d" % (os.path.basename(campaign_dir), os.getpid()))
    os.mkdir(tmp, mode)
    try:
        if group is not None:
            os.chown(tmp, -1, group)
        os.chmod(tmp, mode)  # after chown, which clears setgid; and whatever the umask
        write_json(os.path.join(tmp, "campaign.json"), spec)
        write_json(os.path.join(tmp, "env.json"), env, mode=SECRET_MODE)
        write_json(os.path.join(tmp, "state.json"), state)
        if os.path.lexists(campaign_dir):  # created meanwhile by someone else
            raise FileExistsError(errno.EEXIST, "campaign directory exists", campaign_dir)
        os.rename(tmp, campaign_dir)
    except BaseException:
        for name in ("campaign.json", "env.json", "state.json"):
            for path in (os.path.join(tmp, name),):
                try:
                    os.unlink(path)
                except OSError:
                    pass
        try:
            os.rmdir(tmp)
        except OSError:
            pass
        raise


def start_detached(campaign_dir, runner_script, python=None):
    """Start the runner in its own session so it outlives the SSH connection."""
    python = python or sys.executable
    fd = os.open(os.path.join(campaign_dir, "runner.out"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                 FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        proc = subprocess.Popen(
            [python, runner_script, "run", os.path.abspath(campaign_dir)],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=campaign_dir)
    finally:
        os.close(fd)
    # Wait until the runner has recorded itself, so a status call right after sees it.
    deadline = time.time() + 10
    while time.time() < deadline:
        state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
        if state.get("runner_pid") == proc.pid or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc.pid


def stop(campaign_dir, sig=signal.SIGTERM):
    """Stop the campaign's runner (which stops its run), or an orphaned run without a runner."""
    state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
    if runner_alive(state, campaign_dir):
        pid = (state.get("runner") or {}).get("pid") or state.get("runner_pid")
        os.killpg(os.getpgid(pid), sig)
        return True
    stopped = False
    for record in state.get("runs", []):
        if record.get("status") == "running" and signal_group(record.get("process"), sig):
            stopped = True  # an orphaned run: the next runner finds it gone and runs it again
    return stopped


def run_seed(spec, index):
    return (int(spec["root_seed"]) + 1000 * index) % (2 ** 31)


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_mounts(mounts, fields, secret_names=()):
    """Mount host paths with ``{NAME}`` fields replaced (a plain substitution: nothing else in a
    value is interpreted)."""
    out = []
    for n, mount in enumerate(mounts or []):
        if not isinstance(mount, dict) or not isinstance(mount.get("host"), str) \
                or not isinstance(mount.get("container"), str):
            raise CampaignError("spec.mounts[%d]: expected a mapping with host and container "
                                "paths (strings), got %s" % (n, describe(mount)))

        def field(match, n=n):
            name = match.group(1)
            if name in secret_names:
                raise CampaignError("spec.mounts[%d] refers to {%s}, a secret: a mount path is "
                                    "not secret" % (n, name))
            if name not in fields:
                raise CampaignError("spec.mounts[%d] refers to {%s}, which env does not set "
                                    "(it sets %s)" % (n, name, ", ".join(sorted(fields))))
            return fields[name]
        out.append({"host": _FIELD.sub(field, mount["host"]), "container": mount["container"]})
    return out


SPEC_REQUIRED = ("nexp", "code_dir", "config_file", "runtime")


def check_spec(spec):
    """A copy of ``spec`` with nexp as an int, or CampaignError naming what is wrong."""
    if not isinstance(spec, dict):
        raise CampaignError("spec: expected a mapping, got %s" % describe(spec))
    for key in SPEC_REQUIRED:
        if key not in spec:
            raise CampaignError("spec.%s is required (got keys %s)"
                                % (key, ", ".join(sorted(spec))))
    spec = dict(spec)
    spec["nexp"] = check_nexp(spec["nexp"])
    logdir_mode(spec)
    if spec["runtime"] not in RUNTIMES:
        raise CampaignError("spec.runtime: expected docker, podman or none, got %s"
                            % describe(spec["runtime"]))
    if spec.get("launcher", "native") not in LAUNCHERS:
        raise CampaignError("spec.launcher: expected %s, got %s"
                            % (" or ".join(LAUNCHERS), describe(spec.get("launcher"))))
    if amd_launcher(spec):
        script = spec.get("vendor_launch_script") or "run_with_docker.sh"
        if spec["runtime"] == "none" or os.path.basename(script) != script:
            raise CampaignError("spec.launcher amd runs AMD's %s, which starts a container: it "
                                "needs runtime docker or podman and a script in code_dir, got "
                                "runtime %s" % (script, describe(spec["runtime"])))
    return spec


#: The fields of a campaign's summary the mlperf_campaign module returns.
REPORTED = ("campaign_id", "campaign_dir", "status", "runs", "done", "nexp", "counts",
            "runner_alive", "started", "finished", "error", "orphans")


def reported(summary):
    """The fields of ``summary`` (a :func:`summarize` result) the module returns."""
    return {k: summary.get(k) for k in REPORTED}


def manage(state="started", root=None, node_root=None, campaign_id=None, campaign_dir=None,
           resume=True, spec=None, env=None, secret_env=None, runner_script=None, python=None,
           check_mode=False):
    """The mlperf_campaign module's one call: start (or resume, or re-attach to) a campaign
    (``state=started``), stop it (``stopped``) or say where it stands (``status``).

    Returns the module's result (``changed``, ``action``, the :data:`REPORTED` fields and, in
    check mode, the ``commands`` a start would run); raises CampaignError."""
    if state == "started":
        for key, value in (("root", root), ("campaign_id", campaign_id), ("spec", spec),
                           ("runner_script", runner_script)):
            if not value:
                raise CampaignError("%s is required with state=started" % key)
        action, directory, summary, commands = ensure_started(
            root, campaign_id, spec, runner_script, env=env, secret_env=secret_env,
            python=python, resume=resume, check_mode=check_mode, node_root=node_root)
        summary["campaign_dir"] = directory
        result = dict(changed=action != "attached", action=action, **reported(summary))
        if commands is not None:
            result["commands"] = commands
        return result
    if not campaign_dir or not os.path.isfile(os.path.join(campaign_dir, "campaign.json")):
        raise CampaignError("%s is not a campaign directory (no campaign.json)" % campaign_dir)
    changed = False
    if state == "stopped":
        changed = False if check_mode else stop(campaign_dir)
    action = "stopped" if changed else "none"
    return dict(changed=changed, action=action, **reported(summarize(campaign_dir)))


def ensure_started(root, campaign_id, spec, runner_script, env=None, secret_env=None,
                   python=None, resume=True, check_mode=False, node_root=None):
    """Start a campaign, or re-attach to / resume the newest unfinished one under ``root``.

    Returns ``(action, campaign_dir, state, commands)``: action is ``attached`` (its runner is
    alive, or it is complete and not yet collected), ``resumed`` (a new runner picks it up at
    its first unfinished run, adopting a run still alive from the runner before) or
    ``started`` (a new campaign directory); ``commands`` are the shell commands it would run
    (check mode only, the values of ``env`` and ``secret_env`` written as ``${NAME}``).
    ``node_root`` (the node's LOGDIR root, ``<node_root>/<benchmark>/<system>/<campaign>``)
    is searched too for campaigns still running: a node runs one campaign at a time. Raises
    CampaignError when nothing may start, before anything is created.

    Two starts at once on a node are taken in turn (a lock in ``node_root``, or ``root``), so
    the second sees the campaign the first started.
    """
    spec = check_spec(spec)  # bad input is refused before anything is created, even on resume
    if not campaign_id or "/" in campaign_id or campaign_id.startswith("."):
        raise CampaignError("campaign_id: expected a directory name, got %s"
                            % describe(campaign_id))
    args = (root, campaign_id, spec, runner_script, env, secret_env, python, resume, check_mode,
            node_root)
    if check_mode:
        return _ensure_started(*args)
    lock_dir = node_root or root
    makedirs(lock_dir)
    fd = os.open(os.path.join(lock_dir, ".campaign-start.lock"), os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _ensure_started(*args)
    finally:
        os.close(fd)


def _ensure_started(root, campaign_id, spec, runner_script, env, secret_env, python, resume,
                    check_mode, node_root):
    env = {str(k): str(v) for k, v in (env or {}).items()}
    secret_env = {str(k): str(v) for k, v in (secret_env or {}).items()}
    existing = find_resumable(root) if resume else None
    busy = busy_campaigns(root, but=existing)
    if node_root and not busy:  # the node's other benchmarks and systems
        busy = busy_campaigns(node_root, but=existing, depth=3)
    if busy:
        raise CampaignError(
            "%s still has a live runner or run on this node: two campaigns never run at once. "
            "Wait for it, or stop it (mlperf_campaign state=stopped campaign_dir=%s)"
            % (busy[0], busy[0]))
    if existing:
        state = summarize(existing)
        if state["runner_alive"] or state["status"] == "complete":
            return "attached", existing, state, None
        if check_mode:
            spec_on_node = read_json(os.path.join(existing, "campaign.json"), {}) or {}
            todo = [r["index"] for r in state["runs"] if r["status"] in OPEN_STATES]
            return "resumed", existing, state, planned_commands(
                spec_on_node, existing, todo, dict(env, **secret_env))
        start_detached(existing, runner_script, python)
        return "resumed", existing, summarize(existing), None

    campaign_dir = os.path.join(root, campaign_id)
    if os.path.lexists(campaign_dir):
        raise CampaignError("%s already exists: campaigns never overwrite each other; choose "
                            "another campaign_id" % campaign_dir)
    spec["campaign_id"] = campaign_id
    spec.setdefault("root_seed", random.SystemRandom().randrange(1, 2 ** 31))
    for name in secret_env:
        env.pop(name, None)  # set in both: the secret value wins, and stays secret
    shown_as_names = dict(env, **secret_env)  # the plan writes ${DATADIR}, ${HF_TOKEN}, ...
    env["LOGDIR"] = campaign_dir
    spec["mounts"] = expand_mounts(spec.get("mounts", []), env, secret_env)
    # What the image's files were against the catalog and this runner, as the campaign starts:
    # in campaign.json, so collect brings it back and the report says it.
    launch = vendor_launch(spec, env)
    if launch is not None:
        spec["vendor_launch"] = launch
    config_record = read_json(os.path.join(spec["code_dir"], ".mlperf-vendor-check.json"), None)
    if isinstance(config_record, dict):
        spec["vendor_config"] = config_record
    if check_mode:
        state = new_state(spec)
        state.update(campaign_dir=campaign_dir, done=0, counts={"pending": spec["nexp"]})
        return "started", campaign_dir, state, planned_commands(spec, campaign_dir,
                                                                env=shown_as_names)
    makedirs(root)
    mode, group = logdir_mode(spec)
    prepare(campaign_dir, spec, dict(env, **secret_env), mode=mode, group=group)
    start_detached(campaign_dir, runner_script, python)
    return "started", campaign_dir, summarize(campaign_dir), None


def config_files(spec):
    """The files a run sources, in order: config_<SYSTEM>.sh, then the site's values (a site file
    the render stage did not write - a code directory rendered before there was one - holds no
    value to source)."""
    return [spec["config_file"]] + ([spec["site_config_file"]] if spec.get("site_config_file") else [])


def vendor_launch(spec, env):
    """AMD's own single-node launcher in the code directory (``vendor_launch_script``, default
    run_with_docker.sh), read as data, against this runner's ``docker run``: the differences
    by name, or None (runtime none, or no such script). Never fails a start."""
    if spec.get("runtime", "none") == "none":
        return None
    try:
        try:
            from ansible.module_utils.vendor_check import launch_differences
        except ImportError:
            from mlperf_repro.node.vendor_check import launch_differences
    except ImportError:  # pragma: no cover - shipped with the module
        return None
    script = spec.get("vendor_launch_script") or "run_with_docker.sh"
    values = dict(env)
    values.update(PWD=spec["code_dir"], CONT=spec.get("image", ""))
    try:
        found = launch_differences(spec["code_dir"], script, container_run_argv(spec), values)
    except (ValueError, KeyError, IndexError) as exc:
        return {"script": script, "found": True, "differences": [],
                "note": "%s could not be read as data: %s" % (script, exc)}
    return found if found.get("found") else None


def container_run_argv(spec):
    """``docker run`` of the long-lived container the runs exec into."""
    argv = [spec.get("runtime_command") or spec["runtime"], "run", "--rm", "--init", "--detach",
            "--name", spec["container_name"]]
    argv += spec.get("container_flags", [])
    for mount in spec.get("mounts", []):
        argv += ["--volume", "%s:%s" % (mount["host"], mount["container"])]
    return argv + [spec["image"], "sleep", "infinity"]


#: Who launches each run: the native runner (one long-lived container, ``docker exec`` per run,
#: detached and resumable), or AMD's own launcher script run literally, once per run (NEXP=1),
#: for sites that want the vendor's path.
LAUNCHERS = ("native", "amd")


def amd_launcher(spec):
    """True when each run is AMD's own launcher script (``launcher: amd``)."""
    return spec.get("launcher", "native") == "amd"


def amd_run_logdir(campaign_dir, index):
    """LOGDIR given to AMD's launcher for run ``index``: its own directory, so the script's own
    result files (``result_0.txt`` for every NEXP=1 call) never overwrite another run's."""
    return os.path.join(campaign_dir, "amd-run-%d" % index)


RUN_IN_CONTAINER = "exec bash ./run_and_time.sh 2>&1"


def run_argv(spec, names):
    """One run's command; ``names`` are the variables config_<SYSTEM>.sh exports."""
    if amd_launcher(spec):
        return ["bash", "./" + (spec.get("vendor_launch_script") or "run_with_docker.sh")]
    if spec.get("runtime", "none") == "none":
        return ["bash", "./run_and_time.sh"]
    argv = [spec.get("runtime_command") or spec["runtime"], "exec"]
    for name in list(names) + ["SEED", "NEXP"]:
        argv += ["--env", name]  # values come from the exec's environment, not argv
    # stderr joins stdout inside the container: one stream, in the order the run wrote it. Two
    # streams are read apart by the runtime (conmon, dockerd) in chunks, and a stderr line can
    # land inside a stdout :::MLLOG line, which makes the log non-compliant.
    return argv + [spec["container_name"], "bash", "-c", RUN_IN_CONTAINER]


def planned_commands(spec, campaign_dir, indexes=None, env=None):
    """The shell commands a campaign would run (check mode), for runs ``indexes`` (default all).

    Values of ``env`` (the campaign's environment, secrets included) are written as ``${NAME}``
    references, so a secret never appears and the plan reads as the guide's commands.
    """
    lines = _planned_commands(spec, campaign_dir, indexes)
    pairs = sorted(((str(v), k) for k, v in (env or {}).items() if len(str(v)) >= 3),
                   key=lambda pair: -len(pair[0]))
    for value, name in pairs:
        lines = [line.replace(value, "${%s}" % name) for line in lines]
    return lines


def _planned_commands(spec, campaign_dir, indexes):
    quote = shlex.quote
    code_dir = spec["code_dir"]
    lines = ["cd %s && set -a && %s && set +a && export NEXP=%d" % (
        quote(code_dir), " && ".join(". " + quote(f) for f in config_files(spec)), int(spec["nexp"]))]
    runtime = spec.get("runtime", "none")
    if amd_launcher(spec):  # AMD's script starts and removes its own container, once per run
        runtime = "none"
    if runtime != "none":
        lines.append(" ".join(quote(a) for a in container_run_argv(spec)))
    names = ["<each variable %s exports>" % os.path.basename(spec["config_file"])]
    for index in range(int(spec["nexp"])) if indexes is None else indexes:
        argv = run_argv(spec, []) if runtime == "none" else run_argv(spec, names)
        lines.append("SEED=%d %s > %s 2>&1" % (
            run_seed(spec, index), " ".join(a if a.startswith("<") else quote(a) for a in argv),
            quote(os.path.join(campaign_dir, log_name(index)))))
    if runtime != "none":
        lines.append("%s rm -f %s" % (quote(spec.get("runtime_command") or runtime),
                                      quote(spec["container_name"])))
    return lines


def free_bytes(path):
    """Free bytes where ``path`` is (fileio.free_bytes), or None when it cannot be measured."""
    try:
        return fileio.free_bytes(path)
    except OSError:
        return None


class DiskFull(OSError):
    """The campaign directory's filesystem is full."""


def check_space(path, what):
    free = free_bytes(path)
    if free is not None and free < MIN_FREE_BYTES:
        exc = DiskFull(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        exc.detail = "%d bytes free; %s; free some space there, then resume the campaign " \
                     "(--tags run)" % (free, what)
        raise exc


# ---------------------------------------------------------------------------------------------
# The runner (executed detached on the node)

class CampaignRunner:
    """The detached process that runs a campaign's NEXP runs one after another."""

    def __init__(self, campaign_dir):
        self.dir = os.path.abspath(campaign_dir)
        self.spec = read_json(os.path.join(self.dir, "campaign.json"))
        if not self.spec:
            raise SystemExit("%s: campaign.json missing or unreadable" % self.dir)
        self.env_extra = read_json(os.path.join(self.dir, "env.json"), {}) or {}
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = read_json(self.state_path) or new_state(self.spec)
        self.child = None
        self.adopted = None  # identity of an orphaned run being waited for
        self.stopping = False
        self.lock_fd = None

    def say(self, message):
        try:
            sys.stdout.write("%s %s\n" % (now(), message))
            sys.stdout.flush()
        except OSError:
            pass  # a full disk: the state file says why

    def save(self):
        write_json(self.state_path, self.state)

    def lock(self):
        """Hold runner.lock for the runner's life: a second runner of this campaign exits."""
        path = os.path.join(self.dir, "runner.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        os.fchmod(fd, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.lock_fd = fd
        try:  # who holds it, for a person looking; over the old bytes (no new space needed)
            line = b"%d\n" % os.getpid()
            os.pwrite(fd, line, 0)
            os.ftruncate(fd, len(line))
        except OSError:
            pass
        return True

    # -- environment -----------------------------------------------------------------------
    def base_env(self):
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.env_extra.items()})
        env["NEXP"] = str(self.spec["nexp"])
        return env

    def config_env(self, env):
        """The environment after sourcing config_<SYSTEM>.sh (the image's own, or the catalog's
        where the image has none) and then the site's values (``site_config_file``), and the
        names they exported.

        NEXP is exported again after sourcing: AMD's LoRA config resets it to 1.
        """
        script = ('set -a; . "$1" >/dev/null; if [ -f "${2:-}" ]; then . "$2" >/dev/null; fi; set +a; '
                  'export NEXP=%d; env -0' % self.spec["nexp"])
        files = config_files(self.spec)
        out = subprocess.run(["bash", "-c", script, "config"] + files,
                             env=env, capture_output=True, check=True,
                             cwd=self.spec["code_dir"]).stdout
        sourced = {}
        for item in out.split(b"\0"):
            key, sep, value = item.decode("utf-8", "replace").partition("=")
            if sep:
                sourced[key] = value
        # As AMD's run_with_docker.sh (`env -i bash -c ". cfg && compgen -e"`): every name the
        # config exports goes into the container, even when this process's own environment has
        # the same value; and the campaign's own variables (env.json).
        exported = subprocess.run(
            ["bash", "-c", 'set -a; . "$1" >/dev/null 2>&1; if [ -f "${2:-}" ]; then . "$2" >/dev/null 2>&1; fi; '
             'compgen -e', "config"] + files,
            env={}, capture_output=True, check=False, cwd=self.spec["code_dir"]).stdout.split()
        wanted = {k.decode("utf-8", "replace") for k in exported} | set(self.env_extra)
        names = sorted(k for k in sourced
                       if (k in wanted or sourced.get(k) != os.environ.get(k))
                       and k not in ("PWD", "SHLVL", "_", "OLDPWD"))
        return sourced, names

    # -- container runtime -----------------------------------------------------------------
    def runtime(self):
        return self.spec.get("runtime", "none")

    def own_container(self):
        """Does this runner start the container the runs exec into? (AMD's launcher starts
        and removes its own.)"""
        return self.runtime() != "none" and not amd_launcher(self.spec)

    def container_cmd(self):
        return [self.spec.get("runtime_command") or self.runtime()]

    def start_container(self):
        name = self.spec["container_name"]
        subprocess.run(self.container_cmd() + ["rm", "-f", name], capture_output=True, check=False)
        argv = container_run_argv(self.spec)
        self.say("starting container: %s" % " ".join(shlex.quote(a) for a in argv))
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:  # the runtime's own reason goes into state.json's error
            reason = proc.stderr.decode("utf-8", "replace").strip()
            self.say(reason)
            raise ContainerError("%s run exited %d: %s" % (argv[0], proc.returncode, reason[-2000:]))

    def remove_container(self):
        subprocess.run(self.container_cmd() + ["rm", "-f", self.spec["container_name"]],
                       capture_output=True, check=False)

    def run_argv(self, names):
        return run_argv(self.spec, names)

    # -- one run ---------------------------------------------------------------------------
    def clear_caches(self):
        if not self.spec.get("clear_caches"):
            return
        cmd = "sync && /sbin/sysctl vm.drop_caches=3"
        if os.geteuid() != 0:
            cmd = "sync && sudo -n /sbin/sysctl vm.drop_caches=3"
        subprocess.run(["bash", "-c", cmd], capture_output=True, check=False)

    def progress(self, record):
        return "run %d/%d" % (record["index"] + 1, self.spec["nexp"])

    def finish(self, record, rc, how=""):
        path = os.path.join(self.dir, record["log"])
        record["rc"] = rc
        record["finished"] = now()
        record["status"] = run_outcome(path, rc)
        if record["status"] != "success" and free_bytes(self.dir) is not None \
                and free_bytes(self.dir) < MIN_FREE_BYTES:
            # The run most likely failed for want of space (its log could not be written): it
            # did not really run, so it stays to be done once there is space again.
            record.update(status="pending", rc=None, finished=None)
            check_space(self.dir, "%s ended (rc %s) while writing its log %s on the full disk, "
                        "and is to be run again" % (self.progress(record), rc, record["log"]))
        self.save()
        self.say("%s: %s%s (rc %s)" % (self.progress(record), record["status"], how, rc))

    def adopt(self, record):
        """Wait for a run that outlived its runner, then record its result from its log."""
        self.adopted = record["process"]
        self.say("%s: adopting its process group %d, still running from the runner before"
                 % (self.progress(record), record["process"]["pid"]))
        record["adopted"] = True
        self.save()
        while group_members(self.adopted):
            if self.stopping:
                signal_group(self.adopted, signal.SIGTERM)
            time.sleep(POLL_SECONDS)
        self.adopted = None
        if self.stopping:
            record.update(status="pending", rc=None, started=None, finished=None, process=None)
            self.save()
            self.say("%s: stopped" % self.progress(record))
            return
        self.finish(record, None, " (adopted)")

    def run_one(self, record, env, names):
        path = os.path.join(self.dir, record["log"])
        if record["status"] == "running" and record.get("process"):
            if group_members(record["process"]):
                self.adopt(record)
                return
            if run_outcome(path, None) != "crashed":
                # It ended while no runner watched, with a complete log: record it, never re-run.
                self.finish(record, None, " (ended while the runner was away)")
                return
        check_space(self.dir, "%s not started" % self.progress(record))
        if os.path.exists(path):  # a partial log from an interrupted attempt: keep it
            n = 1
            while os.path.exists("%s.interrupted-%d" % (path, n)):
                n += 1
            os.rename(path, "%s.interrupted-%d" % (path, n))
        seed = run_seed(self.spec, record["index"])
        record.update(status="running", seed=seed, started=now(), finished=None, rc=None,
                      process=None)
        record.pop("adopted", None)
        record_tunables(self.spec, record)
        self.state["current"] = record["index"]
        self.save()
        self.clear_caches()
        run_env = dict(env)
        run_env["SEED"] = str(seed)
        if amd_launcher(self.spec):
            # AMD's script, literally, for this one run: it sources nothing itself (the config
            # and site values are in the environment, as after the guide's `source config_*.sh`),
            # starts its container, runs NEXP runs and tees each into LOGDIR: one run, into a
            # directory of its own; its output is this run's log.
            run_env["NEXP"] = "1"
            run_env.setdefault("DGXSYSTEM", str(self.spec.get("system") or ""))
            run_env["LOGDIR"] = amd_run_logdir(self.dir, record["index"])
            makedirs(run_env["LOGDIR"], DIR_MODE)
        cwd = self.spec["code_dir"]
        self.say("%s: seed %d" % (self.progress(record), seed))
        fd = _open_new(path, FILE_MODE)
        go_read, go_write = os.pipe()
        try:
            # The run leads its own process group: stopping it signals the whole group, and the
            # group's identity lets the next runner adopt it if this runner dies. It waits for
            # a go on a pipe until its identity is recorded: if this runner dies before that,
            # the pipe closes and the run never starts, unrecorded.
            gate = 'IFS= read -r go <&%d; [ "$go" = go ] || exit 125; exec %d<&-; exec "$@"' % (
                go_read, go_read)
            self.child = subprocess.Popen(["bash", "-c", gate, "run"] + self.run_argv(names),
                                          cwd=cwd, env=run_env, stdin=subprocess.DEVNULL,
                                          stdout=fd, stderr=subprocess.STDOUT,
                                          start_new_session=True, pass_fds=(go_read,))
        finally:
            os.close(fd)
            os.close(go_read)
        try:
            record["process"] = identity(self.child.pid)
            try:
                self.save()
            except OSError:
                record.update(status="pending", rc=None, started=None, process=None)
                raise
            if not self.stopping:
                os.write(go_write, b"go\n")
        finally:
            os.close(go_write)
            if sys.exc_info()[0] is not None:
                self.child.wait()  # it exits on the closed pipe, without running
                self.child = None
        # A stop that came while the run was starting (before self.child was set) is honoured:
        # the run got no go and ends at once.
        rc = self.child.wait()
        self.child = None
        if self.stopping:
            # Stopped on purpose mid-run: the run did not finish, so it stays to be done; its
            # partial log is kept (renamed .interrupted-<n>) when it is started again.
            record.update(status="pending", rc=None, started=None, finished=None, process=None)
            self.save()
            self.say("%s: stopped" % self.progress(record))
            return
        self.finish(record, rc)

    # -- the loop --------------------------------------------------------------------------
    def on_signal(self, signum, _frame):
        self.stopping = True
        self._signal_child()

    def _signal_child(self):
        child = self.child
        if child is not None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except OSError:
                pass
        if self.adopted is not None:
            signal_group(self.adopted, signal.SIGTERM)

    def fail(self, error):
        """Record the campaign as failed with ``error``; said in runner.out if it cannot be."""
        self.state.update(status="failed", finished=now(), error=error)
        self.state.pop("current", None)
        self.say("campaign failed: %s" % error)
        try:
            self.save()
        except OSError as exc:
            self.say("could not record the failure: %s" % os_error_text(exc))
        return 1

    def main(self):
        os.umask(RUNNER_UMASK)
        if not self.lock():
            self.say("another runner of %s is alive: this one exits" % self.dir)
            return 0
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        try:
            return self._main()
        except OSError as exc:
            return self.fail(os_error_text(exc, self.dir))
        except Exception as exc:  # pylint: disable=broad-except
            return self.fail("the runner stopped on an unexpected error: %s: %s"
                             % (type(exc).__name__, exc))

    def _main(self):
        self.state.update(status="running", runner_pid=os.getpid(), runner=identity(os.getpid()),
                          finished=None, error=None)
        self.state["started"] = self.state.get("started") or now()
        self.save()
        env = self.base_env()
        try:
            env, names = self.config_env(env)
        except subprocess.CalledProcessError as exc:
            return self.fail("sourcing %s failed: %s" % (
                self.spec["config_file"], exc.stderr.decode("utf-8", "replace")[-2000:]))
        try:
            # Runs still alive from the runner before are adopted first, before the container
            # they run in is replaced.
            for record in self.state["runs"]:
                if record["status"] == "running" and group_members(record.get("process")) \
                        and not self.stopping:
                    self.adopt(record)
            if self.own_container() and not self.stopping:
                self.start_container()
            for record in self.state["runs"]:
                if self.stopping:
                    break
                if record["status"] not in OPEN_STATES:
                    continue  # finished runs are never started again
                self.run_one(record, env, names)
                if record["status"] not in OPEN_STATES + ("success",) \
                        and self.spec.get("stop_on_failure"):
                    break
        except subprocess.CalledProcessError as exc:
            return self.fail(str(exc))
        except ContainerError as exc:
            return self.fail(str(exc))
        finally:
            if self.own_container():
                self.remove_container()
        if self.stopping:
            for record in self.state["runs"]:
                if record["status"] == "running":
                    record["status"] = "pending"
            self.state.update(status="stopped", finished=now())
        else:
            self.state.update(status="complete", finished=now())
        self.state.pop("current", None)
        self.save()
        self.say("campaign %s" % self.state["status"])
        return 0


def record_tunables(spec, record):
    """Record the node's runtime tunables at a run's start in its state record (read only).

    Done when the spec names ``tunables_root`` (the run stage's campaign_tunables_record): the
    settings as read, their drift from AMD's values and ``as_amd``, from tunables.py installed
    beside this script (mlperf_repro/node/tunables.py in a checkout). Never stops a run.
    """
    root = spec.get("tunables_root")
    if not root:
        return
    try:
        import importlib.util  # pylint: disable=import-outside-toplevel
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tunables.py")
        loader = importlib.util.spec_from_file_location("mlperf_runner_tunables", path)
        tunables = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(tunables)
        record["tunables"] = dict(tunables.run_record(root), read=now())
    except Exception as exc:  # pylint: disable=broad-except
        record["tunables"] = {"read": now(), "error": "%s: %s" % (type(exc).__name__, exc)}


def run_outcome(path, rc):
    """success / aborted / ... from the log's run_stop status; crashed when there is none.

    ``rc`` None: the exit status is unknown (a run adopted from an earlier runner); the log's
    status stands.
    """
    status = None
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if b"run_stop" not in raw:
                    continue
                # the JSON object only: text a process wrote after it on the same line (its
                # stderr joining an unterminated line) does not hide the run's status
                found = mllog_line.record(raw)
                if found is not None and found.get("key") == "run_stop":
                    status = mllog_line.metadata(found).get("status") or status
    except OSError:
        return "crashed"
    if status is None:
        return "crashed"
    if status == "success" and rc not in (0, None):
        return "failed"
    return status


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(CampaignRunner(sys.argv[2]).main())
    sys.stderr.write("usage: campaign.py run CAMPAIGN_DIR\n")
    sys.exit(2)
