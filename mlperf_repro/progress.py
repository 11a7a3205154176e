"""Live progress of a reproduction: per host and stage while provisioning, per node and run
during a campaign.

Plain Python, no Ansible imports. Three layers, each usable alone:

* :class:`LogTail` reads a live, growing MLLOG file incrementally from a byte offset. Only
  complete lines are parsed; a partial last line (a writer in the middle of a line) is kept and
  completed by the next read. A file that shrank or was replaced (the campaign runner renames
  an interrupted run's log to ``result_<k>.txt.interrupted-<n>`` and starts a fresh one) is
  read again from the start.
* :class:`CampaignWatcher` follows one campaign directory (``state.json`` plus the
  ``result_<k>.txt`` logs, see :mod:`mlperf_repro.node.campaign`) and produces a
  :class:`CampaignProgress`: run i of NEXP, the latest ``samples_count``, the latest eval metric
  against the quality target, the observed samples/second and an ETA from the catalog's
  ``typical_samples_to_converge``. Rates come from the logs' own ``time_ms`` stamps, not from
  the clock of the reader, so a log read late or all at once gives the same numbers.
* :class:`Progress` follows ansible-runner events, read by :mod:`mlperf_repro.runner_events`
  (the API reads them so too) and :mod:`mlperf_repro.stages` (per host: stage, task, counts, failures; the
  ``mlperf_campaign`` module's returns) and polls the campaigns it learns of whose directories
  are readable here (``inventory/local``). It is thread-safe: events arrive on the runner's
  thread while a display polls from another.

Rendering: :func:`make_renderer` gives a ``rich`` live display when the stream is a terminal and
``rich`` can be imported (it is optional), otherwise plain lines fit for CI logs.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable, TextIO

from .mllog import MLLogEvent, parse_line
from .node.campaign import OPEN_STATES, log_name, read_json, summarize
from .runner_events import HostCounts, event_action, failure_message, task_outcome
from .stages import stage_of

_CHUNK = 1 << 20
#: A run between its start by the campaign runner and its run_stop.
RUNNING_STATES = ("starting", "initializing", "running")


class LogTail:
    """Incremental reader of one growing MLLOG file."""

    def __init__(self, path: str | os.PathLike, offset: int = 0) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.line = 0           # 1-based number of the last complete line read
        self.resets = 0         # times the file shrank or was replaced
        self._partial = b""
        self._identity: tuple[int, int] | None = None

    def _reset(self) -> None:
        self.offset, self.line, self._partial = 0, 0, b""
        self.resets += 1

    def read(self) -> list[MLLogEvent]:
        """Events of the lines completed since the last call (none when the file is missing)."""
        try:
            handle = open(self.path, "rb")
        except OSError:
            return []
        events: list[MLLogEvent] = []
        with handle:
            stat = os.fstat(handle.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if self._identity is not None and identity != self._identity:
                self._reset()
            elif stat.st_size < self.offset:
                self._reset()
            self._identity = identity
            handle.seek(self.offset)
            while True:
                chunk = handle.read(_CHUNK)
                if not chunk:
                    break
                self.offset += len(chunk)
                lines = (self._partial + chunk).split(b"\n")
                self._partial = lines.pop()
                self._parse(lines, events)
        return events

    def flush(self) -> list[MLLogEvent]:
        """Parse a last line that never got its newline (call once the writer has finished)."""
        events = self.read()
        if self._partial:
            lines, self._partial = [self._partial], b""
            self._parse(lines, events)
        return events

    def _parse(self, lines: Iterable[bytes], events: list[MLLogEvent]) -> None:
        for raw in lines:
            self.line += 1
            parsed = parse_line(raw.decode("utf-8", errors="replace"), self.line, self.path)
            if isinstance(parsed, MLLogEvent):
                events.append(parsed)


@dataclass
class Quality:
    """What a run is measured against (from the catalog; the log's target_accuracy wins)."""

    metric: str = "eval_accuracy"
    target: float | None = None
    direction: str = "lower"
    typical_samples: int | None = None
    eval_every_samples: int | None = None


@dataclass
class RunProgress:
    """One run of a campaign (``index`` is 0-based, as in ``result_<index>.txt``)."""

    index: int
    nexp: int | None = None
    status: str = "pending"
    log: str | None = None
    samples: int | None = None
    metric: float | None = None
    metric_samples: int | None = None
    metric_name: str = "eval_accuracy"
    target: float | None = None
    direction: str = "lower"
    typical_samples: int | None = None
    samples_per_second: float | None = None
    init_s: float | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    started: str | None = None
    finished: str | None = None

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def reached(self) -> bool | None:
        if self.metric is None or self.target is None:
            return None
        return self.metric <= self.target if self.direction == "lower" else self.metric >= self.target

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), number=self.number, reached=self.reached)

    def line(self) -> str:
        head = f"run {self.number}/{self.nexp or '?'} {self.status}"
        parts = []
        if self.samples is not None:
            parts.append(f"samples {self.samples}")
        if self.metric is not None:
            sign = "<=" if self.direction == "lower" else ">="
            target = "" if self.target is None else f" (target {sign} {self.target:g})"
            parts.append(f"{self.metric_name} {self.metric:.4f}{target}")
        if self.samples_per_second:
            parts.append(f"{self.samples_per_second:,.0f} samples/s")
        if self.running and self.eta_s is not None:
            parts.append(f"ETA {format_duration(self.eta_s)}")
        return head + (": " + ", ".join(parts) if parts else "")


