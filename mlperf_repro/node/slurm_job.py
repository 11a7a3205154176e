"""A Slurm campaign: one ``sbatch`` job running NEXP runs, its state, and its output cut per run.

Standard library only. Shipped to the submit host by Ansible as ``ansible.module_utils.slurm_job``
(the ``mlperf_slurm_job`` module submits, re-attaches to, polls and cancels jobs with it); the
tests and the CLI import it as ``mlperf_repro.node.slurm_job``.

Files in a Slurm campaign directory, a fresh timestamped ``<root>/<campaign id>`` that is also the
job's LOGDIR (mode ``mode``, default 2770: group-shared, never world-writable unless asked; nothing
earlier is overwritten):

  campaign.json   what was submitted: benchmark, system, nexp, root_seed, output name pattern
  job.sh          the exact script given to sbatch (every variable is set inside it)
  state.json      job id, Slurm state, exit code, reason, per-run records (written atomically)
  <output>        the job's one output file (stdout and stderr of every node, all runs),
                  e.g. ``flux1_1234.out``
  result_<k>.txt  run k (0-based, as MLCommons names submission files), cut out of <output>
                  once the job has ended, whatever its end

Where one run ends and the next begins (AMD's ``run_with_docker_slurm.sh`` runs all NEXP runs of
a job in one loop and writes them all into the one output file):

- A run is anchored on its ``:::MLLOG`` ``init_start`` event, which mlperf-logging's rules
  require in every run log, and which the training script logs once per run on rank 0.
- An ``init_start`` starts a *new* run only once the current run has logged some other event
  (``submission_*``, ``seed``, ``init_stop``, ``run_start``, ...). Several ``init_start`` lines
  in one initialisation (several ranks logging it) therefore stay in one run.
- The run's boundary is then moved back over its cache clearing: to the first ``cache_clear``
  event after the previous run's last other event (normally its ``run_stop``). ``cache_clear``
  is logged before a run, possibly once per node and not in step across nodes: the ones after
  the previous run's end and before the ``init_start`` open the new run, stragglers after the
  ``init_start`` stay inside it. Lines without ``:::MLLOG`` go with the run they fall in: a
  ``RESULT,...`` line printed after ``run_stop`` and before the next ``cache_clear`` stays with
  its own run.
- Everything before the first run's boundary (job start, image pull) goes into result_0; the
  output file itself is kept unchanged beside the run files.
- A run that dies before its ``init_start`` leaves no run behind: its messages end the previous
  run's file and fewer than NEXP files are found (``found`` and ``missing`` say so). One that dies
  during initialisation, before any other event, merges with the next run.

Job states come from ``scontrol show job`` while slurmctld remembers the job (MinJobAge), then
from ``sacct`` (accounting) or ``sacct --completion`` (job-completion records); once seen, the
final state is kept in state.json.
"""

import grp
import os
import re
import shlex
import stat
import subprocess
import sys
import time

try:
    from ansible.module_utils import fileio, mllog_line
except ImportError:  # the controller and tests
    from mlperf_repro.node import fileio, mllog_line

#: Campaign statuses of a job that has not ended.
OPEN_STATUSES = ("submitting", "pending", "running")
#: Slurm job states (base state, without flags) of a job that has not ended.
PENDING_STATES = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                  "RESV_DEL_HOLD")
RUNNING_STATES = ("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING",
                  "STAGE_OUT", "SPECIAL_EXIT")
#: Terminal Slurm states; the campaign status is the state in lower case, COMPLETED -> complete.
FINAL_STATES = ("COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED")

TAIL_LINES = 40
TAIL_BYTES = 16384


class SlurmError(RuntimeError):
    """A Slurm command failed; the message holds its command line and stderr."""


class SlurmJobError(ValueError):
    """A request the mlperf_slurm_job module refuses; ``result`` goes with the message."""

    def __init__(self, msg, **result):
        super().__init__(msg)
        self.result = result


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json(path, default=None):
    return fileio.read_json(path, default)


