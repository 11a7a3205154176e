"""Score MLPerf Training result logs exactly as MLCommons does (mlperf-logging 4.1.68).

Plain Python, no Ansible imports.

What comes from mlperf-logging, called in-process as a library:

* compliance of each run: ``mlp_compliance.make_checker`` + ``mlp_compliance.main``
  with ``training_<ruleset>/common.yaml`` (which chains into ``closed_common``
  and ``closed_<benchmark>``), the ruleset always passed explicitly;
* the RCP check and normalization factor: ``rcp_checker.check_directory`` run on
  a temporary directory of links to the logs, so the package's ``scaling.json``
  lands there and never in the user's result directory (nor, through its
  ``_reset_results_scaling('')`` bug, at ``/scaling.json``);
* result-file counts (``benchmark_meta``) and the list of benchmarks.

What is reimplemented (it is small, and the package's summarizer needs
``systems/*.json``, writes ``summary.json`` into the cwd and applies the RCP
factor only on a second run): time to train, the olympic mean with the
"non-compliant runs are dropped first" rule, and ``score = olympic x factor``.

Nothing here writes a file anywhere except inside a private temporary
directory that is removed afterwards.  The compliance checker keeps its queue
of rule files in a module-level list, so do not score from several threads at
once (separate processes, as Ansible forks, are fine).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from mlperf_logging.benchmark_meta import get_allowed_benchmarks, get_result_file_counts
from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

from .catalog import default_ruleset, quality_target as catalog_quality_target
from .node.campaign import log_name
from .mllog import ParseProblem, RunLog, summarize_run


# mlperf-logging strips rank prefixes with re.sub(".*:::MLLOG ", ":::MLLOG ", line): quadratic
# in the line length, and most of the time spent scoring a large set. On one line it equals
# keeping what follows the last token, so the package's parser and RCP checker get an `re`
# whose `sub` does exactly that for this one pattern and defers to re.sub for everything else.
# Results are identical (tests/unit/test_scoring.py checks the published scores; bench/ the time).
_MLLOG_TOKEN = ":::MLLOG "


class _PackageRe:
    """The ``re`` module, with a linear ``sub`` for mlperf-logging's prefix strip."""

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    @staticmethod
    def sub(pattern: Any, repl: Any, string: Any, *args: Any, **kwargs: Any) -> Any:
        if (pattern == ".*" + _MLLOG_TOKEN and repl == _MLLOG_TOKEN and not args and not kwargs
                and isinstance(string, str) and "\n" not in string.rstrip("\n")):
            _, token, tail = string.rpartition(_MLLOG_TOKEN)
            return _MLLOG_TOKEN + tail if token else string
        return re.sub(pattern, repl, string, *args, **kwargs)


def _speed_up_package_parsing(modules: Iterable[Any]) -> None:
    for module in modules:
        if getattr(module, "re", None) is re:
            module.re = _PackageRe()


def _parser_modules() -> list[Any]:
    import importlib
    import pkgutil

    return [importlib.import_module(f"{mlp_parser.__name__}.{info.name}")
            for info in pkgutil.iter_modules(mlp_parser.__path__)]


_speed_up_package_parsing(_parser_modules())


@functools.lru_cache(maxsize=None)
def _rcp_checker() -> Any:
    """mlperf-logging's RCP checker, imported on first use.

    It imports scipy.stats (most of the start-up time of ``mlperf-repro score``), so a set whose
    RCP check runs in a forked process (see :func:`_start_rcp`) never pays for it here.
    """
    from mlperf_logging.rcp_checker import rcp_checker

    _speed_up_package_parsing([rcp_checker])
    return rcp_checker


USAGE = "training"
#: The catalog's ruleset (catalog.yml ``ruleset``): the default of every scoring function.
DEFAULT_RULESET = default_ruleset()

# Files the package's own CLIs write into the cwd; never mistake them for runs.
_TOOL_LOGS = frozenset({"compliance_checker.log", "rcp_checker.log", "package_checker.log"})

RCP_PASS = "Pass"
RCP_NONE = "No RCP"
RCP_UNKNOWN = "Unknown state"


# --------------------------------------------------------------------------
# Arithmetic
# --------------------------------------------------------------------------