class RunTracker:
    """Folds the events of one run's log into a :class:`RunProgress` (constant memory)."""

    def __init__(self, index: int, path: str, quality: Quality, nexp: int | None = None) -> None:
        self.tail = LogTail(path)
        self.quality = quality
        self.progress = RunProgress(index=index, nexp=nexp, log=path, metric_name=quality.metric,
                                    target=quality.target, direction=quality.direction,
                                    typical_samples=quality.typical_samples)
        self._init_start_ms: float | None = None
        self._run_start_ms: float | None = None
        self._samples_ms: float | None = None   # when the latest samples_count was first seen
        self._stopped = False
        self._flushed = False
        self._resets = 0

    def _restart(self) -> None:
        p = self.progress
        p.status, p.samples, p.metric, p.metric_samples = "starting", None, None, None
        p.samples_per_second = p.elapsed_s = p.eta_s = p.init_s = None
        self._init_start_ms = self._run_start_ms = self._samples_ms = None
        self._stopped = False

    def update(self, finished: bool = False) -> RunProgress:
        if finished and not self._flushed:
            events = self.tail.flush()
            self._flushed = True
        elif self._flushed:
            events = []
        else:
            events = self.tail.read()
        if self.tail.resets != self._resets:  # the log was replaced: a fresh attempt of this run
            self._resets = self.tail.resets
            self._restart()
        for event in events:
            self.add(event)
        self._estimate()
        return self.progress

    def add(self, event: MLLogEvent) -> None:
        p = self.progress
        key = event.key
        if key == "init_start":
            self._init_start_ms = event.time_ms
            if not self._stopped:
                p.status = "initializing"
                p.samples = p.metric = p.metric_samples = None
                self._run_start_ms = self._samples_ms = None
        elif key == "run_start":
            self._run_start_ms = event.time_ms
            if self._init_start_ms is not None:
                p.init_s = (event.time_ms - self._init_start_ms) / 1000.0
            if not self._stopped:
                p.status = "running"
        elif key == "target_accuracy":
            try:
                p.target = float(event.value)
            except (TypeError, ValueError):
                pass
        elif key == self.quality.metric and not self._stopped:
            try:
                p.metric = float(event.value)
                p.metric_samples = _int(event.samples_count)
            except (TypeError, ValueError):
                pass
        elif key == "run_stop" and not self._stopped:
            self._stopped = True
            p.status = str(event.metadata.get("status") or "stopped")
        samples = _int(event.samples_count)
        if samples is not None and not (key == "run_stop" and p.samples is not None):
            if p.samples is None or samples > p.samples:
                p.samples = samples
                self._samples_ms = event.time_ms
        if self._run_start_ms is not None:
            p.elapsed_s = max(0.0, (event.time_ms - self._run_start_ms) / 1000.0)

    def _estimate(self) -> None:
        p = self.progress
        if self._run_start_ms is not None and self._samples_ms is not None and p.samples:
            seconds = (self._samples_ms - self._run_start_ms) / 1000.0
            p.samples_per_second = p.samples / seconds if seconds > 0 else None
        if not p.running:
            p.eta_s = 0.0 if self._stopped else None
        elif p.samples_per_second and p.typical_samples and (p.samples or 0) < p.typical_samples:
            p.eta_s = (p.typical_samples - (p.samples or 0)) / p.samples_per_second
        elif p.samples_per_second and self.quality.eval_every_samples:
            # Past the typical count: it may stop at the next evaluation.
            every = int(self.quality.eval_every_samples)
            p.eta_s = (every - (p.samples or 0) % every) / p.samples_per_second
        else:
            p.eta_s = None


