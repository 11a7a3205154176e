"""A campaign: NEXP benchmark runs on one node, detached from the SSH session, resumable.

Standard library only. The same file is
- shipped to nodes by Ansible as ``ansible.module_utils.campaign`` (the ``mlperf_campaign``
  module uses it to start, re-attach to and inspect campaigns), and
- copied to the node as a script and executed detached as ``python3 campaign.py run DIR``:
  the runner itself, which survives the SSH session for a 15-hour campaign.

Files in a campaign directory (a fresh, timestamped LOGDIR; nothing earlier is overwritten):
  campaign.json   what to run (written once by the module)
  env.json        DATADIR, LOGDIR, CONT, ... and secrets (mode 0600; never printed)
  state.json      where it stands: one record per run (written atomically after each event)
  runner.out      the runner's own messages
  result_<k>.txt  the output of run k (0-based, as MLCommons names submission files)

A run that finished (successfully or not) is never started again; a run that was running when
the runner died (node rebooted, process killed) is started again and its partial log is kept
beside it as ``result_<k>.txt.interrupted-<n>``.
"""

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time

#: A run in any other state (success, aborted, crashed, failed, ...) has finished.
OPEN_STATES = ("pending", "running")
RUN_STOP_MARK = '"key": "run_stop"'


class ContainerError(RuntimeError):
    """The long-lived container could not be started."""


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def write_json(path, data, mode=0o644):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)


def log_name(index):
    return "result_%d.txt" % index


def new_state(spec):
    return {
        "campaign_id": spec["campaign_id"],
        "status": "pending",
        "runner_pid": None,
        "started": None,
        "finished": None,
        "nexp": spec["nexp"],
        "runs": [{"index": k, "status": "pending", "seed": None, "rc": None, "log": log_name(k),
                  "started": None, "finished": None} for k in range(spec["nexp"])],
    }


def pid_alive(pid, campaign_dir):
    """Is ``pid`` a live runner of this campaign (not a recycled pid)?"""
    if not pid:
        return False
    try:
        with open("/proc/%d/cmdline" % int(pid), "rb") as handle:
            cmdline = handle.read().decode("utf-8", "replace")
    except OSError:
        return False
    return os.path.abspath(campaign_dir) in cmdline and "campaign" in cmdline


def summarize(campaign_dir):
    """State of a campaign as the module reports it."""
    spec = read_json(os.path.join(campaign_dir, "campaign.json"), {}) or {}
    state = read_json(os.path.join(campaign_dir, "state.json"))
    if state is None:
        state = new_state(spec) if spec else {"status": "missing", "runs": []}
    alive = pid_alive(state.get("runner_pid"), campaign_dir)
    if state.get("status") == "running" and not alive:
        state["status"] = "interrupted"
    counts = {}
    for run in state.get("runs", []):
        counts[run["status"]] = counts.get(run["status"], 0) + 1
    state["runner_alive"] = alive
    state["counts"] = counts
    state["done"] = sum(n for s, n in counts.items() if s not in OPEN_STATES)
    state["campaign_dir"] = campaign_dir
    return state


COLLECTED_MARK = ".collected"


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


def prepare(campaign_dir, spec, env, mode=0o2770):
    """Create a campaign directory with its spec and environment (never overwrites one)."""
    os.makedirs(os.path.dirname(campaign_dir), exist_ok=True)
    os.mkdir(campaign_dir, mode)  # fails if it exists: campaigns never overwrite each other
    os.chmod(campaign_dir, mode)
    write_json(os.path.join(campaign_dir, "campaign.json"), spec)
    write_json(os.path.join(campaign_dir, "env.json"), env, mode=0o600)
    write_json(os.path.join(campaign_dir, "state.json"), new_state(spec))