def time_to_train_minutes(run_start_ms: float, run_stop_ms: float) -> float:
    """(run_stop - run_start) in minutes, computed as the summarizer does, no rounding."""
    return (float(run_stop_ms) - float(run_start_ms)) / 60 / 1000


def olympic_mean(values: Iterable[float], n_noncompliant: int = 0, max_dropped: int = 1) -> float | None:
    """MLCommons olympic mean of the *compliant* runs' values.

    Sorts ``values`` and drops ``max_dropped`` from the fast end and
    ``max_dropped - n_noncompliant`` from the slow end: the non-compliant runs
    (already left out of ``values``) count as the slowest.  Returns None when
    ``n_noncompliant > max_dropped`` (no score) or nothing is left to average.
    Same slicing and summation order as mlperf-logging's
    ``_compute_olympic_average``, so the result is bit-identical.
    """
    n_noncompliant, max_dropped = int(n_noncompliant), int(max_dropped)
    if n_noncompliant < 0 or max_dropped < 0:
        raise ValueError("n_noncompliant and max_dropped must be >= 0")
    if n_noncompliant > max_dropped:
        return None
    scores = sorted(float(v) for v in values)
    countable = scores[max_dropped:len(scores) - (max_dropped - n_noncompliant)]
    if not countable:
        return None
    return sum(countable) * 1.0 / len(countable)


def max_dropped_runs(benchmark: str | None) -> int:
    """How many runs olympic scoring drops on each side (4 for unet3d, else 1)."""
    return 4 if benchmark == "unet3d" else 1


# --------------------------------------------------------------------------
# Package helpers
# --------------------------------------------------------------------------

def check_ruleset(ruleset: str) -> str:
    """Return ``ruleset`` if mlperf-logging knows it for training, else raise ValueError."""
    package_dir = Path(mlp_compliance.__file__).parent
    if re.fullmatch(r"\d+\.\d+\.\d+", str(ruleset)) and (package_dir / f"{USAGE}_{ruleset}").is_dir():
        return ruleset
    choices = sorted(d.name[len(USAGE) + 1:] for d in package_dir.glob(f"{USAGE}_*.*.*") if d.is_dir())
    raise ValueError(f"ruleset {ruleset!r} is not one mlperf-logging has for {USAGE}; "
                     f"expected one of {', '.join(choices)}")


def is_mlcommons_benchmark(benchmark: str | None, ruleset: str) -> bool:
    """True if ``benchmark`` is in the package's list of benchmarks for ``ruleset``."""
    try:
        return benchmark in get_allowed_benchmarks(USAGE, ruleset)
    except ValueError:
        return False


def expected_result_count(benchmark: str | None) -> int:
    """Result files a set needs, from benchmark_meta; 10 for benchmarks it does not know."""
    return int(get_result_file_counts(USAGE).get(benchmark, 10))


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured_package_logging() -> Iterator[list[logging.LogRecord]]:
    """Collect what mlperf-logging logs through the root logger, for the duration.

    The package logs with module-level ``logging.info/warning``; with no root
    handler those would call ``basicConfig()`` and leave a stderr handler behind.
    Our handler prevents that, and the level is restored afterwards.
    """
    root = logging.getLogger()
    handler = _ListHandler()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level, logging.INFO))  # never hide what the caller already logs
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


# --------------------------------------------------------------------------
# Compliance (per run)
# --------------------------------------------------------------------------

@dataclass
class ComplianceResult:
    """Verdict of mlperf-logging's compliance checker on one file."""

    compliant: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    rules: str = ""  # the rule file the check started from


def _common_rules_path(ruleset: str) -> str:
    return str(Path(mlp_compliance.__file__).parent / f"{USAGE}_{ruleset}" / "common.yaml")


def _check_common_only(checker: mlp_compliance.ComplianceChecker, path: str, ruleset: str) -> None:
    """Run ``common.yaml`` alone: ``check_file`` minus the chained rule files.

    ``common.yaml`` chains on through ``enqueue_config`` calls in its YAML
    (``submission_division`` -> ``closed_common.yaml`` -> ``closed_<benchmark>.yaml``);
    ``check_loglines`` drains that queue, and for an unknown benchmark it
    would fail the closed benchmark list and then crash opening
    ``closed_<benchmark>.yaml``.  ``configured_checks`` runs one rule file and
    leaves the queue alone; the caller clears the queue.
    """
    loglines, errors = mlp_parser.parse_file(path, ruleset=ruleset)
    if errors:
        checker.put_message("Log lines had parsing errors.")
    if not loglines:
        checker.put_message("No log lines detected")
    checker.configured_checks(loglines, _common_rules_path(ruleset))