#: The render stage's comparison of the image's config_<SYSTEM>.sh with the catalog, in the code
#: directory (vendor_check.RECORD_NAME).
VENDOR_RECORD = ".mlperf-vendor-check.json"


def vendor_config(code_dir):
    """The render stage's record of the image's config against the catalog in ``code_dir``, or
    None (no code directory given, or rendered without one): campaign.json keeps it, so collect
    brings it back and the report says it, as for the docker path."""
    if not code_dir:
        return None
    record = read_json(os.path.join(code_dir, VENDOR_RECORD))
    return record if isinstance(record, dict) else None


def write_json(path, data, mode=0o640):
    fileio.write_json(path, data, mode)


def write_bytes(path, data, mode=0o640):
    fileio.write_atomic(path, data, mode)


# ---------------------------------------------------------------------------------------------
# Slurm commands

def parse_scontrol(text):
    """``scontrol show job -o`` output (one line of Key=Value fields) as a dict.

    A field's value runs to the next `` Key=``; values may hold spaces (Command, JobName) and
    ``=`` (TRES=cpu=8,node=8).
    """
    fields = {}
    key = None
    for token in text.strip().split(" "):
        match = re.match(r"^([A-Za-z][A-Za-z0-9_/:]*)=(.*)$", token)
        if match:
            key = match.group(1)
            fields[key] = match.group(2)
        elif key is not None:
            fields[key] += " " + token
    return fields


def parse_exit_code(text):
    """Slurm's ``<exit status>:<signal>`` as (status, signal); (None, None) when unreadable."""
    match = re.match(r"^\s*(\d+):(\d+)\s*$", text or "")
    if not match:
        return None, None
    return int(match.group(1)), int(match.group(2))


def base_state(state):
    """``CANCELLED by 0`` / ``CANCELLED+`` / ``RUNNING`` -> the bare state word."""
    return re.split(r"[\s+]", (state or "").strip(), maxsplit=1)[0].upper()