def start_detached(campaign_dir, runner_script, python=None):
    """Start the runner in its own session so it outlives the SSH connection."""
    python = python or sys.executable
    with open(os.path.join(campaign_dir, "runner.out"), "ab") as log:
        proc = subprocess.Popen(
            [python, runner_script, "run", os.path.abspath(campaign_dir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, cwd=campaign_dir)
    # Wait until the runner has recorded itself, so a status call right after sees it.
    deadline = time.time() + 10
    while time.time() < deadline:
        state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
        if state.get("runner_pid") == proc.pid or proc.poll() is not None:
            break
        time.sleep(0.05)
    return proc.pid


def stop(campaign_dir, sig=signal.SIGTERM):
    state = read_json(os.path.join(campaign_dir, "state.json"), {}) or {}
    pid = state.get("runner_pid")
    if pid_alive(pid, campaign_dir):
        os.killpg(os.getpgid(pid), sig)
        return True
    return False


def run_seed(spec, index):
    return (int(spec["root_seed"]) + 1000 * index) % (2 ** 31)


def container_run_argv(spec):
    """``docker run`` of the long-lived container the runs exec into."""
    argv = [spec.get("runtime_command") or spec["runtime"], "run", "--rm", "--init", "--detach",
            "--name", spec["container_name"]]
    argv += spec.get("container_flags", [])
    for mount in spec.get("mounts", []):
        argv += ["--volume", "%s:%s" % (mount["host"], mount["container"])]
    return argv + [spec["image"], "sleep", "infinity"]


def run_argv(spec, names):
    """One run's command; ``names`` are the variables config_<SYSTEM>.sh exports."""
    if spec.get("runtime", "none") == "none":
        return ["bash", "./run_and_time.sh"]
    argv = [spec.get("runtime_command") or spec["runtime"], "exec"]
    for name in list(names) + ["SEED", "NEXP"]:
        argv += ["--env", name]  # values come from the exec's environment, not argv
    return argv + [spec["container_name"], "bash", "./run_and_time.sh"]


def planned_commands(spec, campaign_dir, indexes=None, env=None):
    """The shell commands a campaign would run (check mode), for runs ``indexes`` (default all).

    Values of ``env`` (the campaign's environment, which may hold secrets and which Ansible
    masks as no_log) are written as ``${NAME}`` references, so they never appear.
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
    lines = ["cd %s && set -a && . %s && set +a && export NEXP=%d" % (
        quote(code_dir), quote(spec["config_file"]), int(spec["nexp"]))]
    runtime = spec.get("runtime", "none")
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


# ---------------------------------------------------------------------------------------------
# The runner (executed detached on the node)

class Runner:
    def __init__(self, campaign_dir):
        self.dir = os.path.abspath(campaign_dir)
        self.spec = read_json(os.path.join(self.dir, "campaign.json"))
        if not self.spec:
            raise SystemExit("%s: campaign.json missing or unreadable" % self.dir)
        self.env_extra = read_json(os.path.join(self.dir, "env.json"), {}) or {}
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = read_json(self.state_path) or new_state(self.spec)
        self.child = None
        self.stopping = False

    def say(self, message):
        sys.stdout.write("%s %s\n" % (now(), message))
        sys.stdout.flush()

    def save(self):
        write_json(self.state_path, self.state)

    # -- environment -----------------------------------------------------------------------
    def base_env(self):
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.env_extra.items()})
        env["NEXP"] = str(self.spec["nexp"])
        return env

    def config_env(self, env):
        """The environment after sourcing config_<SYSTEM>.sh, and the names it exported.

        NEXP is exported again after sourcing: AMD's LoRA config resets it to 1.
        """
        script = 'set -a; . "$1" >/dev/null; set +a; export NEXP=%d; env -0' % self.spec["nexp"]
        out = subprocess.run(["bash", "-c", script, "config", self.spec["config_file"]],
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
            ["bash", "-c", 'set -a; . "$1" >/dev/null 2>&1; compgen -e', "config",
             self.spec["config_file"]],
            env={}, capture_output=True, check=False, cwd=self.spec["code_dir"]).stdout.split()
        wanted = {k.decode("utf-8", "replace") for k in exported} | set(self.env_extra)
        names = sorted(k for k in sourced
                       if (k in wanted or sourced.get(k) != os.environ.get(k))
                       and k not in ("PWD", "SHLVL", "_", "OLDPWD"))
        return sourced, names

    # -- container runtime -----------------------------------------------------------------
    def runtime(self):
        return self.spec.get("runtime", "none")

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

    def run_one(self, record, env, names):
        path = os.path.join(self.dir, record["log"])
        if os.path.exists(path):  # a partial log from an interrupted attempt: keep it
            n = 1
            while os.path.exists("%s.interrupted-%d" % (path, n)):
                n += 1
            os.rename(path, "%s.interrupted-%d" % (path, n))
        seed = run_seed(self.spec, record["index"])
        record.update(status="running", seed=seed, started=now(), finished=None, rc=None)
        self.state["current"] = record["index"]
        self.save()
        self.clear_caches()
        run_env = dict(env)
        run_env["SEED"] = str(seed)
        cwd = self.spec["code_dir"]
        self.say("run %d/%d: seed %d" % (record["index"] + 1, self.spec["nexp"], seed))
        with open(path, "wb") as log:
            self.child = subprocess.Popen(self.run_argv(names), cwd=cwd, env=run_env,
                                          stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
            if self.stopping:
                # A stop that came while the run was starting (before self.child was set) found
                # no child to pass the signal on to: pass it on now, or the run goes on.
                self._signal_child()
            rc = self.child.wait()
            self.child = None
        if self.stopping:
            # Stopped on purpose mid-run: the run did not finish, so it stays to be done; its
            # partial log is kept (renamed .interrupted-<n>) when it is started again.
            record.update(status="pending", rc=None, started=None, finished=None)
            self.save()
            self.say("run %d/%d: stopped" % (record["index"] + 1, self.spec["nexp"]))
            return
        record["rc"] = rc
        record["finished"] = now()
        record["status"] = run_outcome(path, rc)
        self.save()
        self.say("run %d/%d: %s (rc %d)" % (record["index"] + 1, self.spec["nexp"],
                                            record["status"], rc))

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

    def main(self):
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        self.state.update(status="running", runner_pid=os.getpid(), finished=None)
        self.state["started"] = self.state.get("started") or now()
        self.save()
        env = self.base_env()
        try:
            env, names = self.config_env(env)
        except subprocess.CalledProcessError as exc:
            self.state.update(status="failed", finished=now(),
                              error="sourcing %s failed: %s" % (
                                  self.spec["config_file"], exc.stderr.decode("utf-8", "replace")[-2000:]))
            self.save()
            return 1
        try:
            if self.runtime() != "none":
                self.start_container()
            for record in self.state["runs"]:
                if self.stopping:
                    break
                if record["status"] not in OPEN_STATES:
                    continue  # finished runs are never started again
                self.run_one(record, env, names)
                if record["status"] != "success" and self.spec.get("stop_on_failure"):
                    break
        except (OSError, subprocess.CalledProcessError, ContainerError) as exc:
            self.state.update(status="failed", finished=now(), error=str(exc))
            self.save()
            return 1
        finally:
            if self.runtime() != "none":
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


def run_outcome(path, rc):
    """success / aborted / ... from the log's run_stop status; crashed when there is none."""
    status = None
    try:
        with open(path, "rb") as handle:
            for raw in handle:
                if RUN_STOP_MARK.encode() not in raw:
                    continue
                line = raw.decode("utf-8", "replace")
                try:
                    record = json.loads(line[line.index(":::MLLOG") + 8:])
                    status = record.get("metadata", {}).get("status") or status
                except ValueError:
                    continue
    except OSError:
        return "crashed"
    if status is None:
        return "crashed"
    if status == "success" and rc != 0:
        return "failed"
    return status


def new_campaign_id(rng=None):
    return time.strftime("%Y%m%dT%H%M%S") + "-%04x" % (rng or random).getrandbits(16)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        sys.exit(Runner(sys.argv[2]).main())
    sys.stderr.write("usage: campaign.py run CAMPAIGN_DIR\n")
    sys.exit(2)
