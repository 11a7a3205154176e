"""The Python API: run the reproduction (or a dry run of it) through ansible-runner.

ansible-runner is driven the way AWX drives it: ``run_async`` with an ``event_handler`` (progress
and the result are folded from the events), a ``status_handler`` (state), a ``cancel_callback``
(stopping) and the artifacts of every run kept in a private data directory of its own::

    from mlperf_repro import api
    result = api.run("inventory/mi355x", benchmark="llama31_8b", skip_tags="provision")
    result.status, result.recap, result.failed_tasks, result.campaign_dir, result.score

    handle = api.start("inventory/local", extravars={"mlperf_nexp": 3})   # from a notebook
    handle.progress.snapshot(); handle.cancel(); result = handle.wait()

    plan = api.plan("inventory/mi355x")        # --check --diff: changes nothing
    plan.diffs, plan.commands                  # rendered files' diffs, each node's commands

No global state and no reliance on the current directory: the project (site.yml, roles,
ansible.cfg) is the checkout this package was installed from; a relative inventory path is
taken relative to it; each run gets a fresh private data directory (default
``$XDG_STATE_HOME/mlperf-repro/runs/<ident>``) holding its ``env/`` files (extravars) and
``artifacts/<ident>/`` (stdout, job_events, status, rc, command): directories 0700, files 0600
whatever the umask, and only the last ``keep_artifacts`` runs are kept (default
:data:`DEFAULT_KEEP_ARTIFACTS`, or ``$MLPERF_REPRO_KEEP_ARTIFACTS``; 0 keeps every run).
Cancelling stops ansible-playbook; a campaign already started keeps running detached on its nodes
(``--tags run`` re-attaches to it later).

Secrets never reach those artifacts. ansible-runner writes the environment it starts
ansible-playbook with into ``command`` and ``env/envvars``, and the extra variables into
``env/extravars``; so every variable that is a secret (:func:`is_secret_name`: HF_TOKEN,
CF_ACCESS_CLIENT_SECRET, whatever the catalog's ``dataset.secrets`` lists, and any name with
TOKEN, SECRET, PASSWORD, ... in it), from this process's environment, ``envvars`` or
``extravars``, is left out of what the runner sees and handed to the playbook's process through a
FIFO instead (:mod:`mlperf_repro.secret_exec`). The playbook gets the same environment and
variables as before. A vault password is given as a file (``vault_password_file``), never as a
value.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import secrets
import shlex
import shutil
import stat
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .progress import CAMPAIGN_ACTIONS, CampaignProgress, CampaignWatcher, Progress
from .runner_events import HostCounts, event_action, recap_from_stats, task_outcome
from .stages import stage_of
from .secret_exec import FIFO_VARIABLE

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = "inventory/local"
#: Runs whose artifacts are kept under the private data directory (this one included).
DEFAULT_KEEP_ARTIFACTS = 20
KEEP_ARTIFACTS_VARIABLE = "MLPERF_REPRO_KEEP_ARTIFACTS"
#: Secrets by name, besides the catalog's ``dataset.secrets`` and :data:`_SECRET_WORDS`.
SECRET_NAMES = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "CF_ACCESS_CLIENT_ID",
                          "CF_ACCESS_CLIENT_SECRET", "ANSIBLE_VAULT_PASSWORD"})
#: A variable whose name holds one of these words is treated as a secret (environment and -e).
_SECRET_WORDS = re.compile(r"TOKEN|SECRET|PASSW|PASSPHRASE|CREDENTIAL|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY"
                           r"|AUTH_?KEY|COOKIE", re.IGNORECASE)
#: Environment variables that carry secret extra variables to the playbook's process.
SECRET_EXTRAVAR_PREFIX = "MLPERF_REPRO_SECRET_EXTRAVAR_"
_IDENT = re.compile(r"\d{8}T\d{6}-[0-9a-f]{6}")

#: ansible-runner's final states.
FINAL_STATES = ("successful", "failed", "canceled", "timeout")
#: A host's counts in a run's recap (ansible-playbook's own, else added up from the events).
HostRecap = HostCounts


@dataclass
class FailedTask:
    host: str
    task: str
    message: str
    play: str | None = None
    role: str | None = None
    action: str | None = None
    unreachable: bool = False

    def __str__(self) -> str:
        return f"{self.host}: {self.task}: {self.message}"


@dataclass
class FileDiff:
    """A file a task would change (check mode + diff), as a unified diff."""

    host: str
    task: str
    path: str | None
    diff: str


@dataclass
class PlannedChange:
    host: str
    task: str
    action: str


@dataclass
class RunResult:
    """What a playbook run did (see :func:`run`)."""

    status: str                      # successful, failed, canceled, timeout
    rc: int | None
    ident: str
    artifact_dir: str
    private_data_dir: str
    recap: dict[str, HostRecap] = field(default_factory=dict)
    failed_tasks: list[FailedTask] = field(default_factory=list)
    campaigns: dict[str, str] = field(default_factory=dict)     # host -> campaign dir on the node
    result_sets: dict[str, str] = field(default_factory=dict)   # host -> collected set (controller)
    scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # set dir -> score.json
    stages: list[str] = field(default_factory=list)             # stages run on a host, in order
    events: int = 0

    @property
    def ok(self) -> bool:
        return self.status == "successful"

    @property
    def campaign_dir(self) -> str | None:
        """The controller's campaign directory (results/<benchmark>/<system>/<campaign>) when
        the collect stage ran, else the node's campaign directory when there is one node."""
        parents = {str(Path(p).parent) for p in self.result_sets.values()}
        if len(parents) == 1:
            return parents.pop()
        if len(set(self.campaigns.values())) == 1:
            return next(iter(self.campaigns.values()))
        return None

    @property
    def score(self) -> dict[str, Any] | None:
        """The score of the single scored set (None when none or several were scored)."""
        return next(iter(self.scores.values())) if len(self.scores) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, campaign_dir=self.campaign_dir)
        return data

    def summary(self) -> str:
        hosts = ", ".join(f"{h} ok={r.ok} changed={r.changed} failed={r.failed} "
                          f"unreachable={r.unreachable}" for h, r in sorted(self.recap.items()))
        return f"{self.status} (rc {self.rc}): {hosts or 'no host ran a task'}"


