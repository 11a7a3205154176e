"""Validation of an inventory's site values, before any host is changed.

Each problem is one sentence naming the variable and what was expected. Used by the
``validate`` role (through the ``mlperf_validate_hosts`` filter), the CLI and the tests.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from .catalog import Catalog, CatalogError, UNSAFE_VALUE_RE, load_catalog

FILL_IN = "FILL_IN"
RUNTIMES = ("docker", "podman", "none")
TUNABLE_MODES = ("apply", "check", "reset", "off")
PATH_VARS = ("mlperf_datadir", "mlperf_logdir", "mlperf_workdir")
BOOL_VARS = ("mlperf_shared_storage", "mlperf_provision")
KNOWN_TAGS = ("all", "always", "preflight", "provision", "rocm", "docker", "tunables", "data",
              "render", "run", "collect", "score", "report", "deep_verify")
VERSION_VARS = ("rocm_version", "rocm_amdgpu_version", "preflight_min_rocm_version")
VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}$")
REQUIRED = ("mlperf_benchmark", "mlperf_system", "mlperf_nexp", "mlperf_container_runtime",
            *PATH_VARS, "mlperf_results_dir", *BOOL_VARS)


#: A host pattern that matches no host: the play is skipped with "no hosts matched".
NO_HOSTS = "all:!all"


def stage_hosts(pattern: str, stage_tags: list[str] | tuple[str, ...],
                run_tags: list[str] | tuple[str, ...] | None = None) -> str:
    """``pattern`` when ``--tags`` selects this stage, else a pattern that matches no host.

    ansible-core prepends each role's argument-spec validation with tag ``always``, so a stage
    that ``--tags`` leaves out still runs one task per host and role: at fleet scale, the
    largest part of a partial run (``--tags score`` on 512 nodes). A stage's play uses this as
    its ``hosts`` so that it runs on no host instead. ``--skip-tags`` needs nothing: the
    validation task carries the play's tags too, and ansible-core skips it. ``stage_tags`` must
    be the play's own tags (tests/unit/test_stage_hosts.py checks every playbook).
    """
    selected = set(run_tags or ["all"])
    if selected & {"all", "always", "tagged"} or selected & set(stage_tags):
        return pattern
    return NO_HOSTS


def _unfilled(value: Any) -> bool:
    return value is None or (isinstance(value, str) and (not value.strip() or FILL_IN in value))


def site_problems(site: Mapping[str, Any], groups: Mapping[str, list] | None = None,
                  catalog: Catalog | None = None) -> list[str]:
    """Every problem with the site values (an empty list when they are good).

    ``site`` may also carry ``ansible_run_tags``/``ansible_skip_tags`` (checked against the
    stage tags) and version variables (``rocm_version``, ...).
    """
    problems: list[str] = []
    groups = groups or {}
    for option in ("ansible_run_tags", "ansible_skip_tags"):
        unknown = sorted(set(site.get(option) or []) - set(KNOWN_TAGS))
        if unknown:
            flag = "--tags" if option == "ansible_run_tags" else "--skip-tags"
            problems.append(f"unknown tag(s) {', '.join(unknown)} in {flag}: "
                            f"the stages are {', '.join(KNOWN_TAGS[2:])}")
    for name in VERSION_VARS:
        value = site.get(name)
        if value is not None and not VERSION_RE.match(str(value)):
            problems.append(f"{name} must be a version like 7.2.2, got {value!r}")
    for name in REQUIRED:
        if name not in site or _unfilled(site.get(name)):
            problems.append(f"{name} is not set: fill it in the inventory's group_vars "
                            f"(it is {site.get(name)!r})")
    for name in BOOL_VARS:
        value = site.get(name)
        if name in site and not _unfilled(value) and not isinstance(value, bool):
            problems.append(f"{name} must be a boolean (true/false without quotes; on the "
                            f"command line -e '{{\"{name}\": true}}'), got {value!r} "
                            f"({type(value).__name__})")
    nexp = site.get("mlperf_nexp")
    if isinstance(nexp, str) and nexp.strip().isdigit():
        nexp = int(nexp)  # `-e mlperf_nexp=3` on the command line arrives as a string
    if "mlperf_nexp" in site and not _unfilled(nexp):
        if isinstance(nexp, bool) or not isinstance(nexp, int) or nexp < 1:
            problems.append(f"mlperf_nexp must be a positive integer (10 for a submission), "
                            f"got {nexp!r}")
    runtime = site.get("mlperf_container_runtime")
    if runtime is not None and not _unfilled(runtime) and runtime not in RUNTIMES:
        problems.append(f"mlperf_container_runtime must be one of {', '.join(RUNTIMES)}, "
                        f"got {runtime!r}")
    for name in PATH_VARS:
        value = site.get(name)
        if not _unfilled(value) and (not isinstance(value, str) or not value.startswith("/")):
            problems.append(f"{name} must be an absolute path, got {value!r}")
    mode = site.get("tunables_mode", "off")
    if mode not in TUNABLE_MODES:
        problems.append(f"tunables_mode must be one of {', '.join(TUNABLE_MODES)}, got {mode!r}")
    site_env = site.get("mlperf_site_env") or {}
    if not isinstance(site_env, Mapping):
        problems.append(f"mlperf_site_env must be a mapping of variable names to values, "
                        f"got {type(site_env).__name__}")
        site_env = {}
    for key, value in site_env.items():
        if _unfilled(value):
            problems.append(f"mlperf_site_env.{key} is not set: fill it in the inventory "
                            f"(it is {value!r})")
        elif not isinstance(value, (str, int, float)) or isinstance(value, bool) \
                or UNSAFE_VALUE_RE.search(str(value)):
            problems.append(f"mlperf_site_env.{key} must be a plain string without quotes, "
                            f"backslashes or newlines, got {value!r}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(key)):
            problems.append(f"mlperf_site_env: {key!r} is not a valid environment variable name")

    nodes = list(groups.get("mlperf_nodes") or [])
    if not nodes:
        problems.append("inventory group mlperf_nodes is empty: list the compute nodes in it")

    bench_name, system = site.get("mlperf_benchmark"), site.get("mlperf_system")
    if _unfilled(bench_name) or _unfilled(system):
        return problems
    try:
        catalog = catalog or load_catalog()
        bench = catalog.benchmark(str(bench_name))
        plat = bench.platform(str(system))
    except CatalogError as exc:
        problems.append(f"mlperf_benchmark/mlperf_system: {exc}")
        return problems

    if plat.launch == "local" and runtime not in (None, "none"):
        problems.append(f"mlperf_container_runtime must be none for {bench.name} (it has no "
                        f"container image), got {runtime!r}")
    if plat.launch != "local" and runtime == "none":
        problems.append(f"mlperf_container_runtime none cannot run {bench.name}: it runs in "
                        f"{bench.image}; use docker or podman")
    if plat.launch == "slurm":
        if _unfilled(site.get("mlperf_slurm_partition")):
            problems.append(f"mlperf_slurm_partition is not set: {bench.name} on {plat.name} is "
                            f"launched with sbatch")
        if not groups.get("mlperf_submit"):
            problems.append("inventory group mlperf_submit is empty: name the Slurm submit host")
        if site.get("mlperf_shared_storage") is not True:
            problems.append(f"mlperf_shared_storage must be true for {bench.name} on {plat.name}: "
                            "LOGDIR and DATADIR must be on storage every node shares")
        if nodes and len(nodes) != plat.nodes:
            problems.append(f"mlperf_nodes has {len(nodes)} hosts but {plat.name} runs on "
                            f"{plat.nodes} nodes (config name NNxGGxMM)")
    if isinstance(nexp, int) and not isinstance(nexp, bool) and 0 < nexp < bench.runs \
            and not site.get("mlperf_allow_partial", False):
        problems.append(f"mlperf_nexp is {nexp} but a score needs {bench.runs} runs: set "
                        f"mlperf_allow_partial: true for a smoke run (scored, marked not valid)")
    return problems


def validate(site: Mapping[str, Any], groups: Mapping[str, list] | None,
             catalog: Catalog) -> dict[str, Any]:
    """``{"problems": [...], "spec": <the resolved benchmark> or None}`` for one host's values.

    The spec is resolved only when the site values have no problem, so a bad inventory is
    reported as its list of problems rather than as the first error resolving meets.
    """
    problems = site_problems(site, groups, catalog)
    spec = None
    if not problems:
        try:
            spec = catalog.resolve(str(site["mlperf_benchmark"]), str(site["mlperf_system"]),
                                   dict(site.get("mlperf_site_env") or {}))
        except CatalogError as exc:
            problems.append(str(exc))
    return {"problems": problems, "spec": spec}


#: The site values of a host that validation reads, with the value an unset one stands for.
SITE_VARS: dict[str, Any] = {
    "mlperf_benchmark": None, "mlperf_system": None, "mlperf_nexp": None,
    "mlperf_container_runtime": None, "mlperf_datadir": None, "mlperf_logdir": None,
    "mlperf_workdir": None, "mlperf_results_dir": None, "mlperf_shared_storage": None,
    "mlperf_provision": None, "mlperf_site_env": {}, "mlperf_allow_partial": False,
    "mlperf_slurm_partition": None, "tunables_mode": "off", "rocm_version": None,
    "rocm_amdgpu_version": None, "preflight_min_rocm_version": None,
}


def validate_hosts(sites: Mapping[str, Mapping[str, Any]], groups: Mapping[str, list] | None,
                   catalog: Catalog) -> dict[str, Any]:
    """``{"problems": [...], "specs": {host: spec}}`` for every host at once.

    ``sites``: host -> its site values (``SITE_VARS``, plus the run's tags). Hosts with the same
    values (the usual case: group_vars) are checked and resolved once. ``specs`` is empty when
    there is any problem.
    """
    results: dict[str, dict] = {}
    cache: dict[str, dict] = {}
    for host, site in sites.items():
        key = repr(sorted((k, repr(v)) for k, v in site.items()))
        if key not in cache:
            cache[key] = validate(site, groups, catalog)
        results[host] = cache[key]
    problems = merge_host_problems({host: r["problems"] for host, r in results.items()})
    specs = {} if problems else {host: r["spec"] for host, r in results.items()}
    return {"problems": problems, "specs": specs}


def merge_host_problems(problems_by_host: Mapping[str, list[str] | None]) -> list[str]:
    """One list of the problems of several hosts, in order of first appearance.

    A problem every host has is said once, as it is; one that only some hosts have names them:
    ``"mlperf_datadir is not set: ... (on node05, node06)"``.
    """
    hosts_of: dict[str, list[str]] = {}
    for host, problems in problems_by_host.items():
        for problem in problems or []:
            hosts_of.setdefault(problem, []).append(host)
    every = len(problems_by_host)
    return [problem if len(hosts) == every else f"{problem} (on {', '.join(hosts)})"
            for problem, hosts in hosts_of.items()]
