"""Assemble an MLCommons submission tree from a scored set and run the package checker as the gate.

Plain Python, no Ansible imports.  The tree is the one MLCommons' tools read::

    OUT/ORG/systems/<system>.json
    OUT/ORG/results/<system>/<benchmark>/result_0.txt ... result_<N-1>.txt
    OUT/package_checker.log                     (the checker's log, outside ORG/)

The result files are copies of the set's logs (``result_*.txt`` and ``*.log``, natural order),
renamed ``result_<i>.txt``.  The system description is built from, lowest priority first: what the
logs and the catalog say (submitter, division, node and accelerator counts, accelerator model),
gathered facts (:func:`system_fields_from_facts`), a JSON file, and explicit fields.  Required
fields nothing provides are written as empty strings (the checker only checks that they exist)
and listed in ``empty_fields``; but ``number_of_nodes``, ``host_processors_per_node`` and
``accelerators_per_node`` must be integers, because MLCommons' result summarizer multiplies them:
the gate fails when they are not, even if the package checker found no error.

The gate is ``python -m mlperf_logging.package_checker ORG training <ruleset>`` in a subprocess,
run in a private temporary working directory with ``--log_output`` pointing into OUT.  That CLI
always exits 0, so the verdict comes from its last line: ``PACKAGE CHECKER FOUND NO ERRORS,
SUCCESS !`` or ``PACKAGE CHECKER FOUND ERRORS, ...``.  A run that prints neither (a crash) is a
failure.  The checker writes ``scaling.json`` into the benchmark directory when the RCP check
passes with a normalization factor: that file belongs in a submission, so it is left there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

USAGE = "training"
VERDICT_OK = "PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !"
VERDICT_ERRORS = "PACKAGE CHECKER FOUND ERRORS"

#: system_desc_checker.check_system_desc's required fields (mlperf-logging 4.1.68).
SYSTEM_REQUIRED_FIELDS = (
    "submitter", "division", "status", "system_name", "number_of_nodes",
    "host_processors_per_node", "host_processor_model_name", "host_processor_core_count",
    "host_processor_vcpu_count", "host_processor_frequency", "host_processor_caches",
    "host_processor_interconnect", "host_memory_capacity", "host_storage_type",
    "host_storage_capacity", "host_networking", "host_networking_topology",
    "host_memory_configuration", "accelerators_per_node", "accelerator_model_name",
    "accelerator_host_interconnect", "accelerator_frequency", "accelerator_on-chip_memories",
    "accelerator_memory_configuration", "accelerator_memory_capacity", "accelerator_interconnect",
    "accelerator_interconnect_topology", "cooling", "hw_notes", "framework",
    "other_software_stack", "operating_system", "sw_notes",
)
#: Allowed ``status`` values for training rulesets >= 4.0 (system_desc_checker).
AVAILABILITY = ("Available on-premise", "Available cloud",
                "Research, Development, or Internal (RDI)", "Preview")
#: Fields MLCommons' result summarizer converts with int() (it multiplies them for its table).
SUMMARIZER_INTEGER_FIELDS = ("number_of_nodes", "host_processors_per_node", "accelerators_per_node")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_LOG_LINE_RE = re.compile(r"^(ERROR|WARNING|CRITICAL)\s*-\s*(.*)$")


@dataclass
class PackageResult:
    """The assembled tree and the package checker's verdict on it."""

    org_dir: str
    system: str
    benchmark: str
    ruleset: str
    system_json: str
    benchmark_dir: str
    files: list[dict[str, str]]
    log: str
    passed: bool
    verdict: str | None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    empty_fields: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    returncode: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "org_dir": self.org_dir, "system": self.system, "benchmark": self.benchmark,
            "ruleset": self.ruleset, "system_json": self.system_json,
            "benchmark_dir": self.benchmark_dir, "files": [dict(f) for f in self.files],
            "log": self.log, "passed": self.passed, "verdict": self.verdict,
            "errors": list(self.errors), "warnings": list(self.warnings),
            "empty_fields": list(self.empty_fields), "command": list(self.command),
            "returncode": self.returncode,
        }


# --------------------------------------------------------------------------
# System description
# --------------------------------------------------------------------------

def _fact(facts: Mapping[str, Any], name: str) -> Any:
    """A fact by its plain name or its ``ansible_`` variable name."""
    if name in facts:
        return facts[name]
    return facts.get(f"ansible_{name}")