def check_compliance(path: str | os.PathLike, ruleset: str = DEFAULT_RULESET,
                     common_only: bool = False) -> ComplianceResult:
    """Compliance of one log with mlperf-logging, in-process, messages captured.

    ``common_only`` runs only ``training_<ruleset>/common.yaml`` (for benchmarks the
    ruleset does not know).  A crash of the checker (it raises KeyError on a
    line without ``metadata``) is reported as non-compliant, not raised.
    """
    path = os.fspath(path)
    rules = _common_rules_path(ruleset) if common_only else f"{USAGE}_{ruleset}/common.yaml"
    checker = mlp_compliance.make_checker(USAGE, ruleset, False, False)
    mlp_compliance.enqueued_configs.clear()
    try:
        with _captured_package_logging():
            if common_only:
                _check_common_only(checker, path, ruleset)
            else:
                mlp_compliance.main(path, rules, checker)
    except Exception as exc:  # the package raises on some malformed logs
        checker.put_message(f"mlperf-logging's compliance checker crashed: {type(exc).__name__}: {exc}")
    finally:
        mlp_compliance.enqueued_configs.clear()
    errors = [*checker.overwritable.values(), *checker.not_overwritable]
    return ComplianceResult(compliant=not errors, errors=errors,
                            warnings=list(checker.warnings.values()), rules=rules)


# --------------------------------------------------------------------------
# Per run
# --------------------------------------------------------------------------

@dataclass
class RunScore:
    """One result file, scored."""

    file: str
    path: str
    minutes: float | None
    status: str  # run_stop status, or "missing" when there is no run_stop
    samples_to_converge: Any
    global_batch_size: Any
    last_eval_accuracy: Any
    quality_target: float | None
    target_reached: bool | None
    compliant: bool
    compliance_errors: list[str] = field(default_factory=list)
    compliance_warnings: list[str] = field(default_factory=list)
    parse_problems: list[ParseProblem] = field(default_factory=list)
    benchmark: str | None = None
    division: str | None = None
    dropped_reason: str | None = None  # set by set scoring when the run does not count
    timing_problem: str | None = None  # impossible timestamps (see timing_problem()): invalid

    @property
    def crashed(self) -> bool:
        return self.status == "missing"

    @property
    def counted(self) -> bool:
        return self.dropped_reason is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "path": self.path,
            "minutes": self.minutes,
            "status": self.status,
            "crashed": self.crashed,
            "samples_to_converge": self.samples_to_converge,
            "global_batch_size": self.global_batch_size,
            "last_eval_accuracy": self.last_eval_accuracy,
            "quality_target": self.quality_target,
            "target_reached": self.target_reached,
            "compliant": self.compliant,
            "compliance_errors": list(self.compliance_errors),
            "compliance_warnings": list(self.compliance_warnings),
            "parse_problems": [p.to_dict() for p in self.parse_problems],
            "counted": self.counted,
            "dropped_reason": self.dropped_reason,
            "timing_problem": self.timing_problem,
        }


def _target_reached(value: Any, target: float | None) -> bool | None:
    """Lower is better for every benchmark we score; None when either is unknown."""
    number = _numeric(value)
    if target is None or number is None:
        return None
    return number <= float(target)