@dataclass
class PlanResult(RunResult):
    """A dry run (``--check --diff``): what would change, and the commands each node would run."""

    diffs: list[FileDiff] = field(default_factory=list)
    changes: list[PlannedChange] = field(default_factory=list)
    commands: dict[str, list[str]] = field(default_factory=dict)   # host -> shell lines


class _Collector:
    """Folds ansible-runner events into a RunResult (called on the runner's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, HostRecap] = {}
        self.stats: dict[str, HostRecap] | None = None
        self.failed: list[FailedTask] = []
        self.campaigns: dict[str, str] = {}
        self.result_sets: dict[str, str] = {}
        self.score_files: dict[str, str] = {}
        self.score_data: dict[str, dict[str, Any]] = {}
        self.stages: list[str] = []
        self._entered: str | None = None  # the stage the current play entered first
        self.diffs: list[FileDiff] = []
        self.changes: list[PlannedChange] = []
        self.commands: dict[str, list[str]] = {}
        self.events = 0

    def feed(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        data = event.get("event_data") or {}
        with self.lock:
            self.events += 1
            if name == "playbook_on_play_start":
                stage = stage_of(data.get("play") or data.get("name"))
                self._entered = None
                if stage and stage not in self.stages:
                    self.stages.append(stage)
                    self._entered = stage
            elif name == "playbook_on_no_hosts_matched" and self._entered:
                # a stage --tags left out (or an opt-in one not asked for) was not entered
                self.stages.remove(self._entered)
                self._entered = None
            elif name == "playbook_on_stats":
                self.stats = recap_from_stats(data)
            elif name in ("runner_item_on_ok", "runner_item_on_failed") or task_outcome(event):
                self._outcome(event)


    def _outcome(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        data = event.get("event_data") or {}
        host = str(data.get("host") or "")
        task = str(data.get("task") or "")
        res = data.get("res") if isinstance(data.get("res"), dict) else {}
        action = event_action(dict(data))
        outcome = task_outcome(event)
        if outcome is not None:
            self.counts.setdefault(host, HostRecap()).add(outcome)
            if outcome.changed:
                self.changes.append(PlannedChange(host=host, task=task, action=action))
            if outcome.failure:
                self.failed.append(FailedTask(
                    host=host, task=task, message=outcome.message, play=outcome.play,
                    role=outcome.role, action=action, unreachable=outcome.outcome == "unreachable"))
        if name in ("runner_on_ok", "runner_item_on_ok"):
            self._diffs(host, task, res)
            if action in CAMPAIGN_ACTIONS and res.get("campaign_dir"):
                self.campaigns[host] = res["campaign_dir"]
                if res.get("commands"):
                    self.commands[host] = list(res["commands"])
            facts = res.get("ansible_facts") or {}
            if facts.get("mlperf_result_set"):
                self.result_sets[host] = str(facts["mlperf_result_set"])
            if action == "mlperf_score" and name == "runner_item_on_ok":
                target = str(res.get("item") or (res.get("score") or {}).get("directory") or "")
                if target:
                    if res.get("output"):
                        self.score_files[target] = str(res["output"])
                    if isinstance(res.get("score"), dict):
                        self.score_data[target] = res["score"]

    def _diffs(self, host: str, task: str, res: Mapping[str, Any]) -> None:
        diff = res.get("diff")
        if not diff or not res.get("changed"):
            return
        args = (res.get("invocation") or {}).get("module_args") or {}
        path = res.get("dest") or res.get("path") or args.get("dest") or args.get("path")
        for item in diff if isinstance(diff, list) else [diff]:
            # A module writing several files (mlperf_files) names each one in its diff's header.
            item_path = path or (item.get("after_header") if isinstance(item, Mapping) else None)
            text = _unified(item, item_path)
            if text:
                self.diffs.append(FileDiff(host=host, task=task, path=item_path, diff=text))

    def result(self, cls: type, **fields: Any) -> RunResult:
        with self.lock:
            recap = self.stats if self.stats is not None else self.counts
            scores = {}
            for target in sorted(set(self.score_files) | set(self.score_data)):
                scores[target] = _read_score(self.score_files.get(target)) or self.score_data.get(target)
            extra = {}
            if cls is PlanResult:
                extra = dict(diffs=list(self.diffs), changes=list(self.changes),
                             commands=dict(self.commands))
            return cls(recap=dict(recap), failed_tasks=list(self.failed),
                       campaigns=dict(self.campaigns), result_sets=dict(self.result_sets),
                       scores=scores, stages=list(self.stages), events=self.events,
                       **fields, **extra)


def _unified(item: Any, path: str | None = None) -> str:
    if not isinstance(item, Mapping):
        return ""
    if item.get("prepared"):
        return str(item["prepared"])
    before, after = item.get("before"), item.get("after")
    if before is None and after is None:
        return ""

    def text(value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=4, sort_keys=True) + "\n"

    lines = difflib.unified_diff(text(before or "").splitlines(True), text(after or "").splitlines(True),
                                 fromfile=str(item.get("before_header") or path or "before"),
                                 tofile=str(path or item.get("after_header") or "after"))
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _read_score(path: str | None) -> dict[str, Any] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def default_private_data_dir() -> Path:
    """``$XDG_STATE_HOME/mlperf-repro/runs`` (``~/.local/state/...``): one subdirectory per run."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "mlperf-repro" / "runs"


