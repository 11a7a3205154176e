"""Streaming reader for MLPerf ``:::MLLOG`` result logs.

Plain Python, no Ansible imports.  A result log is a text file in which some
lines carry ``:::MLLOG {json}``.  Real logs add a lot around that:

* any prefix before the token (``0: `` rank prefixes, timestamps, logger
  names).  Like mlperf-logging (``re.sub('.*:::MLLOG ', ...)``, greedy), the
  JSON starts after the *last* ``:::MLLOG `` on the line;
* CRLF line endings (the v6.0 AMD logs);
* the same line repeated once per rank;
* arbitrary non-MLLOG noise, which is ignored;
* a corrupt or truncated JSON line (a job killed mid-write).  It never raises:
  it becomes a :class:`ParseProblem` that names the file and the 1-based line
  number, like an editor would show it.

The file is read line by line in binary mode (so a lone ``\\r`` inside a noise
line - progress bars - does not shift line numbers) and decoded as UTF-8 with
replacement characters, so no byte sequence can crash the reader.  Memory is
flat in the size of the log: :func:`iter_events` is a generator and
:func:`summarize_run` keeps only a few scalars per file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from mlperf_repro.node import mllog_line

REQUIRED_FIELDS = ("time_ms", "key", "value", "metadata")
_SNIPPET_CHARS = 160


@dataclass(frozen=True)
class ParseProblem:
    """One MLLOG line that could not be used, with where it is and why."""

    file: str
    line: int
    message: str
    text: str = ""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "message": self.message, "text": self.text}


@dataclass(frozen=True)
class MLLogEvent:
    """One parsed ``:::MLLOG`` record."""

    key: str
    value: Any
    time_ms: float
    metadata: dict[str, Any]
    line: int
    event_type: str = ""

    @property
    def samples_count(self) -> Any:
        return self.metadata.get("samples_count")


def _snippet(text: str) -> str:
    return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "..."


def _decode_payload(payload: str) -> tuple[dict[str, Any] | None, str | None]:
    """JSON text after the token -> (record, None) or (None, what was wrong)."""
    record, error = mllog_line.decode(payload)
    if record is None:
        return None, error
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        return None, (f"MLLOG record lacks required field(s) {', '.join(missing)}; "
                      f"expected all of {', '.join(REQUIRED_FIELDS)}")
    if not isinstance(record["metadata"], dict):
        return None, "MLLOG field 'metadata' must be a JSON object"
    return record, None


def _to_event(record: dict[str, Any], line: int) -> tuple[MLLogEvent | None, str | None]:
    try:
        time_ms = float(record["time_ms"])
    except (TypeError, ValueError):
        return None, f"MLLOG field 'time_ms' must be a number, found {record['time_ms']!r}"
    if not math.isfinite(time_ms) or isinstance(record["time_ms"], bool):
        return None, f"MLLOG field 'time_ms' must be a finite number of milliseconds, found {record['time_ms']!r}"
    if not isinstance(record["key"], str):
        return None, f"MLLOG field 'key' must be a string, found {record['key']!r}"
    event = MLLogEvent(key=record["key"], value=record["value"], time_ms=time_ms,
                       metadata=record["metadata"], line=line,
                       event_type=str(record.get("event_type", "")))
    return event, None


def parse_line(text: str, line: int, source: str) -> MLLogEvent | ParseProblem | None:
    """Parse one text line: an event, a problem, or None for a non-MLLOG line."""
    text = text.rstrip("\r\n")
    payload = mllog_line.payload(text)
    if payload is None:
        return None
    record, error = _decode_payload(payload)
    if record is not None:
        event, error = _to_event(record, line)
        if event is not None:
            return event
    return ParseProblem(file=source, line=line, message=error or "unreadable", text=_snippet(text))


def iter_events_from_lines(lines: Iterable[str | bytes], source: str = "<lines>",
                           problems: list[ParseProblem] | None = None) -> Iterator[MLLogEvent]:
    """Yield events from an iterable of lines; problems are appended to ``problems``.

    Duplicated lines (one per rank) are yielded as they are: this is what
    mlperf-logging's checkers see too.  :func:`summarize_run` is built to be
    indifferent to them.
    """
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        parsed = parse_line(text, number, source)
        if isinstance(parsed, MLLogEvent):
            yield parsed
        elif parsed is not None and problems is not None:
            problems.append(parsed)


def iter_events(path: str | os.PathLike, problems: list[ParseProblem] | None = None) -> Iterator[MLLogEvent]:
    """Stream the events of one log file (never reads the whole file at once)."""
    source = os.fspath(path)
    with open(source, "rb") as handle:
        yield from iter_events_from_lines(handle, source=source, problems=problems)


@dataclass
class RunLog:
    """What scoring needs from one result file, gathered in one streaming pass.

    ``run_start_ms``/``run_stop_ms`` follow mlperf-logging's result summarizer
    (``_query_run_start_stop``): it loops over the lines, overwriting
    ``run_start`` and ``run_stop`` whenever it sees them, and stops as soon as
    both are set.  Effectively that is the **last run_start before the first
    run_stop** (or the first run_start after it, should a run_stop come
    first).  With ranks repeating the same line, that choice makes no
    difference; when a job restarted inside one file, it is the official one.

    ``samples_to_converge`` is what the RCP checker reads: ``samples_count`` of
    the last ``eval_accuracy`` before that run_stop, and only when the run
    stopped with status ``success`` (otherwise the RCP checker counts the run as
    not converged).  ``last_eval_*`` are kept whatever the status.
    """

    file: str
    run_start_ms: float | None = None
    run_stop_ms: float | None = None
    init_start_ms: float | None = None  # the first init_start / init_stop of the file
    init_stop_ms: float | None = None
    run_stop_status: str | None = None
    run_start_count: int = 0
    run_stop_count: int = 0
    benchmark: str | None = None
    division: str | None = None
    organization: str | None = None
    platform: str | None = None
    global_batch_size: Any = None
    target_accuracy: Any = None
    last_eval_accuracy: Any = None
    last_eval_samples: Any = None
    event_count: int = 0
    problems: list[ParseProblem] = field(default_factory=list)

    @property
    def crashed(self) -> bool:
        """No run_stop at all: the job died (or the log was cut) before the end."""
        return self.run_stop_count == 0

    @property
    def converged(self) -> bool:
        return self.run_stop_status == "success"

    @property
    def samples_to_converge(self) -> Any:
        return self.last_eval_samples if self.converged else None


_SUBMISSION_FIELDS = {
    "submission_benchmark": "benchmark",
    "submission_division": "division",
    "submission_org": "organization",
    "submission_platform": "platform",
}


class _RunAccumulator:
    """Folds events into a RunLog; constant memory."""

    def __init__(self, run: RunLog) -> None:
        self.run = run
        self._done = False  # both run_start and run_stop fixed, summarizer-style

    def add(self, event: MLLogEvent) -> None:
        run = self.run
        run.event_count += 1
        key = event.key
        if key in _SUBMISSION_FIELDS:
            setattr(run, _SUBMISSION_FIELDS[key], event.value)
        elif key == "global_batch_size":
            run.global_batch_size = event.value  # last one wins, as in the RCP checker
        elif key == "target_accuracy":
            run.target_accuracy = event.value
        elif key == "init_start":
            if run.init_start_ms is None:
                run.init_start_ms = event.time_ms
        elif key == "init_stop":
            if run.init_stop_ms is None:
                run.init_stop_ms = event.time_ms
        elif key == "run_start":
            self._on_run_start(event)
        elif key == "run_stop":
            self._on_run_stop(event)
        elif key == "eval_accuracy" and run.run_stop_count == 0:
            run.last_eval_accuracy = event.value
            run.last_eval_samples = event.samples_count

    def _on_run_start(self, event: MLLogEvent) -> None:
        self.run.run_start_count += 1
        if not self._done:
            self.run.run_start_ms = event.time_ms
            self._done = self.run.run_stop_ms is not None

    def _on_run_stop(self, event: MLLogEvent) -> None:
        run = self.run
        run.run_stop_count += 1
        if not self._done:
            run.run_stop_ms = event.time_ms
            run.run_stop_status = event.metadata.get("status")
            self._done = run.run_start_ms is not None


def summarize_events(events: Iterable[MLLogEvent], file: str = "<events>") -> RunLog:
    """Fold an event stream into a RunLog (problems are not collected here)."""
    accumulator = _RunAccumulator(RunLog(file=file))
    for event in events:
        accumulator.add(event)
    return accumulator.run


def summarize_run(path: str | os.PathLike) -> RunLog:
    """Read one result file in a single streaming pass."""
    source = os.fspath(path)
    problems: list[ParseProblem] = []
    run = summarize_events(iter_events(source, problems), file=source)
    run.problems = problems
    return run