def system_fields_from_facts(facts: Mapping[str, Any] | None) -> dict[str, str]:
    """System-description fields from one node's gathered facts.

    ``facts`` is ``ansible_facts`` (plain names) or hostvars (``ansible_`` names), optionally with
    ``amd_gpu`` from the amd_gpu_facts module.  Only fields the facts determine are returned.
    """
    facts = facts or {}
    out: dict[str, str] = {}
    processor = _fact(facts, "processor")
    if isinstance(processor, list):
        names = [p for p in processor if isinstance(p, str) and re.search(r"[A-Za-z].*\d|\d.*[A-Za-z]", p)
                 and p not in ("GenuineIntel", "AuthenticAMD")]
        if names:
            out["host_processor_model_name"] = re.sub(r"\s+\d+-Core Processor$", "", names[0]).strip()
    for fact, key in (("processor_count", "host_processors_per_node"),
                      ("processor_cores", "host_processor_core_count"),
                      ("processor_vcpus", "host_processor_vcpu_count")):
        value = _fact(facts, fact)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            out[key] = str(value)
    memtotal = _fact(facts, "memtotal_mb")
    if isinstance(memtotal, int) and memtotal > 0:
        out["host_memory_capacity"] = f"{memtotal / 1024 / 1024:.1f} TB" if memtotal >= 1024 * 1024 \
            else f"{round(memtotal / 1024)} GB"
    distribution, version = _fact(facts, "distribution"), _fact(facts, "distribution_version")
    if distribution:
        out["operating_system"] = f"{distribution} {version or ''}".strip()
    gpu = facts.get("amd_gpu") or _fact(facts, "amd_gpu") or {}
    if isinstance(gpu, Mapping):
        if gpu.get("model"):
            out["accelerator_model_name"] = f"AMD Instinct {gpu['model']}"
        if isinstance(gpu.get("physical_count") or gpu.get("gpu_count"), int) and \
                (gpu.get("physical_count") or gpu.get("gpu_count")) > 0:
            out["accelerators_per_node"] = str(gpu.get("physical_count") or gpu.get("gpu_count"))
        if isinstance(gpu.get("vram_mib_per_gpu"), int) and gpu["vram_mib_per_gpu"] > 0:
            out["accelerator_memory_capacity"] = f"{round(gpu['vram_mib_per_gpu'] / 1024)} GB"
        if gpu.get("xgmi"):
            out["accelerator_interconnect"] = "XGMI"
        if gpu.get("rocm_version"):
            out["framework"] = f"ROCm {gpu['rocm_version']}"
    return out


def _derived_fields(org: str, system: str, benchmark: str, division: str | None,
                    submission_platform: str | None, config_filename: str | None) -> dict[str, str]:
    """What the logs and the catalog say about the system."""
    out = {"submitter": org, "division": division or "closed", "status": AVAILABILITY[0],
           "system_name": system}
    name, catalog = None, None
    try:
        from .catalog import load_catalog
        from .compare import identify_platform
        catalog = load_catalog()
        entry = catalog.benchmarks.get(benchmark)
        # A system named like a catalog platform (MI355X_1x8x1) is that platform.
        named = system if entry is not None and system in entry.platforms else None
        name, _ = identify_platform(benchmark, catalog, system=named, submission_platform=submission_platform,
                                    config_filename=config_filename)
    except Exception:  # the catalog is a convenience here; never fail packaging on it
        name = None
    if name is not None:
        plat = catalog.benchmarks[benchmark].platforms[name]
        out["number_of_nodes"] = str(plat.nodes)
        out["accelerators_per_node"] = str(plat.gpus_per_node)
        if plat.gpu.upper().startswith("MI"):
            out["accelerator_model_name"] = f"AMD Instinct {plat.gpu}"
    elif submission_platform:
        match = re.match(r"^\s*(\d+)\s*x\s*(.+)$", submission_platform)
        if match:
            out["number_of_nodes"] = match.group(1)
        out["accelerator_model_name"] = (match.group(2) if match else submission_platform).strip()
    return out


def integer_field_problems(desc: Mapping[str, Any]) -> list[str]:
    """Fields the result summarizer needs as integers but that are not (it would crash on them)."""
    problems = []
    for key in SUMMARIZER_INTEGER_FIELDS:
        try:
            if int(str(desc.get(key)).strip()) < 1:
                raise ValueError
        except ValueError:
            problems.append(f"systems/<system>.json field {key} is {desc.get(key)!r}: MLCommons' result "
                            "summarizer needs a positive integer there (give it with the system JSON or a field)")
    return problems