@dataclass
class CampaignProgress:
    """Where one node's campaign stands."""

    campaign_dir: str
    host: str | None = None
    campaign_id: str | None = None
    benchmark: str | None = None
    system: str | None = None
    status: str = "unknown"
    nexp: int | None = None
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    runner_alive: bool | None = None
    live: bool = True            # False for a collected copy (no liveness check possible)
    runs: list[RunProgress] = field(default_factory=list)
    eta_s: float | None = None
    error: str | None = None

    @property
    def current(self) -> RunProgress | None:
        running = [r for r in self.runs if r.running]
        return running[-1] if running else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs"] = [r.to_dict() for r in self.runs]
        data["current"] = None if self.current is None else self.current.index
        return data

    def line(self) -> str:
        who = f"{self.host}: " if self.host else ""
        current = self.current
        if current is not None:
            text = f"{who}{current.line()}"
            if self.eta_s is not None:
                text += f"; campaign ETA {format_duration(self.eta_s)}"
            return text
        ok = self.counts.get("success", 0)
        text = f"{who}campaign {self.status}: {self.done}/{self.nexp or '?'} runs finished"
        if self.done:
            text += f" ({ok} success)"
        if self.error:
            text += f": {self.error}"
        return text


class CampaignWatcher:
    """Follows one campaign directory: ``state.json`` and the growing ``result_<k>.txt``."""

    def __init__(self, campaign_dir: str | os.PathLike, host: str | None = None,
                 quality: Quality | None = None, catalog: Any = None) -> None:
        self.campaign_dir = os.fspath(campaign_dir)
        self.host = host
        self._quality = quality
        self._catalog = catalog
        self._trackers: dict[int, RunTracker] = {}

    def quality(self, benchmark: str | None) -> Quality:
        if self._quality is None:
            self._quality = quality_for(benchmark, self._catalog)
        return self._quality

    def _state(self) -> tuple[dict[str, Any], bool]:
        if os.path.exists(os.path.join(self.campaign_dir, "env.json")):
            return summarize(self.campaign_dir), True   # the node's own directory: liveness
        state = read_json(os.path.join(self.campaign_dir, "state.json"))
        if state is None:
            raise ValueError(f"{self.campaign_dir} is not a campaign directory (no state.json)")
        counts: dict[str, int] = {}
        for run in state.get("runs", []):
            counts[run["status"]] = counts.get(run["status"], 0) + 1
        state["counts"] = counts
        state["done"] = sum(n for s, n in counts.items() if s not in OPEN_STATES)
        return state, False

    def poll(self) -> CampaignProgress:
        state, live = self._state()
        spec = read_json(os.path.join(self.campaign_dir, "campaign.json"), {}) or {}
        benchmark = spec.get("benchmark")
        quality = self.quality(benchmark)
        nexp = state.get("nexp") or spec.get("nexp")
        progress = CampaignProgress(
            campaign_dir=self.campaign_dir, host=self.host,
            campaign_id=state.get("campaign_id") or spec.get("campaign_id"), benchmark=benchmark,
            system=spec.get("system"), status=str(state.get("status", "unknown")), nexp=nexp,
            done=int(state.get("done", 0)), counts=dict(state.get("counts", {})),
            runner_alive=state.get("runner_alive") if live else None, live=live,
            error=state.get("error"))
        for record in state.get("runs", []):
            index = int(record["index"])
            path = os.path.join(self.campaign_dir, record.get("log") or log_name(index))
            status = record.get("status", "pending")
            if status == "pending" and index not in self._trackers:
                run = RunProgress(index=index, nexp=nexp, log=path, metric_name=quality.metric,
                                  target=quality.target, direction=quality.direction,
                                  typical_samples=quality.typical_samples)
            else:
                tracker = self._trackers.get(index)
                if tracker is None:
                    tracker = self._trackers[index] = RunTracker(index, path, quality, nexp)
                finished = status not in OPEN_STATES
                run = tracker.update(finished=finished)
                if finished:
                    run.status = status   # the runner's verdict (crashed, failed, ...) wins
                    run.eta_s = 0.0
                elif progress.status == "interrupted":
                    run.status = "interrupted"  # its runner is gone; resuming starts it again
                    run.eta_s = None
                elif status == "running" and run.status == "pending":
                    run.status = "starting"  # started, nothing logged yet
            run.started, run.finished = record.get("started"), record.get("finished")
            progress.runs.append(run)
        progress.eta_s = campaign_eta(progress)
        return progress


