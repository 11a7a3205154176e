"""Validation of an inventory's site values, before any host is changed.

Each problem is one sentence naming the variable and what was expected. Used by the
``validate`` role (through the ``mlperf_site_problems`` filter), the CLI and the tests.
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