def system_description(org: str, system: str, benchmark: str, *, division: str | None = None,
                       submission_platform: str | None = None, config_filename: str | None = None,
                       facts: Mapping[str, Any] | None = None, system_json: Mapping[str, Any] | None = None,
                       fields: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The ``systems/<system>.json`` content and the required fields left empty.

    Later sources override earlier ones: derived from logs/catalog, ``facts``, ``system_json``,
    ``fields``.  ``system_name`` in a given JSON is kept (it is the marketing name MLCommons
    shows); the file name is always ``<system>.json``.
    """
    desc: dict[str, Any] = {key: "" for key in SYSTEM_REQUIRED_FIELDS}
    desc.update(_derived_fields(org, system, benchmark, division, submission_platform, config_filename))
    desc.update(system_fields_from_facts(facts))
    for source in (system_json, fields):
        for key, value in (source or {}).items():
            desc[str(key)] = value
    if desc.get("status") not in AVAILABILITY:
        raise ValueError(f"system description status {desc.get('status')!r} is not one MLCommons accepts: "
                         f"{', '.join(AVAILABILITY)}")
    if desc.get("division") not in ("closed", "open"):
        raise ValueError(f"system description division {desc.get('division')!r}: expected closed or open")
    if str(desc.get("submitter")) != org:
        raise ValueError(f"system description submitter {desc.get('submitter')!r} differs from --org {org!r}")
    empty = [key for key in SYSTEM_REQUIRED_FIELDS if desc.get(key) in ("", None)]
    return dict(sorted(desc.items())), empty


# --------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------

def _check_name(value: str, what: str) -> str:
    if not value or not _NAME_RE.match(value) or value in (".", ".."):
        raise ValueError(f"{what} {value!r}: expected letters, digits, '.', '_', '+' or '-' "
                         "(it becomes a directory name in the submission tree)")
    return value


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def _log_facts(files: Sequence[Path]) -> dict[str, Any]:
    """benchmark, division, submission_platform and config_filename the logs name (first found)."""
    from .mllog import iter_events

    wanted = {"submission_benchmark": None, "submission_division": None,
              "submission_platform": None, "config_filename": None}
    for path in files:
        events = iter_events(path)
        try:
            for event in events:
                if event.key in wanted and wanted[event.key] is None and event.value not in (None, ""):
                    wanted[event.key] = str(event.value)
                if event.key == "run_start":
                    break
        finally:
            events.close()
        if all(wanted.values()):
            break
    return wanted


def parse_checker_output(text: str) -> tuple[bool, str | None, list[str], list[str]]:
    """(passed, verdict line, ERROR messages, WARNING messages) from the checker's log text.

    The last verdict line counts; no verdict line at all (the checker crashed) is a failure.
    """
    verdict, errors, warnings = None, [], []
    for raw in text.splitlines():
        line = raw.strip()
        if VERDICT_OK in line or VERDICT_ERRORS in line:
            verdict = line[line.index("PACKAGE CHECKER"):]
        match = _LOG_LINE_RE.match(line)
        if match:
            (errors if match.group(1) in ("ERROR", "CRITICAL") else warnings).append(match.group(2).strip())
    passed = verdict is not None and VERDICT_OK in verdict and VERDICT_ERRORS not in verdict
    return passed, verdict, errors, warnings


def run_package_checker(org_dir: str | os.PathLike, ruleset: str, log_output: str | os.PathLike,
                        timeout: float = 1800, extra_args: Sequence[str] = ()) -> tuple[list[str], int, str]:
    """Run the checker CLI on ``org_dir`` in a private temporary cwd; (command, returncode, output)."""
    command = [sys.executable, "-m", "mlperf_logging.package_checker", os.fspath(Path(org_dir).resolve()),
               USAGE, ruleset, "--log_output", os.fspath(Path(log_output).resolve()), *extra_args]
    with tempfile.TemporaryDirectory(prefix="mlperf-repro-pkg-") as cwd:
        try:
            proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                                  errors="replace")
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or "") if isinstance(exc.stdout, str) else ""
            return command, -1, output + f"\nERROR - package checker timed out after {timeout:g} s\n"
    return command, proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def package(result_dir: str | os.PathLike, out_dir: str | os.PathLike, org: str, system: str, *,
            ruleset: str | None = None, benchmark: str | None = None,
            system_json: str | os.PathLike | Mapping[str, Any] | None = None,
            system_fields: Mapping[str, Any] | None = None, facts: Mapping[str, Any] | None = None,
            force: bool = False, timeout: float = 1800, checker_args: Sequence[str] = ()) -> PackageResult:
    """Assemble ``out_dir/ORG`` from the set in ``result_dir`` and gate it with the package checker.

    ``out_dir`` must not be inside ``result_dir`` (nor the other way round).  An existing
    ``ORG/results/<system>/<benchmark>`` that is not empty is refused unless ``force``, which
    replaces it; other benchmarks and systems already in the tree are kept and checked too.
    """
    from .node.campaign import log_name
    from .scoring import DEFAULT_RULESET, check_ruleset, find_result_files

    ruleset = check_ruleset(ruleset or DEFAULT_RULESET)
    _check_name(org, "organization")
    _check_name(system, "system name")
    source, out = Path(result_dir).resolve(), Path(out_dir).resolve()
    if not source.is_dir():
        raise ValueError(f"result directory {result_dir} does not exist or is not a directory")
    if _inside(out, source) or _inside(source, out):
        raise ValueError(f"the output directory {out_dir} must be outside the result directory {result_dir} "
                         "(and not contain it): packaging never writes into the results")
    files = find_result_files(source)
    if not files:
        raise ValueError(f"no result_*.txt or *.log files in {result_dir}")
    logged = _log_facts(files)
    bench = benchmark or logged["submission_benchmark"]
    if not bench:
        raise ValueError("no submission_benchmark in the logs: pass the benchmark explicitly")
    _check_name(bench, "benchmark")
    if isinstance(system_json, (str, os.PathLike)):
        try:
            given = json.loads(Path(system_json).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"system JSON {system_json}: {exc}") from None
        if not isinstance(given, dict):
            raise ValueError(f"system JSON {system_json}: expected a JSON object")
    else:
        given = dict(system_json or {})
    desc, empty = system_description(org, system, bench, division=logged["submission_division"],
                                     submission_platform=logged["submission_platform"],
                                     config_filename=logged["config_filename"], facts=facts,
                                     system_json=given, fields=system_fields)

    org_dir = out / org
    bench_dir = org_dir / "results" / system / bench
    if bench_dir.exists() and any(bench_dir.iterdir()):
        if not force:
            raise ValueError(f"{bench_dir} already exists and is not empty (use force to replace it)")
        shutil.rmtree(bench_dir)
    # Explicit modes whatever the umask: directories 0755, files 0644 (a submission is read by
    # MLCommons' tools and reviewers, written by no one else).
    from .node.fileio import make_dirs, write_atomic  # pylint: disable=import-outside-toplevel
    make_dirs(bench_dir, 0o755)
    make_dirs(org_dir / "systems", 0o755)
    system_path = org_dir / "systems" / f"{system}.json"
    write_atomic(str(system_path), (json.dumps(desc, indent=4) + "\n").encode("utf-8"), 0o644)
    copied = []
    for index, path in enumerate(files):
        target = bench_dir / log_name(index)
        write_atomic(str(target), Path(path).read_bytes(), 0o644)
        copied.append({"source": str(path), "target": str(target)})

    log = out / "package_checker.log"
    if log.exists():
        log.unlink()  # the checker appends (logging.basicConfig(filename=...))
    command, returncode, output = run_package_checker(org_dir, ruleset, log, timeout, checker_args)
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else output
    passed, verdict, errors, warnings = parse_checker_output(text)
    if verdict is None:
        errors.append("the package checker printed no verdict line (it crashed?): "
                      + (output.strip().splitlines() or ["no output"])[-1])
    # The package checker only checks that the fields exist; the summarizer that builds the
    # results table calls int() on these, so an empty one would break the submission there.
    summarizer = integer_field_problems(desc)
    errors += summarizer
    passed = passed and not summarizer
    return PackageResult(org_dir=str(org_dir), system=system, benchmark=bench, ruleset=ruleset,
                         system_json=str(system_path), benchmark_dir=str(bench_dir), files=copied,
                         log=str(log), passed=passed, verdict=verdict, errors=errors, warnings=warnings,
                         empty_fields=empty, command=command, returncode=returncode)