def campaign_eta(progress: CampaignProgress) -> float | None:
    """Seconds until the campaign ends: the current run's ETA plus the runs still pending.

    A pending run is estimated by the mean duration of the finished runs (state.json's
    timestamps); before any has finished, by the current run's init time plus the typical
    samples at the current rate.
    """
    if progress.status not in ("running", "pending"):
        return None  # complete, stopped, interrupted, failed: nothing is on its way
    current = progress.current
    pending = sum(1 for r in progress.runs if r.status == "pending")
    if current is None and not pending:
        return None
    durations = [d for d in (_duration(r.started, r.finished) for r in progress.runs
                             if r.status not in OPEN_STATES + RUNNING_STATES)
                 if d is not None]
    per_run = sum(durations) / len(durations) if durations else None
    if per_run is None and current is not None and current.samples_per_second and current.typical_samples:
        per_run = (current.init_s or 0.0) + current.typical_samples / current.samples_per_second
    if current is not None and current.eta_s is None:
        return None
    if pending and per_run is None:
        return None
    return (current.eta_s if current is not None else 0.0) + pending * (per_run or 0.0)


def quality_for(benchmark: str | None, catalog: Any = None) -> Quality:
    """The quality target and typical samples of ``benchmark`` from the catalog."""
    if not benchmark:
        return Quality()
    try:
        if catalog is None:
            from .catalog import load_catalog
            catalog = load_catalog()
        bench = catalog.benchmark(benchmark)
    except ValueError:
        return Quality()
    quality = bench.quality or {}
    target = quality.get("target")
    return Quality(metric=str(quality.get("metric") or "eval_accuracy"),
                   target=None if target is None else float(target),
                   direction=str(quality.get("direction") or "lower"),
                   typical_samples=bench.typical_samples_to_converge,
                   eval_every_samples=(bench.evaluation or {}).get("every_samples"))


# ---------------------------------------------------------------------------------------------
# Per host and stage, from ansible-runner events