def _numeric(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _run_minutes(run: RunLog) -> float | None:
    if run.run_start_ms is None or run.run_stop_ms is None or timing_problem(run):
        return None
    return time_to_train_minutes(run.run_start_ms, run.run_stop_ms)


def _ms(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else repr(value)


def timing_problem(run: RunLog) -> str | None:
    """Why a run's timestamps cannot be a time to train (None: they can).

    The life cycle of a run goes forward: init_start <= init_stop <= run_start < run_stop (the
    run_start/run_stop the summarizer uses; the first init_start/init_stop of the file). A
    run_stop at or before its run_start would score as zero or negative minutes; any step that
    goes back in time means the clock, or the log, cannot be trusted.
    """
    start, stop = run.run_start_ms, run.run_stop_ms
    if stop is not None and start is None:
        return "impossible timing: a run_stop but no run_start in the log"
    if start is not None and stop is not None and stop <= start:
        minutes = time_to_train_minutes(start, stop)
        return (f"impossible timing: run_stop (time_ms {_ms(stop)}) is "
                f"{'at' if stop == start else 'before'} run_start (time_ms {_ms(start)}): "
                f"time to train would be {minutes:.4f} min")
    steps = [("init_start", run.init_start_ms), ("init_stop", run.init_stop_ms),
             ("run_start", start), ("run_stop", stop)]
    known = [(key, value) for key, value in steps if value is not None]
    for (before, earlier), (after, later) in zip(known, known[1:]):
        if later < earlier:
            return (f"impossible timing: {after} (time_ms {_ms(later)}) is {_ms(earlier - later)} ms "
                    f"before {before} (time_ms {_ms(earlier)}): the log's times go backwards")
    return None


def score_run_log(run: RunLog, ruleset: str = DEFAULT_RULESET, common_only: bool | None = None,
                  quality_target: float | None = None, benchmark: str | None = None) -> RunScore:
    """Score a file already summarized by :func:`mlperf_repro.mllog.summarize_run`.

    ``benchmark`` defaults to the one the log names.  ``common_only`` defaults
    to "the ruleset does not know the benchmark".  ``quality_target`` defaults
    to the catalog's target for an MLCommons benchmark, else (the smoke benchmark) the
    ``target_accuracy`` the log declares.
    """
    benchmark = benchmark or run.benchmark
    if common_only is None:
        common_only = not is_mlcommons_benchmark(benchmark, ruleset)
    compliance = check_compliance(run.file, ruleset, common_only=common_only)
    target = quality_target
    if target is None:
        known = catalog_quality_target(benchmark) if is_mlcommons_benchmark(benchmark, ruleset) else None
        target = known or _numeric(run.target_accuracy)
    return RunScore(
        file=os.path.basename(run.file), path=run.file, minutes=_run_minutes(run),
        status="missing" if run.crashed else str(run.run_stop_status),
        samples_to_converge=run.samples_to_converge, global_batch_size=run.global_batch_size,
        last_eval_accuracy=run.last_eval_accuracy, quality_target=target,
        target_reached=_target_reached(run.last_eval_accuracy, target),
        compliant=compliance.compliant, compliance_errors=compliance.errors,
        compliance_warnings=compliance.warnings, parse_problems=list(run.problems),
        benchmark=run.benchmark, division=run.division, timing_problem=timing_problem(run))


def score_run(path: str | os.PathLike, ruleset: str = DEFAULT_RULESET, common_only: bool | None = None,
              quality_target: float | None = None) -> RunScore:
    """Parse (one streaming pass), time and compliance-check one result file."""
    return score_run_log(summarize_run(path), ruleset, common_only, quality_target)


# --------------------------------------------------------------------------
# RCP (per set)
# --------------------------------------------------------------------------

@dataclass
class RcpResult:
    """Outcome of the RCP check, in the summarizer's detailed-CSV words."""

    status: str  # Pass, Fail, Interp. Fail, Missing, No RCP, Unknown state
    message: str
    factor: float = 1.0  # what the score is multiplied by (scaling.json, else 1.0)
    passed: bool | None = None
    computed_factor: float | None = None  # max(1, RCP mean / subm mean), even on failure
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "message": self.message, "factor": self.factor,
                "passed": self.passed, "computed_factor": self.computed_factor,
                "details": dict(self.details)}


def rcp_status_word(passed: bool, message: str) -> str:
    """Map check_directory's (pass, message) to the summarizer's RCP column."""
    if passed:
        return RCP_PASS
    if message == "RCP found":
        return "Fail"
    if message == "RCP Interpolation":
        return "Interp. Fail"
    if "Missing" in message:
        return "Missing"
    if message == "Cannot find any RCPs":
        return RCP_NONE
    return RCP_UNKNOWN


def _finite(value: Any) -> float | None:
    """A plain finite float (numpy scalars converted), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _rcp_details(records: Sequence[logging.LogRecord]) -> dict[str, Any]:
    """Pick the RCP record and submission mean out of the package's INFO lines."""
    details: dict[str, Any] = {}
    for record in records:
        # logging stores a lone dict argument as record.args itself
        if record.msg == " RCP Record: %s" and isinstance(record.args, dict):
            details["bs"] = record.args.get("BS")
            for key in ("RCP Mean", "RCP Stdev", "Min Epochs", "Max Speedup"):
                if key in record.args:
                    details[key.lower().replace(" ", "_")] = _finite(record.args[key])
        elif record.msg == " Submission mean epochs: %.4f" and isinstance(record.args, tuple) and record.args:
            details["submission_mean"] = _finite(record.args[0])
    return details


def _explain_rcp(status: str, message: str, details: dict[str, Any]) -> str:
    """The package's message, plus the numbers behind a failure when known."""
    if status == RCP_PASS or "submission_mean" not in details or "min_epochs" not in details:
        return message
    return (f"{message}: olympic mean samples to converge {details['submission_mean']} is below "
            f"the {details['min_epochs']} allowed at batch size {details.get('bs')} "
            f"(RCP mean {details.get('rcp_mean')})")


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


def _rcp_files_present(benchmark: str, ruleset: str) -> bool:
    rcp_dir = Path(mlp_compliance.__file__).parents[1] / "rcp_checker" / f"{USAGE}_{ruleset}"
    return (rcp_dir / f"rcps_{benchmark}.json").is_file()


def check_rcp(files: Sequence[str | os.PathLike], benchmark: str, ruleset: str = DEFAULT_RULESET) -> RcpResult:
    """RCP check of a set with ``rcp_checker.check_directory`` (pruned RCPs).

    The files are linked as ``result_<i>.txt`` into a private temporary
    directory (so ``*.log`` names work too), and the check runs with
    ``set_scaling=True`` there: the factor applied is the one the package would
    write to ``scaling.json`` (only when the check passes and the set
    converged faster than the RCP mean), exactly what the summarizer reads.
    """
    minimum = 2 * max_dropped_runs(benchmark) + 1
    if len(files) < minimum:
        return RcpResult(RCP_UNKNOWN, f"not checked: the RCP check averages runs olympic-style and needs "
                         f"at least {minimum}, the set has {len(files)}")
    if not _rcp_files_present(benchmark, ruleset):
        return RcpResult(RCP_NONE, f"mlperf-logging has no RCPs for {benchmark} in {USAGE}_{ruleset}",
                         passed=False)
    with tempfile.TemporaryDirectory(prefix="mlperf-repro-rcp-") as tmp:
        for index, source in enumerate(files):
            _link_or_copy(Path(source), Path(tmp) / log_name(index))
        try:
            with _captured_package_logging() as records, warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # np.mean of an empty slice
                passed, message, norm = _rcp_checker().check_directory(
                    tmp, USAGE, ruleset, False, False, rcp_file=None,
                    rcp_pass="pruned_rcps", rcp_bypass=False, set_scaling=True)
        except Exception as exc:  # e.g. a truncated JSON line the RCP reader json.loads
            return RcpResult(RCP_UNKNOWN, f"mlperf-logging's RCP checker failed: {type(exc).__name__}: {exc}",
                             passed=False)
        scaling_file = Path(tmp) / "scaling.json"
        factor = float(json.loads(scaling_file.read_text())["scaling_factor"]) if scaling_file.exists() else 1.0
    status, details = rcp_status_word(bool(passed), message), _rcp_details(records)
    return RcpResult(status=status, message=message, factor=factor, passed=bool(passed),
                     computed_factor=_finite(norm), details=details)


# --------------------------------------------------------------------------
# Per set
# --------------------------------------------------------------------------

@dataclass
class SetScore:
    """A directory of runs of one benchmark, scored as MLCommons scores it."""

    directory: str
    benchmark: str | None
    ruleset: str
    mlcommons_benchmark: bool
    division: str | None
    runs: list[RunScore]
    expected_runs: int
    olympic_minutes: float | None
    mean_minutes: float | None
    samples_to_converge: float | None
    global_batch_size: Any
    rcp: RcpResult
    score_minutes: float | None
    valid: bool
    reasons: list[str] = field(default_factory=list)
    parse_problems: list[ParseProblem] = field(default_factory=list)

    @property
    def dropped(self) -> list[RunScore]:
        return [run for run in self.runs if not run.counted]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "benchmark": self.benchmark,
            "ruleset": self.ruleset,
            "mlcommons_benchmark": self.mlcommons_benchmark,
            "division": self.division,
            "runs": [run.to_dict() for run in self.runs],
            "expected_runs": self.expected_runs,
            "found_runs": len(self.runs),
            "dropped_runs": [run.file for run in self.dropped],
            "olympic_minutes": self.olympic_minutes,
            "mean_minutes": self.mean_minutes,
            "samples_to_converge": self.samples_to_converge,
            "global_batch_size": self.global_batch_size,
            "rcp": self.rcp.to_dict(),
            "score_minutes": self.score_minutes,
            "valid": self.valid,
            "reasons": list(self.reasons),
            "parse_problems": [p.to_dict() for p in self.parse_problems],
        }


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def find_result_files(directory: str | os.PathLike) -> list[Path]:
    """Run logs in ``directory`` (not recursive): ``result_*.txt`` and ``*.log``.

    ``result_*.txt`` is what MLCommons tools read; ``*.log`` admits raw job
    logs.  The package CLIs' own ``compliance_checker.log``,
    ``rcp_checker.log`` and ``package_checker.log`` are skipped.  Natural
    order: result_2 before result_10.
    """
    folder = Path(directory)
    found = [p for p in folder.iterdir() if p.is_file() and (
        (p.name.startswith("result_") and p.name.endswith(".txt"))
        or (p.suffix == ".log" and p.name not in _TOOL_LOGS))]
    return sorted(found, key=_natural_key)