def project_dir() -> Path:
    """The checkout holding site.yml, roles/ and ansible.cfg (beside this package)."""
    if not (PROJECT_DIR / "site.yml").is_file():
        raise ValueError(f"the playbooks are not beside the mlperf_repro package (no {PROJECT_DIR}/site.yml): "
                         "install the project from its checkout (pip install -e .)")
    return PROJECT_DIR


def resolve_inventory(inventory: str | os.PathLike | Mapping[str, Any] | None, project: Path) -> Any:
    """An absolute inventory path (relative ones are taken relative to the project), or a dict."""
    if inventory is None:
        inventory = DEFAULT_INVENTORY
    if isinstance(inventory, Mapping):
        return dict(inventory)
    if isinstance(inventory, (list, tuple)):
        return [resolve_inventory(item, project) for item in inventory]
    path = Path(os.path.expanduser(os.fspath(inventory)))
    if not path.is_absolute():
        path = project / path
    if not path.exists():
        raise ValueError(f"inventory {inventory} does not exist (looked for {path}; a relative "
                         f"inventory is taken relative to the project {project})")
    return str(path)


def _tags(value: str | Sequence[str] | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value or None
    return ",".join(value) or None


def _cancel_check(cancel: Any) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise ValueError(f"cancel must be a callable or a threading.Event, got {type(cancel).__name__}")


def _new_ident() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


# -- secrets, private artifacts, retention ----------------------------------------------------

@functools.lru_cache(maxsize=1)
def catalog_secret_names() -> frozenset[str]:
    """Every ``dataset.secrets`` name of the packaged catalog (empty when it cannot be read)."""
    from .catalog import CatalogError, load_catalog  # pylint: disable=import-outside-toplevel

    try:
        catalog = load_catalog()
    except (CatalogError, OSError):
        return frozenset()
    return frozenset(str(name) for bench in catalog.benchmarks.values()
                     for name in (bench.dataset or {}).get("secrets") or [])


def is_secret_name(name: str) -> bool:
    """True for a variable that must never be written into a run's artifacts."""
    name = str(name)
    return (name.upper() in SECRET_NAMES or name in catalog_secret_names()
            or bool(_SECRET_WORDS.search(name)))


def holds_secret(name: str, value: Any) -> bool:
    """A variable that is a secret by name, or a structure with a secret-named key in it
    (``campaign_extra_env: {API_TOKEN: ...}``)."""
    if is_secret_name(name):
        return True
    if isinstance(value, Mapping):
        return any(holds_secret(str(k), v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(holds_secret("", v) for v in value)
    return False


def split_secrets(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values that hold no secret, values that do), by :func:`holds_secret`."""
    plain: dict[str, Any] = {}
    hidden: dict[str, Any] = {}
    for key, value in values.items():
        (hidden if holds_secret(key, value) else plain)[key] = value
    return plain, hidden


class _SecretPipe:
    """Hands secrets to the playbook's process (mlperf_repro.secret_exec) through a FIFO.

    The FIFO sits in the run's 0700 directory, mode 0600; a thread writes one JSON object when the
    wrapper opens it, then removes it. Nothing of the payload touches the disk.
    """

    def __init__(self, directory: str, env: Mapping[str, str]) -> None:
        self.path = os.path.join(directory, ".secrets.fifo")
        os.mkfifo(self.path, 0o600)
        os.chmod(self.path, 0o600)
        self._payload = json.dumps(dict(env)).encode("utf-8")
        self._thread = threading.Thread(target=self._serve, name="mlperf-repro-secrets", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY)  # blocks until the wrapper (or close()) opens it
            try:
                view = memoryview(self._payload)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
        except OSError:
            pass  # nobody read it (the playbook never started): nothing was handed over
        finally:
            self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Release a writer still waiting for a reader (the playbook never started); idempotent."""
        if self._thread.is_alive():
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                fd = None
            self._thread.join(0.5)
            if fd is not None:
                os.close(fd)  # what the writer put in the pipe is discarded with it
            self._thread.join(5)
        self._unlink()


def make_private_dir(path: str | os.PathLike, tighten: bool = True) -> None:
    """Create ``path`` (and missing parents) as 0700, whatever the umask; an existing ``path`` is
    made 0700 too unless ``tighten`` is False (a directory the user named, /tmp say)."""
    path = Path(path)
    missing = []
    for parent in [path, *path.parents]:
        if parent.exists():
            break
        missing.append(parent)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)
    if tighten or path in missing:
        os.chmod(path, 0o700)


def make_private_tree(path: str | os.PathLike) -> None:
    """Directories 0700 and files 0600 under ``path`` (ansible-runner leaves some to the umask)."""
    for root, dirs, files in os.walk(path):
        for name in dirs:
            _chmod(os.path.join(root, name), 0o700)
        for name in files:
            _chmod(os.path.join(root, name), 0o600)
    _chmod(os.fspath(path), 0o700)


def _chmod(path: str, mode: int) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISREG(st.st_mode) and st.st_mode & stat.S_IXUSR:
            mode |= stat.S_IXUSR
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def keep_artifacts_setting(value: int | None = None) -> int:
    """How many runs' artifacts to keep: ``value``, else $MLPERF_REPRO_KEEP_ARTIFACTS, else the default."""
    where = "keep_artifacts"
    if value is None:
        raw = os.environ.get(KEEP_ARTIFACTS_VARIABLE)
        if raw is None or raw.strip() == "":
            return DEFAULT_KEEP_ARTIFACTS
        where = f"${KEEP_ARTIFACTS_VARIABLE}"
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{where} is {raw!r}: expected a whole number of runs (0 keeps every run)") from None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where} is {value!r}: expected a whole number of runs >= 0 (0 keeps every run)")
    return value


def prune_artifacts(base: str | os.PathLike, keep: int) -> list[str]:
    """Remove all but the ``keep`` newest run directories under ``base``; returns the removed ones.

    Only directories named like a run (``YYYYmmddTHHMMSS-xxxxxx``, what this module creates) are
    ever touched; ``keep`` 0 keeps everything.
    """
    if keep <= 0 or not os.path.isdir(base):
        return []
    runs = sorted((entry.name for entry in os.scandir(base)
                   if entry.is_dir(follow_symlinks=False) and _IDENT.fullmatch(entry.name)), reverse=True)
    removed = []
    for name in runs[keep:]:
        shutil.rmtree(os.path.join(base, name), ignore_errors=True)
        removed.append(os.path.join(os.fspath(base), name))
    return removed


class PlaybookHandle:
    """A playbook run in progress (see :func:`start`): ``wait()`` returns its result."""

    def __init__(self, *, inventory: Any = None, benchmark: str | None = None,
                 tags: str | Sequence[str] | None = None, skip_tags: str | Sequence[str] | None = None,
                 limit: str | None = None, extravars: Mapping[str, Any] | None = None,
                 on_event: Callable[[dict[str, Any]], Any] | None = None,
                 on_status: Callable[[str], Any] | None = None, cancel: Any = None,
                 private_data_dir: str | os.PathLike | None = None, playbook: str = "site.yml",
                 check: bool = False, diff: bool = False, verbosity: int = 0,
                 envvars: Mapping[str, str] | None = None, keep_artifacts: int | None = None,
                 vault_password_file: str | os.PathLike | None = None) -> None:
        from ansible_runner.exceptions import ConfigurationError  # pylint: disable=import-outside-toplevel
        from ansible_runner.interface import init_runner  # pylint: disable=import-outside-toplevel

        project = project_dir()
        if not (project / playbook).is_file():
            raise ValueError(f"playbook {playbook} does not exist in {project}")
        extravars = dict(extravars or {})
        if benchmark:
            extravars["mlperf_benchmark"] = benchmark
        resolved_inventory = resolve_inventory(inventory, project)  # before anything is created
        user_cancel = _cancel_check(cancel)
        keep = keep_artifacts_setting(keep_artifacts)
        vault_file = None
        if vault_password_file:
            vault_file = Path(os.path.expanduser(os.fspath(vault_password_file))).resolve()
            if not vault_file.is_file():
                raise ValueError(f"vault_password_file {vault_password_file} is not a file")
        base = Path(private_data_dir) if private_data_dir else default_private_data_dir()
        self.ident = _new_ident()
        self.private_data_dir = str(base / self.ident)
        make_private_dir(base, tighten=not private_data_dir)  # each run's own directory is 0700
        os.mkdir(self.private_data_dir, 0o700)
        self.pruned = prune_artifacts(base, keep)
        self.check = check
        self.progress = Progress()
        self.status = "unstarted"
        self.callback_errors: list[str] = []
        self._collector = _Collector()
        self._on_event = on_event
        self._on_status = on_status
        self._user_cancel = user_cancel
        self._canceled = threading.Event()
        self._result: RunResult | None = None
        self._result_lock = threading.Lock()
        bin_dir = os.path.dirname(sys.executable)
        env = {
            "ANSIBLE_CONFIG": str(project / "ansible.cfg"),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", os.defpath),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env.update(envvars or {})
        env, secret_env = split_secrets(env)
        extravars, secret_extravars = split_secrets(extravars)
        # This process's secrets too: ansible-runner copies os.environ into its `command` artifact.
        secret_env = {**{k: v for k, v in os.environ.items() if is_secret_name(k)}, **secret_env}
        # A secret extra variable reaches the playbook as an environment variable; the runner's
        # env/extravars holds only a lookup of it (a lookup's value is data, never templated).
        for index, (name, value) in enumerate(sorted(secret_extravars.items())):
            variable = f"{SECRET_EXTRAVAR_PREFIX}{index}"
            secret_env[variable] = json.dumps(value)
            extravars[name] = f"{{{{ lookup('ansible.builtin.env', '{variable}') | from_json }}}}"
        flags = [flag for flag, on in (("--check", check), ("--diff", diff)) if on]
        if vault_file is not None:
            flags += ["--vault-password-file", str(vault_file)]
        cmdline = " ".join(shlex.quote(flag) for flag in flags)
        kwargs: dict[str, Any] = dict(
            private_data_dir=self.private_data_dir, project_dir=str(project), playbook=playbook,
            inventory=resolved_inventory, ident=self.ident,
            extravars=extravars, envvars=env, limit=limit or None, tags=_tags(tags),
            skip_tags=_tags(skip_tags), verbosity=verbosity or None, quiet=True,
            settings={"pexpect_timeout": 1},
            event_handler=self._event, status_handler=self._status,
            cancel_callback=self._cancel_callback)
        if cmdline:
            kwargs["cmdline"] = cmdline
        try:
            self._runner = init_runner(**kwargs)
        except ConfigurationError as exc:
            raise ValueError(f"ansible-runner could not start the playbook: {exc}") from None
        config = self._runner.config
        self.artifact_dir = config.artifact_dir
        # What the runner records (`command`, status events) holds no secret; the playbook's
        # process gets them from the wrapper, which reads them from a FIFO (never from a file).
        for name in [k for k in config.env if is_secret_name(k)]:
            del config.env[name]
        self._secrets: _SecretPipe | None = None
        if secret_env:
            self._secrets = _SecretPipe(self.private_data_dir, secret_env)
            config.env[FIFO_VARIABLE] = self._secrets.path
            config.command = [sys.executable, str(Path(__file__).with_name("secret_exec.py")),
                              *config.command]
        # ansible-runner opens `stderr` (and the fact cache's files) with the process umask.
        make_private_dir(self.artifact_dir)
        if getattr(config, "fact_cache", None) and config.fact_cache_type == "jsonfile":
            make_private_dir(config.fact_cache)  # as validate wants it: a run changes nothing there
        stderr = os.path.join(self.artifact_dir, "stderr")
        os.close(os.open(stderr, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(stderr, 0o600)
        make_private_tree(self.private_data_dir)
        self._thread = threading.Thread(target=self._runner.run, name=f"mlperf-repro-{self.ident}")
        self._thread.start()

    # -- callbacks (the runner's thread) ------------------------------------------------------
    def _event(self, event: dict[str, Any]) -> bool:
        self._collector.feed(event)
        try:
            self.progress.feed(event)
        except Exception as exc:  # noqa: BLE001 - a display problem must not stop the run
            self.callback_errors.append(f"progress: {exc!r}")
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception as exc:  # noqa: BLE001 - the user's callback must not stop the run
                self.callback_errors.append(f"on_event: {exc!r}")
        return True

    def _status(self, data: Mapping[str, Any], runner_config: Any = None) -> None:
        self.status = str(data.get("status"))
        self.progress.set_status(self.status)
        if self._on_status is not None:
            try:
                self._on_status(self.status)
            except Exception as exc:  # noqa: BLE001
                self.callback_errors.append(f"on_status: {exc!r}")

    def _cancel_callback(self) -> bool:
        # Sticky: ansible-runner asks again after it has started killing the playbook.
        if not self._canceled.is_set():
            try:
                if self._user_cancel():
                    self._canceled.set()
            except Exception as exc:  # noqa: BLE001 - a broken cancel check cancels nothing
                self.callback_errors.append(f"cancel: {exc!r}")
        return self._canceled.is_set()

    # -- control ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Stop ansible-playbook (within about a second). Detached campaigns keep running."""
        self._canceled.set()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The result once the run has ended (None if ``timeout`` seconds pass first)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        with self._result_lock:
            if self._result is None:
                self.progress.poll()
                status = self._runner.status
                if status not in FINAL_STATES:  # the runner's thread died (see callback_errors)
                    status = "canceled" if self._canceled.is_set() else "error"
                if self._secrets is not None:
                    self._secrets.close()
                make_private_tree(self.private_data_dir)
                self._result = self._collector.result(
                    PlanResult if self.check else RunResult, status=status, rc=self._runner.rc,
                    ident=self.ident, artifact_dir=self.artifact_dir,
                    private_data_dir=self.private_data_dir)
            return self._result


def start(inventory: Any = None, benchmark: str | None = None, tags: str | Sequence[str] | None = None,
          skip_tags: str | Sequence[str] | None = None, limit: str | None = None,
          extravars: Mapping[str, Any] | None = None,
          on_event: Callable[[dict[str, Any]], Any] | None = None, cancel: Any = None,
          private_data_dir: str | os.PathLike | None = None, playbook: str = "site.yml",
          **options: Any) -> PlaybookHandle:
    """Start the playbook in the background; returns a :class:`PlaybookHandle` (``wait()``, ``cancel()``,
    ``progress``). Options: ``on_status``, ``verbosity``, ``envvars``, ``check``, ``diff``,
    ``keep_artifacts`` (runs kept under the private data dir, 0: all), ``vault_password_file``."""
    return PlaybookHandle(inventory=inventory, benchmark=benchmark, tags=tags, skip_tags=skip_tags,
               limit=limit, extravars=extravars, on_event=on_event, cancel=cancel,
               private_data_dir=private_data_dir, playbook=playbook, **options)


def run(inventory: Any = None, benchmark: str | None = None, tags: str | Sequence[str] | None = None,
        skip_tags: str | Sequence[str] | None = None, limit: str | None = None,
        extravars: Mapping[str, Any] | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None, cancel: Any = None,
        private_data_dir: str | os.PathLike | None = None, playbook: str = "site.yml",
        **options: Any) -> RunResult:
    """Run the playbook (default: site.yml, the whole chain) and return its :class:`RunResult`.

    ``inventory``: a path (relative ones are taken relative to the project; default
    ``inventory/local``) or an inventory dict. ``benchmark`` sets ``mlperf_benchmark``.
    ``on_event`` gets every ansible-runner event (dict) on the runner's thread. ``cancel``: a
    callable returning True, or a ``threading.Event``, checked about every second.
    """
    result = start(inventory, benchmark, tags, skip_tags, limit, extravars, on_event, cancel,
                   private_data_dir, playbook, **options).wait()
    assert result is not None
    return result


def plan(inventory: Any = None, benchmark: str | None = None, tags: str | Sequence[str] | None = None,
         skip_tags: str | Sequence[str] | None = None, limit: str | None = None,
         extravars: Mapping[str, Any] | None = None,
         on_event: Callable[[dict[str, Any]], Any] | None = None, cancel: Any = None,
         private_data_dir: str | os.PathLike | None = None, playbook: str = "site.yml",
         **options: Any) -> PlanResult:
    """A dry run (``--check --diff``): the files that would change with their diffs, the tasks
    that would change something, and the commands each node's campaign would run. Nothing on
    the hosts changes (only this run's artifacts are written, under the private data dir)."""
    options.update(check=True, diff=True)
    result = run(inventory, benchmark, tags, skip_tags, limit, extravars, on_event, cancel,
                 private_data_dir, playbook, **options)
    assert isinstance(result, PlanResult)
    return result


def status(campaign_dir: str | os.PathLike) -> list[CampaignProgress]:
    """Where a campaign stands, from its state.json and its growing result logs.

    ``campaign_dir`` is a node's campaign directory (its LOGDIR) or a collected campaign on the
    controller (``results/<benchmark>/<system>/<campaign>``, one subdirectory per node).
    """
    path = Path(campaign_dir)
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory")
    if (path / "state.json").is_file():
        return [CampaignWatcher(path).poll()]
    nodes = sorted(p for p in path.iterdir() if (p / "state.json").is_file())
    if not nodes:
        raise ValueError(f"{path} is not a campaign directory: no state.json in it or in its "
                         "subdirectories")
    return [CampaignWatcher(p, host=p.name).poll() for p in nodes]


def score(directory: str | os.PathLike, **options: Any) -> Any:
    """Score a set directory as MLCommons does (see :func:`mlperf_repro.scoring.score_directory`)."""
    from .scoring import score_directory  # pylint: disable=import-outside-toplevel

    return score_directory(directory, **options)