@dataclass(kw_only=True)
class HostProgress(HostCounts):
    """A host's stage, task and counts (:class:`~mlperf_repro.runner_events.HostCounts`)."""

    host: str
    stage: str | None = None
    task: str | None = None
    last_failure: str | None = None
    last_stage: str | None = None
    last_task: str | None = None
    campaign_dir: str | None = None
    campaign: CampaignProgress | None = None

    @property
    def in_campaign(self) -> bool:
        return self.campaign is not None and self.stage in ("run", None)

    def where(self) -> str:
        """The task it is at, or where its campaign stands."""
        if self.in_campaign:
            assert self.campaign is not None
            return self.campaign.line().split(": ", 1)[1] if self.campaign.host else self.campaign.line()
        return self.task or ""

    def line(self) -> str:
        if self.in_campaign:
            return f"{self.host}: {self.where()}"
        counts = f"ok {self.ok}, changed {self.changed}, failed {self.failed}"
        stage = self.stage or "starting"
        task = f" - {self.task}" if self.task else ""
        return f"{self.host}: {stage}{task} ({counts})"


@dataclass
class ProgressSnapshot:
    status: str
    stage: str | None
    hosts: dict[str, HostProgress]
    started: float
    updated: float


#: Modules whose returns tell where a campaign stands (campaign_dir, nexp, runs, status).
CAMPAIGN_ACTIONS = ("mlperf_campaign", "mlperf_slurm_job")