class _Reasons:
    """Reasons a set is not a valid score, and notes that do not invalidate it."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.blocking = False

    def block(self, message: str) -> None:
        self.items.append(message)
        self.blocking = True

    def note(self, message: str) -> None:
        self.items.append(message)


def _detect_benchmark(runs: Sequence[RunLog], given: str | None, reasons: _Reasons) -> str | None:
    logged = Counter(run.benchmark for run in runs if run.benchmark is not None)
    if len(logged) > 1:
        reasons.block(f"runs disagree on submission_benchmark: {dict(logged)}")
    if given is not None:
        if logged and set(logged) != {given}:
            reasons.block(f"benchmark {given!r} was asked for but the logs say {sorted(logged)}")
        return given
    if not logged:
        reasons.block("no submission_benchmark in the logs and no benchmark given")
        return None
    return logged.most_common(1)[0][0]


def _drop_reason(run: RunScore, mlcommons: bool) -> str | None:
    """Why a run does not count (None: it counts).

    MLCommons benchmarks: exactly the summarizer's rule, a run counts iff it
    passes compliance (whose closed rules also check the quality target).
    Other benchmarks are checked against common.yaml only, which looks at
    neither target nor status, so a run must also stop with ``success`` and
    reach its target.
    """
    if run.crashed:
        return "crashed: no run_stop in the log"
    if run.timing_problem:
        return run.timing_problem
    if not run.compliant:
        first = run.compliance_errors[0].splitlines()[0] if run.compliance_errors else "no message"
        return f"not compliant ({first})"
    if run.minutes is None:
        return "no run_start in the log"
    if not mlcommons and run.status != "success":
        return f"run_stop status is {run.status!r}, not 'success'"
    if not mlcommons and run.target_reached is False:
        return f"last eval_accuracy {run.last_eval_accuracy} did not reach the target {run.quality_target}"
    return None


def _check_count(found: int, expected: int, allow_partial: bool, directory: str, reasons: _Reasons) -> None:
    if found == expected:
        return
    if allow_partial and found < expected:
        reasons.block(f"partial set: {found} of {expected} runs (allow_partial); "
                      "the numbers are computed but this is not a valid score")
        return
    reasons.block(f"found {found} result file(s) in {directory}; a set needs exactly {expected}"
                  + ("" if allow_partial else " (pass allow_partial=True to score a partial set anyway)"))


def _samples_olympic(runs: Sequence[RunScore], max_dropped: int) -> float | None:
    """Summarizer's samples_to_converge column: not-converged runs count as 1e9."""
    samples = [float(r.samples_to_converge) if _numeric(r.samples_to_converge) is not None else 1e9
               for r in runs]
    if sum(1 for s in samples if s == 1e9) > max_dropped or len(samples) < 2 * max_dropped + 1:
        return None
    samples.sort()
    return float(np.mean(samples[max_dropped:len(samples) - max_dropped]))