class Slurm:
    """The Slurm client commands this module uses (sbatch, scontrol, sacct, squeue, scancel)."""

    def __init__(self, env=None, bindir=None, timeout=60):
        self.env = env
        self.bindir = bindir
        self.timeout = timeout

    def _argv(self, name, args):
        return [os.path.join(self.bindir, name) if self.bindir else name] + list(args)

    def run(self, name, *args, check=True, cwd=None, umask=None):
        argv = self._argv(name, args)
        extra = {}
        if umask is not None and sys.version_info >= (3, 9):
            extra["umask"] = umask
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=self.env, cwd=cwd,
                                  timeout=self.timeout, **extra)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SlurmError("%s: %s" % (" ".join(shlex.quote(a) for a in argv), exc))
        if check and proc.returncode != 0:
            raise SlurmError("%s exited with %d: %s" % (
                " ".join(shlex.quote(a) for a in argv), proc.returncode,
                (proc.stderr or proc.stdout).strip()[-2000:]))
        return proc

    def sbatch(self, script, cwd):
        # The job inherits sbatch's umask (Slurm creates the output file with it): group-shared.
        out = self.run("sbatch", "--parsable", script, cwd=cwd, umask=0o007).stdout.strip()
        job_id = out.splitlines()[-1].split(";")[0].strip() if out else ""
        if not job_id.isdigit():
            raise SlurmError("sbatch printed no job id: %r" % out)
        return job_id

    def scontrol_job(self, job_id):
        """The job as slurmctld knows it, or None once it has forgotten it (MinJobAge)."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if proc.returncode != 0 or "JobId=" not in proc.stdout:
            return None
        fields = parse_scontrol(proc.stdout.splitlines()[0])
        return {
            "job_state": base_state(fields.get("JobState")),
            "exit_code": fields.get("ExitCode"),
            "reason": fields.get("Reason"),
            "node_list": fields.get("NodeList"),
            "elapsed": fields.get("RunTime"),
            "time_limit": fields.get("TimeLimit"),
            "start_time": fields.get("StartTime"),
            "end_time": fields.get("EndTime"),
            "stdout": fields.get("StdOut"),
            "source": "scontrol",
        }

    def sacct_job(self, job_id):
        """The job from accounting (sacct), else from job-completion records (sacct -c)."""
        fmt = "JobIDRaw,State,ExitCode,Elapsed,NodeList,Start,End"
        for extra in ([], ["--completion"]):
            proc = self.run("sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", fmt, *extra,
                            check=False)
            if proc.returncode != 0:
                continue
            for line in proc.stdout.splitlines():
                parts = line.split("|")
                if len(parts) >= 7 and parts[0].strip() == str(job_id):
                    return {
                        "job_state": base_state(parts[1]),
                        "exit_code": parts[2],
                        "reason": None,
                        "node_list": parts[4],
                        "elapsed": parts[3],
                        "start_time": parts[5],
                        "end_time": parts[6],
                        "source": "sacct --completion" if extra else "sacct",
                    }
        return None

    def job(self, job_id):
        return self.scontrol_job(job_id) or self.sacct_job(job_id)

    def jobs_with_comment(self, comment):
        """Ids of the jobs slurmctld knows whose comment is ``comment``."""
        proc = self.run("squeue", "-h", "--states=all", "-o", "%i|%k", check=False)
        return [line.split("|", 1)[0] for line in proc.stdout.splitlines()
                if "|" in line and line.split("|", 1)[1].strip() == comment]

    def cancel(self, job_id):
        self.run("scancel", "--full", str(job_id))


# ---------------------------------------------------------------------------------------------
# Cutting the one output file into runs

def mllog_key(line):
    """The ``key`` of a ``:::MLLOG`` line (bytes or str), or None for any other line."""
    return mllog_line.key(line)


def run_starts(lines):
    """Index of the first line of each run in ``lines`` (bytes); see the module docstring."""
    starts = []
    in_run = past_init = False
    first_clear = None  # first cache_clear after the last other MLLOG event
    for index, line in enumerate(lines):
        key = mllog_key(line)
        if key is None:
            continue
        if key == "cache_clear":
            if first_clear is None:
                first_clear = index
            continue
        if key == "init_start":
            if not in_run or past_init:
                starts.append(first_clear if first_clear is not None else index)
                in_run, past_init = True, False
        elif in_run:
            past_init = True
        first_clear = None
    return starts


def describe_run(lines):
    """status (run_stop's metadata status, else crashed) and seed of one run's lines."""
    status, seed = None, None
    for line in lines:
        key = mllog_key(line)
        if key == "run_stop":
            status = mllog_line.metadata(mllog_line.record(line)).get("status") or status or "unknown"
        elif key == "seed" and seed is None:
            seed = mllog_line.record(line).get("value")
    return {"status": status or "crashed", "seed": seed}


def split_runs(data):
    """``data`` (bytes: the whole output) as a list of per-run byte strings."""
    lines = data.splitlines(keepends=True)
    starts = run_starts(lines)
    if not starts:
        return []
    bounds = [0] + starts[1:] + [len(lines)]
    return [b"".join(lines[bounds[k]:bounds[k + 1]]) for k in range(len(starts))]


def progress(path):
    """Runs begun and ended so far in an output file that is still being written."""
    begun = ended = 0
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return {"runs_begun": 0, "runs_ended": 0}
    begun = len(run_starts(lines))
    ended = sum(1 for line in lines if mllog_key(line) == "run_stop")
    return {"runs_begun": begun, "runs_ended": ended}


def split_output(output_path, campaign_dir, write=True):
    """Cut the job's output into ``result_<k>.txt`` files; return one record per run."""
    with open(output_path, "rb") as handle:
        data = handle.read()
    runs = []
    for index, chunk in enumerate(split_runs(data)):
        name = mllog_line.log_name(index)
        lines = chunk.splitlines()
        record = {"index": index, "log": name, "lines": len(lines), "bytes": len(chunk)}
        record.update(describe_run(lines))
        if write:
            write_bytes(os.path.join(campaign_dir, name), chunk)
        runs.append(record)
    return runs


def tail(path, lines=TAIL_LINES, max_bytes=TAIL_BYTES):
    """The last ``lines`` lines of a file (at most ``max_bytes``), as text; '' when missing."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # a partial first line
    return "\n".join(text[-lines:])


# ---------------------------------------------------------------------------------------------
# Campaign directories

def campaign_status(job_state, job_id):
    if not job_id:
        return "submitting"
    if job_state in PENDING_STATES:
        return "pending"
    if job_state in RUNNING_STATES:
        return "running"
    if job_state == "COMPLETED":
        return "complete"
    if job_state in FINAL_STATES:
        return job_state.lower()
    return "unknown"


def new_state(spec):
    return {
        "campaign_id": spec["campaign_id"],
        "launch": "slurm",
        "status": "submitting",
        "job_id": None,
        "job_state": None,
        "exit_code": None,
        "reason": None,
        "node_list": None,
        "elapsed": None,
        "submitted": None,
        "finished": None,
        "nexp": spec["nexp"],
        "root_seed": spec.get("root_seed"),
        "output": None,
        "split": False,
        "found": 0,
        "runs": [],
    }


def is_slurm_campaign(path):
    spec = read_json(os.path.join(path, "campaign.json"))
    return isinstance(spec, dict) and spec.get("launch") == "slurm"


def output_path(campaign_dir, spec, state):
    """Where the job's output is: from slurmctld's StdOut, else the pattern in campaign.json."""
    if state.get("output"):
        return os.path.join(campaign_dir, state["output"])
    pattern = spec.get("output") or "slurm-%j.out"
    name = pattern.replace("%%", "\0").replace("%j", str(state.get("job_id") or "")) \
        .replace("%x", spec.get("job_name") or "").replace("\0", "%")
    return os.path.join(campaign_dir, name)


def prepare(campaign_dir, spec, script, mode=0o2770, group=None):
    """Create a campaign directory with campaign.json, job.sh and state.json (never overwrites)."""
    os.makedirs(os.path.dirname(campaign_dir), exist_ok=True)
    os.mkdir(campaign_dir, mode)  # fails if it exists: campaigns never overwrite each other
    if group is not None:
        os.chown(campaign_dir, -1, group)
    os.chmod(campaign_dir, mode)  # after chown, which clears setgid; and whatever the umask
    spec = dict(spec, launch="slurm", mode="%o" % mode)
    spec.setdefault("created", time.time())
    write_json(os.path.join(campaign_dir, "campaign.json"), spec)
    if not script.endswith("\n"):
        script += "\n"
    write_bytes(os.path.join(campaign_dir, "job.sh"), script.encode("utf-8"), mode=0o750)
    write_json(os.path.join(campaign_dir, "state.json"), new_state(spec))


def comment_for(campaign_dir):
    """The ``--comment`` that marks a campaign's job (to adopt it if its id was not recorded)."""
    return "mlperf-repro:" + os.path.abspath(campaign_dir)


def submit(campaign_dir, slurm):
    """sbatch the campaign's job.sh (from the campaign directory) and record the job id."""
    state_path = os.path.join(campaign_dir, "state.json")
    state = read_json(state_path)
    spec = read_json(os.path.join(campaign_dir, "campaign.json"))
    try:
        job_id = slurm.sbatch(os.path.join(campaign_dir, "job.sh"), cwd=campaign_dir)
    except SlurmError as exc:
        state.update(status="submit_failed", error=str(exc), finished=now())
        write_json(state_path, state)
        raise
    state.update(job_id=job_id, submitted=now(), status="pending", job_state="PENDING",
                 error=None)
    state["output"] = os.path.basename(output_path(campaign_dir, spec, state))
    write_json(state_path, state)
    return state


def adopt_or_submit(campaign_dir, slurm, check=False, script=None):
    """A campaign without a recorded job id: adopt its job if sbatch ran, else submit it.

    ``script``, when given, replaces the job.sh that was never submitted (e.g. after sbatch
    refused a partition that has since been corrected in the inventory).
    """
    found = slurm.jobs_with_comment(comment_for(campaign_dir))
    if found:
        state_path = os.path.join(campaign_dir, "state.json")
        state = read_json(state_path)
        state.update(job_id=sorted(found, key=int)[0], status="pending", error=None)
        if not check:
            write_json(state_path, state)
        return "adopted", state
    if check:
        return "submitted", read_json(os.path.join(campaign_dir, "state.json"))
    if script:
        write_bytes(os.path.join(campaign_dir, "job.sh"),
                    (script if script.endswith("\n") else script + "\n").encode("utf-8"), mode=0o750)
    return "submitted", submit(campaign_dir, slurm)


def refresh(campaign_dir, slurm, write=True):
    """Poll the campaign's job, record what changed; cut the output into runs once it ended.

    Returns (state, changed): ``changed`` is True when result files were written.
    """
    state_path = os.path.join(campaign_dir, "state.json")
    spec = read_json(os.path.join(campaign_dir, "campaign.json"), {}) or {}
    state = read_json(state_path)
    if state is None:
        state = new_state(dict(spec, campaign_id=spec.get("campaign_id")
                               or os.path.basename(campaign_dir)))
    changed = False
    job_id = state.get("job_id")
    final_seen = state.get("job_state") in FINAL_STATES
    if job_id and not final_seen:
        info = slurm.job(job_id)
        if info is None:
            state.update(status="unknown", reason="job %s is no longer known to slurmctld and "
                         "sacct has no record of it" % job_id)
        else:
            for key in ("job_state", "exit_code", "reason", "node_list", "elapsed"):
                if info.get(key) not in (None, ""):
                    state[key] = info[key]
            if info.get("stdout") and os.path.dirname(info["stdout"]) == os.path.abspath(campaign_dir):
                state["output"] = os.path.basename(info["stdout"])
            state["status"] = campaign_status(state["job_state"], job_id)
            state["job_source"] = info.get("source")
            if state["job_state"] in FINAL_STATES:
                state["finished"] = info.get("end_time") or now()
    elif job_id:
        state["status"] = campaign_status(state["job_state"], job_id)
    output = output_path(campaign_dir, spec, state) if job_id else None
    state["output_path"] = output
    if write and state.get("job_state") in FINAL_STATES:
        restore_mode(campaign_dir, spec, state)
    counted = bool(state.get("split"))
    if state.get("job_state") in FINAL_STATES and not state.get("split"):
        if output and os.path.exists(output):
            runs = split_output(output, campaign_dir, write=write)
            state["runs"] = runs
            state["found"] = len(runs)
            state["split"] = write
            state.pop("split_error", None)
            counted = True
            changed = write and bool(runs)
        else:
            state["split_error"] = "the job's output file %s does not exist" % output
    elif state.get("status") == "running" and output:
        state.update(progress(output))
    nexp = int(state.get("nexp") or spec.get("nexp") or 0)
    state["missing"] = max(0, nexp - int(state.get("found") or 0)) if counted else None
    if write:
        write_json(state_path, {k: v for k, v in state.items() if k != "output_path"})
    return state, changed


def _created(path):
    """When a campaign was created: campaign.json's ``created``, else that file's mtime."""
    spec = read_json(os.path.join(path, "campaign.json"), {}) or {}
    try:
        return float(spec["created"])
    except (KeyError, TypeError, ValueError):
        try:
            return os.stat(os.path.join(path, "campaign.json")).st_mtime
        except OSError:
            return 0.0


def restore_mode(campaign_dir, spec, state):
    """Make the campaign directory group-shared again if the job made it world-writable.

    AMD's run_with_docker_slurm.sh runs ``mkdir -p $LOGDIR && chmod 777 $LOGDIR``.
    """
    try:
        mode = int(str(spec["mode"]), 8)
        current = stat.S_IMODE(os.stat(campaign_dir).st_mode)
    except (KeyError, ValueError, OSError):
        return
    if current & 0o002 and current != mode:
        try:
            os.chmod(campaign_dir, mode)
            state["mode_restored"] = "%o -> %o" % (current, mode)
        except OSError as exc:
            state["mode_restored"] = "%o left: %s" % (current, exc)


def find_unfinished(root):
    """The newest campaign under ``root``, if it is a Slurm campaign whose end was not seen.

    Newest by creation time (campaign ids need not sort in time); when the newest campaign has
    ended, there is nothing to re-attach to and a new campaign starts.
    """
    try:
        names = os.listdir(root)
    except OSError:
        return None
    paths = [os.path.join(root, name) for name in names
             if os.path.isfile(os.path.join(root, name, "campaign.json"))]
    if not paths:
        return None
    newest = max(paths, key=lambda p: (_created(p), os.path.basename(p)))
    if not is_slurm_campaign(newest):
        return None
    state = read_json(os.path.join(newest, "state.json"), {}) or {}
    if state.get("status", "submitting") in OPEN_STATUSES:
        return newest
    return None


def ensure_submitted(root, campaign_id, spec, script, slurm, resume=True, check=False,
                     mode=0o2770, group=None):
    """The campaign's job, submitted once: (action, campaign_dir, state).

    ``action``: ``attached`` (a campaign named ``campaign_id``, or the newest unfinished one
    under ``root`` when ``resume``, already has its job), ``adopted`` (its job was submitted but
    its id not recorded), ``submitted`` (sbatch ran now, or would in check mode).
    """
    campaign_dir = os.path.join(root, campaign_id)
    existing = None
    if os.path.isdir(campaign_dir):
        if not is_slurm_campaign(campaign_dir):
            raise ValueError("%s exists and is not a Slurm campaign: campaigns never overwrite "
                             "each other; choose another campaign id" % campaign_dir)
        existing = campaign_dir
    elif resume:
        existing = find_unfinished(root)
    if existing:
        state = read_json(os.path.join(existing, "state.json"), {}) or {}
        if not state.get("job_id"):
            action, state = adopt_or_submit(existing, slurm, check=check,
                                            script=script if existing == campaign_dir else None)
            return action, existing, state
        return "attached", existing, state
    spec = dict(spec, campaign_id=campaign_id, launch="slurm")
    if check:
        return "submitted", campaign_dir, new_state(spec)
    prepare(campaign_dir, spec, script, mode=mode, group=group)
    return "submitted", campaign_dir, submit(campaign_dir, slurm)


def cancel(campaign_dir, slurm, check=False):
    """scancel the campaign's job if it has not ended; True when it did (or would)."""
    state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
    if not state.get("job_id") or state.get("job_state") in FINAL_STATES:
        return False
    info = slurm.job(state["job_id"])
    if info is not None and info["job_state"] in FINAL_STATES:
        return False
    if not check:
        slurm.cancel(state["job_id"])
    return True


REPORTED = ("campaign_id", "campaign_dir", "status", "job_id", "job_state", "exit_code",
               "reason", "node_list", "elapsed", "submitted", "finished", "nexp", "root_seed",
               "output", "output_path", "found", "missing", "runs", "runs_begun", "runs_ended",
               "split", "split_error", "mode_restored", "error")


def reported(state, campaign_dir):
    """The fields of a campaign's state the mlperf_slurm_job module returns."""
    result = {k: state.get(k) for k in REPORTED}
    result["campaign_dir"] = campaign_dir
    return result


# ---------------------------------------------------------------------------------------------
# The mlperf_slurm_job module's one call

def parse_mode(value, world_writable=False):
    """The campaign directory's mode from ``2770`` / ``"2770"``; raises SlurmJobError."""
    try:
        mode = int(str(value), 8) if not isinstance(value, int) else value
    except ValueError:
        raise SlurmJobError("mode: expected an octal mode like 2770, got %r" % (value,)) from None
    if not 0 <= mode <= 0o3777 or mode & 0o700 != 0o700:
        raise SlurmJobError("mode %o: expected a directory mode the owner can read, write and "
                            "enter, like 2770" % mode)
    if mode & 0o002 and not world_writable:
        raise SlurmJobError("mode %o would make the campaign directory world-writable: use group "
                            "permissions (e.g. 2770 with a group), or set world_writable" % mode)
    return mode


def parse_group(name):
    """The gid of group ``name`` (a name or a number), None for none; raises SlurmJobError."""
    if not name:
        return None
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if str(name).isdigit():
            return int(name)
        raise SlurmJobError("group %r does not exist on %s" % (name, os.uname()[1])) from None


def _result(state, campaign_dir, action, changed, tail_lines, diff=None):
    result = reported(state, campaign_dir)
    status = result["status"]
    if status not in OPEN_STATUSES and status != "complete" and result.get("output_path"):
        result["output_tail"] = tail(result["output_path"], tail_lines)
    if diff is not None:
        result["diff"] = diff
    return dict(result, changed=changed, action=action)


def _submitted(slurm, root, campaign_id, script, nexp, resume, root_seed, output, benchmark,
               system, job_name, code_dir, mode, world_writable, group, tail_lines, check_mode,
               diff):
    for key, value in (("root", root), ("campaign_id", campaign_id), ("script", script),
                       ("nexp", nexp)):
        if value in (None, ""):
            raise SlurmJobError("%s is required with state=submitted" % key)
    if nexp < 1:
        raise SlurmJobError("nexp: expected a positive integer, got %r" % nexp)
    campaign_dir = os.path.join(root, campaign_id)
    if campaign_dir not in script:
        raise SlurmJobError("script does not mention the campaign directory %s: its LOGDIR and "
                            "#SBATCH --output must point there" % campaign_dir)
    spec = {"benchmark": benchmark, "system": system, "nexp": nexp, "root_seed": root_seed,
            "output": output, "job_name": job_name}
    config_record = vendor_config(code_dir)
    if config_record is not None:
        spec["vendor_config"] = config_record
    if "/" in output or output.endswith(".log") or output.startswith("result_"):
        raise SlurmJobError("output %r: expected a plain file name that is neither result_* nor "
                            "*.log (the scorer reads those as run logs)" % output)
    mode = parse_mode(mode, world_writable)
    group = parse_group(group)
    try:
        action, directory, state = ensure_submitted(
            root, campaign_id, spec, script, slurm, resume=resume, check=check_mode, mode=mode,
            group=group)
    except (SlurmError, ValueError, OSError) as exc:
        raise SlurmJobError(str(exc), campaign_dir=campaign_dir) from None
    if action == "submitted":
        shown = {"before": "", "after": script, "after_header": os.path.join(directory, "job.sh")}
        if check_mode:
            state["status"] = "pending"
        return _result(state, directory, action, True, tail_lines, shown if diff else None)
    if state.get("job_id"):
        state, _ = refresh(directory, slurm, write=False)
    return _result(state, directory, action, action == "adopted" and not check_mode, tail_lines)


def manage(state="submitted", campaign_dir=None, tail_lines=TAIL_LINES, check_mode=False,
           diff=False, slurm=None, **submit):
    """The mlperf_slurm_job module's one call: submit (or adopt, or resume) a campaign's job
    (``state=submitted``; ``submit`` holds the module's other arguments), cancel it
    (``cancelled``) or say where it stands (``status``). Returns the module's result; raises
    SlurmJobError."""
    slurm = slurm or Slurm()
    if state == "submitted":
        return _submitted(slurm, tail_lines=tail_lines, check_mode=check_mode, diff=diff,
                          **submit)
    if not is_slurm_campaign(campaign_dir):
        raise SlurmJobError("%s is not a Slurm campaign directory (no campaign.json with launch "
                            "slurm)" % campaign_dir)
    try:
        if state == "cancelled":
            done = cancel(campaign_dir, slurm, check=check_mode)
            found, _ = refresh(campaign_dir, slurm, write=not check_mode)
            return _result(found, campaign_dir, "cancelled" if done else "none", done, tail_lines)
        found, changed = refresh(campaign_dir, slurm, write=not check_mode)
    except SlurmError as exc:
        raise SlurmJobError(str(exc), campaign_dir=campaign_dir) from None
    return _result(found, campaign_dir, "status", changed, tail_lines)