class Progress:
    """Live model of a playbook run: fed with ansible-runner events, polls local campaigns."""

    def __init__(self, catalog: Any = None, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._catalog = catalog
        self._clock = clock
        self.status = "starting"
        self.stage: str | None = None
        self.hosts: dict[str, HostProgress] = {}
        self._watchers: dict[str, CampaignWatcher] = {}
        self.started = clock()
        self.updated = self.started

    def _host(self, name: str) -> HostProgress:
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = HostProgress(host=name)
        return host

    def feed(self, event: dict[str, Any]) -> None:
        """One ansible-runner event (``event_handler``); cheap, never raises on odd events."""
        name = event.get("event")
        data = event.get("event_data") or {}
        with self._lock:
            self.updated = self._clock()
            if name == "playbook_on_play_start":
                self.stage = stage_of(data.get("play") or data.get("name"))
                return
            host_name = data.get("host")
            if not host_name:
                return
            host = self._host(host_name)
            if name == "runner_on_start":
                host.stage = stage_of(data.get("play")) or self.stage
                host.task = data.get("task")
                return
            outcome = task_outcome(event)
            if outcome is not None:
                if outcome.outcome == "skipped" and host.task == outcome.task:
                    host.stage, host.task = host.last_stage, host.last_task  # a skip is no news
                else:
                    host.last_stage, host.last_task = host.stage, outcome.task
                host.add(outcome)
                if outcome.failure:
                    host.last_failure = f"{outcome.task}: {failure_message(dict(outcome.res))}"
            res = data.get("res") if isinstance(data.get("res"), dict) else {}
            action = event_action(data)
            if action not in CAMPAIGN_ACTIONS or name not in ("runner_on_ok", "runner_retry"):
                return
            self._campaign_result(host, res, watch=action == "mlperf_campaign")
        self.poll()  # a local campaign's logs are read right away

    def _campaign_result(self, host: HostProgress, res: dict[str, Any], watch: bool) -> None:
        directory = res.get("campaign_dir")
        if not directory:
            return
        host.campaign_dir = directory
        if watch and directory not in self._watchers:
            self._watchers[directory] = CampaignWatcher(directory, host=host.host,
                                                        catalog=self._catalog)
        if host.campaign is None or directory not in self._watchers or not self._readable(directory):
            # A remote node: what the module returned (run i of NEXP, no samples).
            nexp = res.get("nexp") or len(res.get("runs") or []) or None
            runs = [RunProgress(index=int(r.get("index", i)), nexp=nexp,
                                status=str(r.get("status", "pending")), log=r.get("log"),
                                started=r.get("started"), finished=r.get("finished"))
                    for i, r in enumerate(res.get("runs") or [])]
            host.campaign = CampaignProgress(
                campaign_dir=directory, host=host.host, campaign_id=res.get("campaign_id"),
                status=str(res.get("status", "unknown")), nexp=nexp,
                done=int(res.get("done") or res.get("found") or 0), counts=dict(res.get("counts") or {}),
                runner_alive=res.get("runner_alive"), runs=runs, error=res.get("error"))

    @staticmethod
    def _readable(directory: str) -> bool:
        return os.path.isfile(os.path.join(directory, "state.json"))

    def poll(self) -> None:
        """Tail the campaigns whose directories are readable here (local nodes)."""
        with self._lock:
            watchers = [(w, self.hosts.get(w.host or "")) for w in self._watchers.values()]
        for watcher, host in watchers:
            if host is None or not self._readable(watcher.campaign_dir):
                continue
            try:
                campaign = watcher.poll()
            except (OSError, ValueError):
                continue
            with self._lock:
                host.campaign = campaign
                self.updated = self._clock()

    def set_status(self, status: str) -> None:
        with self._lock:
            self.status = status
            self.updated = self._clock()

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            hosts = {name: HostProgress(**{k: getattr(h, k) for k in h.__dataclass_fields__})
                     for name, h in self.hosts.items()}
            return ProgressSnapshot(status=self.status, stage=self.stage, hosts=hosts,
                                    started=self.started, updated=self.updated)


# ---------------------------------------------------------------------------------------------
# Rendering

def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(max(seconds, 0)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class PlainRenderer:
    """Plain lines (CI logs): a host's line is printed when it changes in substance (stage,
    task, run, status) and, while only the numbers move, at most every ``interval`` seconds."""

    def __init__(self, stream: TextIO | None = None, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stdout
        self.interval = interval
        self.clock = clock
        self._last: dict[str, tuple[str, str, float]] = {}

    @staticmethod
    def _key(host: HostProgress) -> str:
        campaign = host.campaign
        if campaign is not None and host.in_campaign:
            current = campaign.current
            return f"run:{campaign.status}:{campaign.done}:{current and (current.index, current.status)}"
        return f"task:{host.stage}:{host.task}:{host.failed}:{host.unreachable}"

    def update(self, snapshot: ProgressSnapshot) -> None:
        now = self.clock()
        for name, host in sorted(snapshot.hosts.items()):
            key, line = self._key(host), host.line()
            last = self._last.get(name)
            if last is not None and (last[1] == line or (last[0] == key and now - last[2] < self.interval)):
                continue
            self._last[name] = (key, line, now)
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class RichRenderer:
    """A live table (one row per host) on a terminal; needs the optional ``rich`` package."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console  # pylint: disable=import-outside-toplevel
        from rich.live import Live  # pylint: disable=import-outside-toplevel

        self._console = Console(file=stream or sys.stdout)
        self._live = Live(console=self._console, auto_refresh=False, transient=False)
        self._live.start()

    def update(self, snapshot: ProgressSnapshot) -> None:
        from rich.table import Table  # pylint: disable=import-outside-toplevel

        table = Table(title=f"mlperf-repro: {snapshot.status}"
                            f" ({format_duration(snapshot.updated - snapshot.started)})",
                      expand=True)
        for column in ("host", "stage", "where", "ok", "changed", "failed"):
            table.add_column(column)
        for name, host in sorted(snapshot.hosts.items()):
            table.add_row(name, host.stage or "", host.where(), str(host.ok), str(host.changed),
                          str(host.failed + host.unreachable))
        self._live.update(table, refresh=True)

    def close(self) -> None:
        self._live.stop()


def make_renderer(stream: TextIO | None = None, plain: bool = False, interval: float = 30.0):
    """A rich display on a terminal when rich is importable, else plain lines."""
    stream = stream or sys.stdout
    if not plain and getattr(stream, "isatty", lambda: False)():
        try:
            return RichRenderer(stream)
        except ImportError:
            pass
    return PlainRenderer(stream, interval=interval)


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def _duration(started: str | None, finished: str | None) -> float | None:
    if not started or not finished:
        return None
    fmt = "%Y-%m-%dT%H:%M:%S%z"
    try:
        return (datetime.strptime(finished, fmt) - datetime.strptime(started, fmt)).total_seconds()
    except (TypeError, ValueError):
        return None