def _set_batch_size(runs: Sequence[RunScore]) -> Any:
    sizes = {json.dumps(r.global_batch_size) for r in runs}
    return runs[0].global_batch_size if len(sizes) == 1 else None


def _rcp_for_set(files: Sequence[Path], benchmark: str | None, mlcommons: bool, division: str | None,
                 ruleset: str) -> RcpResult:
    if benchmark is None or not mlcommons:
        return RcpResult(RCP_NONE, f"{benchmark} is not an MLCommons benchmark in {USAGE}_{ruleset}: no RCP")
    if division == "open":
        return RcpResult(RCP_NONE, "open division: MLCommons runs no RCP check")
    return check_rcp(files, benchmark, ruleset)


def _start_rcp(files: Sequence[Path], benchmark: str | None, mlcommons: bool, division: str | None,
               ruleset: str) -> Callable[[], RcpResult]:
    """The set's RCP result, as a callable: computed meanwhile in a forked process where it can be.

    The RCP check (scipy's import included) then overlaps the compliance checks of the runs on a
    second core. Only a single-threaded process forks safely, and only where fork exists; every
    other case, and a child that fails to start or dies, computes the same result in-process.
    """
    def here() -> RcpResult:
        return _rcp_for_set(files, benchmark, mlcommons, division, ruleset)

    needs_check = benchmark is not None and mlcommons and division != "open"
    if (not needs_check or threading.active_count() > 1 or (os.cpu_count() or 1) < 2
            or "fork" not in multiprocessing.get_all_start_methods()):
        return here
    try:
        executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=1, mp_context=multiprocessing.get_context("fork"))
        future = executor.submit(_rcp_for_set, list(files), benchmark, mlcommons, division, ruleset)
    except (OSError, RuntimeError):
        return here

    def result() -> RcpResult:
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:
            return here()
        finally:
            executor.shutdown(wait=True)

    return result


def _score(olympic: float | None, mean: float | None, factor: float, partial: bool,
           reasons: _Reasons) -> float | None:
    score = None
    if olympic is not None:
        score = olympic * factor
    elif partial and mean is not None:
        reasons.note("too few runs for an olympic mean: score_minutes is the plain mean of the "
                     "counted runs x RCP factor (partial set, indicative only)")
        score = mean * factor
    if score is not None and not (math.isfinite(score) and score > 0):
        reasons.block(f"score {score!r} min is not a positive number of minutes: not a score")
    return score


def _timing_reasons(runs: Sequence[RunScore], reasons: _Reasons) -> None:
    """A run with impossible timestamps makes the whole set untrustworthy, not just that run."""
    bad = [run for run in runs if run.timing_problem]
    if bad:
        reasons.block(f"{len(bad)} run(s) with impossible timing ({', '.join(r.file for r in bad)}): "
                      "the set is not a valid score")


def _dropped_reasons(runs: Sequence[RunScore], max_dropped: int, reasons: _Reasons) -> None:
    dropped = [run for run in runs if not run.counted]
    for run in dropped:
        reasons.note(f"{run.file} dropped: {run.dropped_reason}")
    if len(dropped) > max_dropped:
        reasons.block(f"{len(dropped)} runs dropped ({', '.join(r.file for r in dropped)}); "
                      f"olympic scoring allows at most {max_dropped}: no score")


def _detect_division(runs: Sequence[RunLog], reasons: _Reasons) -> str | None:
    logged = {run.division for run in runs if run.division}
    if len(logged) > 1:
        reasons.block(f"runs disagree on submission_division: {sorted(logged)}")
        return None
    return logged.pop() if logged else None


def _time_means(runs: Sequence[RunScore], max_dropped: int, partial: bool,
                reasons: _Reasons) -> tuple[float | None, float | None]:
    """(olympic mean, plain mean) of the counted runs' minutes, with the dropped-first rule."""
    counted = [run.minutes for run in runs if run.counted]
    n_dropped = len(runs) - len(counted)
    if not counted or n_dropped > max_dropped:
        return None, None
    olympic = olympic_mean(counted, n_dropped, max_dropped)
    if olympic is None and not partial:
        reasons.block(f"olympic mean undefined for {len(counted)} counted run(s)")
    return olympic, sum(counted) / len(counted)


def _set_notes(files: Sequence[Path], bench: str | None, mlcommons: bool, ruleset: str, rcp: RcpResult,
               reasons: _Reasons) -> None:
    if rcp.passed is False:
        reasons.block(f"RCP check {rcp.status}: {_explain_rcp(rcp.status, rcp.message, rcp.details)}")
    if not mlcommons and bench is not None:
        reasons.note(f"{bench} is not an MLCommons benchmark in {USAGE}_{ruleset}: compliance checked "
                     f"against {USAGE}_{ruleset}/common.yaml only, no RCP (factor 1.0)")
    if any(f.suffix == ".log" for f in files):
        reasons.note("*.log files were scored; MLCommons' package_checker reads only result_*.txt")


def score_directory(path: str | os.PathLike, ruleset: str | None = DEFAULT_RULESET, benchmark: str | None = None,
                    allow_partial: bool = False, expected_runs: int | None = None,
                    quality_target: float | None = None) -> SetScore:
    """Score one benchmark directory (``result_*.txt`` and ``*.log``; see :func:`find_result_files`).

    ``benchmark`` defaults to the logs' ``submission_benchmark``.  ``valid`` is
    True only for a set MLCommons would score: exactly ``expected_runs`` files
    (default: benchmark_meta's count, 10 for benchmarks it does not know), at
    most one dropped run, one benchmark and division, and for MLCommons
    benchmarks a passed RCP check.  ``allow_partial`` accepts fewer runs but
    the set stays invalid.  The numbers are computed in every case; ``reasons``
    says why a set is invalid, and carries notes that do not invalidate it.
    """
    ruleset = check_ruleset(ruleset or DEFAULT_RULESET)
    directory = os.fspath(path)
    if not Path(directory).is_dir():
        raise NotADirectoryError(f"result directory {directory!r} does not exist or is not a directory")
    reasons = _Reasons()
    files = find_result_files(directory)
    if not files:
        reasons.block(f"no result_*.txt or *.log files in {directory}")
    logs = [summarize_run(f) for f in files]
    bench = _detect_benchmark(logs, benchmark, reasons)
    division = _detect_division(logs, reasons)
    mlcommons = is_mlcommons_benchmark(bench, ruleset)
    max_dropped = max_dropped_runs(bench)
    rcp_result = _start_rcp(files, bench, mlcommons, division, ruleset)
    runs = [score_run_log(log, ruleset, not mlcommons, quality_target, bench) for log in logs]
    for run in runs:
        run.dropped_reason = _drop_reason(run, mlcommons)

    expected = expected_runs if expected_runs is not None else expected_result_count(bench)
    partial = allow_partial and len(files) < expected
    _check_count(len(files), expected, allow_partial, directory, reasons)
    _dropped_reasons(runs, max_dropped, reasons)
    _timing_reasons(runs, reasons)
    olympic, mean = _time_means(runs, max_dropped, partial, reasons)
    rcp = rcp_result()
    _set_notes(files, bench, mlcommons, ruleset, rcp, reasons)
    score = _score(olympic, mean, rcp.factor, partial, reasons)

    return SetScore(
        directory=directory, benchmark=bench, ruleset=ruleset, mlcommons_benchmark=mlcommons,
        division=division, runs=runs, expected_runs=expected, olympic_minutes=olympic, mean_minutes=mean,
        samples_to_converge=_samples_olympic(runs, max_dropped) if runs else None,
        global_batch_size=_set_batch_size(runs) if runs else None, rcp=rcp, score_minutes=score,
        valid=not reasons.blocking, reasons=reasons.items,
        parse_problems=[problem for log in logs for problem in log.problems])
