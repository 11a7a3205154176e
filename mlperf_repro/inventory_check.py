"""Validation of an inventory's site values, before any host is changed.

Each problem is one sentence naming the variable and what was expected. Used by the
``validate`` role (through the ``mlperf_validate_hosts`` filter), the CLI and the tests.

What is checked: the catalog names; every ``mlperf_*`` or role-prefixed variable a host has is
one the roles declare (meta/argument_specs.yml) or SITE_VARS/EXTRA_VARS (else the closest known
name is suggested); declared variables have their type (a boolean is never a string), numbers
their range (NUMBER_LIMITS), paths are absolute with no ``..`` or control character; the run
count is the benchmark's unless ``mlperf_allow_partial: true``; the campaign name is a plain
name; site values (``mlperf_site_env``) never name what the launch sets (LAUNCH_OWNED) and are
integers where a config computes with them; the groups the selected stages need exist; no node
is in mlperf_nodes twice (by name or by address). A secret's value is never shown.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from .catalog import (Catalog, CatalogError, ENV_NAME_RE, INTEGER_RE, RUNTIMES, UNSAFE_VALUE_RE,
                      load_catalog, type_name)
from .stages import is_selected, known_tags, selected_tags, stage_tags as all_stage_tags

FILL_IN = "FILL_IN"
TUNABLE_MODES = ("apply", "check", "reset", "off")
#: tunables_mode when an inventory does not set it: the tunables stage, preflight and the run
#: stage all read the resolved mode (mlperf_spec.tunables_mode), never a default of their own.
#: Off: the node's kernel and CPU settings change only when the inventory asks (AMD's guide
#: applies them: the platform inventories set apply).
TUNABLES_DEFAULT = "off"
PATH_VARS = ("mlperf_datadir", "mlperf_logdir", "mlperf_workdir")
BOOL_VARS = ("mlperf_shared_storage", "mlperf_provision", "mlperf_allow_partial",
             "mlperf_logdir_world_writable")
#: A directory mode as the file module and chmod take it: 3 or 4 octal digits, quoted.
MODE_RE = re.compile(r"^0?[0-7]{3,4}$")
#: A group name (or a numeric gid) as groupadd accepts it.
GROUP_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|\d{1,10})$")
#: Where the roles are (their meta/argument_specs.yml declare every role variable).
ROLES_DIR = Path(__file__).resolve().parent.parent / "roles"
#: Site variables that no role declares: read by validation, the inventories or set by a stage.
EXTRA_VARS = {
    # set by the stages themselves (facts), never by an inventory
    "mlperf_spec", "mlperf_campaign_id", "mlperf_campaign_dir", "mlperf_scored_sets",
    "mlperf_image", "mlperf_image_digest", "mlperf_result_set",
}
#: Variables the launch itself sets: a site value (mlperf_site_env) naming one is refused.
LAUNCH_OWNED = {
    "NEXP": "mlperf_nexp", "SEED": "the campaign runner (one seed per run)",
    "ROOT_SEED": "the campaign runner", "DGXSYSTEM": "mlperf_system",
    "DGXNNODES": "mlperf_system (the config name)", "DGXNGPU": "mlperf_system (the config name)",
    "CONFIG_FILENAME": "the config's own name", "MLLOG_CONFIG_FILENAME": "the config's own name",
    "PATH": "the node", "PYTHON": "campaign_python", "DATADIR": "mlperf_datadir",
    "LOGDIR": "mlperf_logdir", "CODEDIR": "the render stage", "CONT": "the catalog's image",
    "MODEL": "mlperf_modeldir", "MODELDIR": "mlperf_modeldir",
    "HF_TOKEN": "campaign_hf_token (a secret never goes into a config file)",
    "MLLOG_SUBMISSION_ORG": "the catalog (the MLLOG identity of the system)",
    "MLLOG_SUBMISSION_PLATFORM": "the catalog (the MLLOG identity of the system)",
    "MLLOG_SUBMISSION_BENCHMARK": "the catalog (the MLLOG identity of the system)",
    "MLLOG_SUBMISSION_DIVISION": "the catalog (the MLLOG identity of the system)",
    "MLLOG_SUBMISSION_STATUS": "the catalog (the MLLOG identity of the system)",
    "MLPERF_SUBMISSION_ORG": "the catalog (the MLLOG identity of the system)",
    "MLPERF_SUBMISSION_PLATFORM": "the catalog (the MLLOG identity of the system)",
    "MLPERF_SUBMISSION_BENCHMARK": "the catalog (the MLLOG identity of the system)",
}
#: Bounds of numeric role variables: (least, most). Others: at least 0, at most MAX_NUMBER.
NUMBER_LIMITS = {
    "mlperf_nexp": (1, 1000), "render_slurm_nexp": (1, 1000),
    "campaign_poll_seconds": (1, 86400), "slurm_job_poll_seconds": (1, 86400),
    "campaign_timeout_hours": (0.01, 8760), "slurm_job_timeout_hours": (0.01, 8760),
    "data_workers": (1, 1024), "data_retries": (0, 100), "image_pull_retries": (0, 100),
    "image_pull_delay": (0, 3600), "shared_storage_marker_retries": (0, 100),
    "shared_storage_marker_delay": (0, 3600), "rocm_reboot_timeout": (1, 86400),
    "preflight_expected_gpu_count": (1, 64), "data_convert_space_factor": (0.01, 100),
    "preflight_logdir_need_gb": (0, 10 ** 6), "preflight_workdir_need_gb": (0, 10 ** 6),
    "data_script_min_free_gb": (0, 10 ** 6), "slurm_job_tail_lines": (0, 10 ** 5),
}
MAX_NUMBER = 10 ** 6
#: Path variables that may be relative (resolved by Ansible against a role's templates).
RELATIVE_OK = {"slurm_job_template"}
#: Variables holding secrets: a message names them but never shows their value.
SECRET_RE = re.compile(r"(token|secret|password|passwd|extra_env)", re.IGNORECASE)
PARTITION_RE = re.compile(r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$")
SLURM_TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")
CAMPAIGN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
VERSION_VARS = ("rocm_version", "rocm_amdgpu_version", "preflight_min_rocm_version")
VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}$")
REQUIRED = ("mlperf_benchmark", "mlperf_system", "mlperf_nexp", "mlperf_container_runtime",
            *PATH_VARS, "mlperf_results_dir", "mlperf_shared_storage", "mlperf_provision")


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
    return pattern if is_selected(stage_tags, run_tags) else NO_HOSTS


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
    problems += short_secret_problems(site)
    for option in ("ansible_run_tags", "ansible_skip_tags"):
        unknown = sorted(set(site.get(option) or []) - set(known_tags()))
        if unknown:
            flag = "--tags" if option == "ansible_run_tags" else "--skip-tags"
            problems.append(f"unknown tag(s) {', '.join(unknown)} in {flag}: "
                            f"the stages are {', '.join(all_stage_tags())}")
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
            problems.append(_bool_problem(name, value))
    nexp = _integer(site.get("mlperf_nexp"))
    if "mlperf_nexp" in site and not _unfilled(site.get("mlperf_nexp")):
        if nexp is None or nexp < 1:
            problems.append(f"mlperf_nexp must be a positive integer (10 for a submission), "
                            f"got {site.get('mlperf_nexp')!r}")
        elif nexp > NUMBER_LIMITS["mlperf_nexp"][1]:
            problems.append(f"mlperf_nexp must be at most {NUMBER_LIMITS['mlperf_nexp'][1]} "
                            f"(10 for a submission), got {nexp}")
    runtime = site.get("mlperf_container_runtime")
    if runtime is not None and not _unfilled(runtime) and runtime not in RUNTIMES:
        problems.append(f"mlperf_container_runtime must be one of {', '.join(RUNTIMES)}, "
                        f"got {runtime!r}")
    for name in (*PATH_VARS, "mlperf_results_dir"):
        value = site.get(name)
        if not _unfilled(value):
            problems.extend(_path_problems(name, value))
    mode = site.get("tunables_mode", TUNABLES_DEFAULT)
    if mode not in TUNABLE_MODES:
        problems.append(f"tunables_mode must be one of {', '.join(TUNABLE_MODES)}, got {mode!r}")
    campaign = site.get("mlperf_campaign")
    if campaign not in (None, "") and (not isinstance(campaign, str) or not CAMPAIGN_RE.match(campaign)
                                       or campaign in (".", "..")):
        problems.append(f"mlperf_campaign must be a plain name (letters, digits, '.', '_', '-'; "
                        f"a directory under the log directory, e.g. 20260105T101500Z), got {campaign!r}")
    problems.extend(_site_env_problems(site.get("mlperf_site_env"), "mlperf_site_env"))
    problems.extend(logdir_mode_problems(site))
    problems.extend(declared_problems(site))

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
        elif not PARTITION_RE.match(str(site.get("mlperf_slurm_partition"))):
            problems.append(f"mlperf_slurm_partition must be a Slurm partition name (letters, "
                            f"digits, '_', '-', '.'; several comma-separated), got "
                            f"{site.get('mlperf_slurm_partition')!r}")
        if not groups.get("mlperf_submit"):
            problems.append("inventory group mlperf_submit is empty: name the Slurm submit host")
        if site.get("mlperf_shared_storage") is not True:
            problems.append(f"mlperf_shared_storage must be true for {bench.name} on {plat.name}: "
                            "LOGDIR and DATADIR must be on storage every node shares")
        if nodes and len(nodes) != plat.nodes:
            problems.append(f"mlperf_nodes has {len(nodes)} hosts but {plat.name} runs on "
                            f"{plat.nodes} nodes (config name NNxGGxMM)")
    if nexp is not None and 0 < nexp <= NUMBER_LIMITS["mlperf_nexp"][1] and nexp != bench.runs \
            and site.get("mlperf_allow_partial", False) is not True:
        problems.append(f"mlperf_nexp is {nexp} but a score needs exactly {bench.runs} runs: set "
                        f"mlperf_allow_partial: true for another count (scored, marked not valid)")
    for owner in ("mlperf_site_env", "campaign_extra_env"):
        env = site.get(owner)
        if isinstance(env, Mapping):
            for key in sorted(set(map(str, env)) & plat.arithmetic_names):
                value = env.get(key)
                if not _unfilled(value) and (isinstance(value, bool)
                                             or not INTEGER_RE.match(str(value))):
                    problems.append(f"{owner}.{key} must be an integer: {plat.name}'s config "
                                    f"computes with it in $((...)), got {_shown(owner, value)}")
    if "package" in selected_stages(site) and _unfilled(site.get("package_org")):
        problems.append("package_org is not set: the package stage names the submitting "
                        "organization (the tree's top directory), e.g. -e package_org=ACME")
    if "data" in selected_stages(site) and not groups.get("mlperf_staging"):
        problems.append("inventory group mlperf_staging is empty: the data stage prepares the "
                        "dataset on its first host; name one (usually the first node)")
    return problems


def logdir_mode_problems(site: Mapping[str, Any]) -> list[str]:
    """The campaign directories' mode (``mlperf_logdir_mode``) and group (``mlperf_logdir_group``).

    A mode is a quoted octal string (unquoted, YAML reads ``0770`` as the number 504); the owner
    (the runner, the job) can read, write and enter; never world-writable unless
    ``mlperf_logdir_world_writable: true`` says so (AMD's guide runs ``chmod 777``, usually for a
    root-squashed NFS: README, "LOGDIR on root-squashed NFS").
    """
    problems: list[str] = []
    mode = site.get("mlperf_logdir_mode")
    if mode not in (None, ""):
        if not isinstance(mode, str) or not MODE_RE.match(mode):
            shown = f"{mode!r} ({type_name(mode)})" if not isinstance(mode, str) else repr(mode)
            problems.append(f"mlperf_logdir_mode must be an octal mode in quotes, like \"2770\" "
                            f"(unquoted, YAML reads 0770 as the number 504), got {shown}")
        else:
            bits = int(mode, 8)
            if bits & 0o4000:
                problems.append(f"mlperf_logdir_mode {mode} sets setuid, which means nothing on a "
                                f"directory: use e.g. \"2770\" (setgid keeps the group)")
            elif bits & 0o700 != 0o700:
                problems.append(f"mlperf_logdir_mode {mode} does not let the owner read, write and "
                                f"enter the campaign directory (the runner writes its logs there): "
                                f"use e.g. \"2770\"")
            elif bits & 0o002 and site.get("mlperf_logdir_world_writable") is not True:
                problems.append(
                    f"mlperf_logdir_mode {mode} makes every campaign directory world-writable: "
                    f"anyone on the node could change or plant result logs. AMD's guide runs "
                    f"chmod 777 (usually because root in the containers is squashed to nobody on "
                    f"an NFS server); prefer mlperf_logdir_group (a group the job and the "
                    f"squashed user share) with \"2770\". To keep {mode} anyway, set "
                    f"mlperf_logdir_world_writable: true")
    group = site.get("mlperf_logdir_group")
    if group not in (None, ""):
        if isinstance(group, bool) or not isinstance(group, (str, int)) \
                or not GROUP_RE.match(str(group)):
            problems.append(f"mlperf_logdir_group must be a group name or a numeric gid (e.g. "
                            f"mlperf or 1000), got {group!r}")
    return problems


def selected_stages(site: Mapping[str, Any]) -> set[str]:
    """The stages this run's --tags/--skip-tags select."""
    return selected_tags(site.get("ansible_run_tags"), site.get("ansible_skip_tags"))


def _integer(value: Any) -> int | None:
    """An integer value (a digit string from ``-e name=3`` too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and INTEGER_RE.match(value.strip()):
        return int(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _bool_problem(name: str, value: Any) -> str:
    return (f"{name} must be a boolean (true/false without quotes; on the command line "
            f"-e '{{\"{name}\": true}}'), got {value!r} ({type_name(value)})")


def _path_problems(name: str, value: Any, relative_ok: bool = False) -> list[str]:
    if not isinstance(value, str):
        return [f"{name} must be a path (a string), got {value!r} ({type_name(value)})"]
    problems = []
    if not relative_ok and not value.startswith("/"):
        problems.append(f"{name} must be an absolute path (a relative one would be resolved "
                        f"against playbooks/), got {value!r}")
    if ".." in value.split("/"):
        problems.append(f"{name} must not contain a '..' component, got {value!r}")
    if CONTROL_RE.search(value):
        problems.append(f"{name} must not contain control characters (newline, tab, ...), "
                        f"got {value!r}")
    return problems


def _site_env_problems(site_env: Any, name: str) -> list[str]:
    problems: list[str] = []
    if site_env is None:
        return problems
    if not isinstance(site_env, Mapping):
        return [f"{name} must be a mapping of variable names to values, got {type_name(site_env)}"]
    for key, value in site_env.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            problems.append(f"{name}: {key!r} is not a valid environment variable name")
            continue
        if name == "mlperf_site_env" and key in LAUNCH_OWNED:
            problems.append(f"{name}.{key} cannot be set: the launch sets {key} itself; it comes from "
                            f"{LAUNCH_OWNED[key]}")
        elif _unfilled(value) and name == "mlperf_site_env":
            problems.append(f"{name}.{key} is not set: fill it in the inventory "
                            f"(it is {value!r})")
        elif isinstance(value, bool) or not isinstance(value, (str, int, float)):
            problems.append(f"{name}.{key} must be a string or a number, got {_shown(name, value)} "
                            f"({type_name(value)})")
        elif UNSAFE_VALUE_RE.search(str(value)):
            problems.append(f"{name}.{key} must not contain a NUL character")
    return problems


@functools.lru_cache(maxsize=8)
def declared_options(roles_dir: str | None = None) -> dict[str, dict]:
    """Every role variable the roles declare (meta/argument_specs.yml): name -> its option spec."""
    options: dict[str, dict] = {}
    for spec_file in sorted(Path(roles_dir or ROLES_DIR).glob("*/meta/argument_specs.yml")):
        data = yaml.safe_load(spec_file.read_text(encoding="utf-8")) or {}
        for entry in (data.get("argument_specs") or {}).values():
            for name, option in ((entry or {}).get("options") or {}).items():
                options.setdefault(str(name), dict(option or {}))
    return options


@functools.lru_cache(maxsize=8)
def role_prefixes(roles_dir: str | None = None) -> tuple[str, ...]:
    """``mlperf_`` and each role's own prefix (``campaign_``, ``slurm_job_``, ...)."""
    roles = sorted(p.name for p in Path(roles_dir or ROLES_DIR).iterdir()
                   if (p / "meta" / "argument_specs.yml").is_file()) \
        if Path(roles_dir or ROLES_DIR).is_dir() else []
    return ("mlperf_", *(f"{role}_" for role in roles))


def known_variables(roles_dir: str | None = None) -> set[str]:
    return set(declared_options(roles_dir)) | set(SITE_VARS) | EXTRA_VARS


def is_project_variable(name: str, roles_dir: str | None = None) -> bool:
    """A name validation must know: ``mlperf_*`` or a role's prefix."""
    return name.startswith(role_prefixes(roles_dir))


def declared_problems(site: Mapping[str, Any], roles_dir: str | None = None) -> list[str]:
    """Unknown project variables (with the closest known name), and declared role variables
    of the wrong type or out of range, path variables that are not absolute paths."""
    problems: list[str] = []
    known = known_variables(roles_dir)
    options = declared_options(roles_dir)
    for name in sorted(site):
        if not isinstance(name, str) or not is_project_variable(name, roles_dir):
            continue
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f": did you mean {close[0]}?" if close else \
                ": no stage reads it (see roles/*/meta/argument_specs.yml)"
            problems.append(f"{name} is not a variable of mlperf-repro{hint}")
            continue
        if name in ("mlperf_modeldir", "mlperf_local_root"):
            if site[name] not in (None, ""):
                problems.extend(_path_problems(name, site[name]))
            continue
        if name == "mlperf_slurm_time":
            if site[name] is not None and not SLURM_TIME_RE.match(str(site[name])):
                problems.append(f"mlperf_slurm_time must be a Slurm time limit like 60:00:00 or "
                                f"2-00:00:00, got {site[name]!r}")
            continue
        if name in SITE_VARS or name in EXTRA_VARS or name not in options \
                or options[name].get("type") == "raw" and name not in NUMBER_LIMITS:
            continue
        problems.extend(_option_problems(name, site[name], options[name]))
    return problems


def _shown(name: str, value: Any) -> str:
    """``value`` as a message shows it: ``repr``, or nothing of it for a secret."""
    return "a value not shown (a secret)" if SECRET_RE.search(name) else repr(value)


def _option_problems(name: str, value: Any, option: Mapping[str, Any]) -> list[str]:
    kind = option.get("type", "str")
    if value is None:
        return []
    if kind == "bool":
        return [] if isinstance(value, bool) else [_bool_problem(name, value)]
    if kind in ("int", "float") or (kind == "raw" and name in NUMBER_LIMITS):
        number = _integer(value) if kind == "int" else _number(value)
        if kind == "raw" and value == "":
            return []
        what = "an integer" if kind == "int" else "a number"
        low, high = NUMBER_LIMITS.get(name, (0, MAX_NUMBER))
        if number is None:
            return [f"{name} must be {what}, got {_shown(name, value)} ({type_name(value)})"]
        if not low <= number <= high:
            return [f"{name} must be {what} from {low} to {high}, got {_shown(name, value)}"]
        return []
    if kind == "list":
        if not isinstance(value, list):
            return [f"{name} must be a list, got {_shown(name, value)} ({type_name(value)})"]
        # items go into job.sh's #SBATCH lines and command lines: a newline would start a command
        bad = [i for i, item in enumerate(value) if isinstance(item, str) and CONTROL_RE.search(item)]
        return [f"{name}[{i}] must not contain control characters (newline, tab, ...), got "
                f"{_shown(name, value[i])}" for i in bad]
    if kind == "dict":
        if not isinstance(value, Mapping):
            return [f"{name} must be a mapping, got {_shown(name, value)} ({type_name(value)})"]
        if name == "campaign_extra_env":
            return _site_env_problems(value, name)
        return []
    if kind == "path" or re.search(r"_(dir|path|root|file|template|script|keyring|tarball)$", name):
        if value == "":
            return []
        return _path_problems(name, value, relative_ok=name in RELATIVE_OK)
    if name in ("render_slurm_time", "slurm_job_time") and not SLURM_TIME_RE.match(str(value)):
        return [f"{name} must be a Slurm time limit like 60:00:00 or 2-00:00:00, got {value!r}"]
    if kind == "str":
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return [f"{name} must be a string, got {_shown(name, value)} ({type_name(value)})"]
        if "choices" in option and value not in option["choices"]:
            return [f"{name} must be one of {', '.join(map(str, option['choices']))}, got {_shown(name, value)}"]
        if CONTROL_RE.search(str(value)):
            return [f"{name} must not contain control characters (newline, tab, ...), got {_shown(name, value)}"]
    return []


def node_address(connection: Any, host: Any, port: Any, name: str, logdir: Any = None) -> tuple:
    """What identifies the machine an inventory name reaches: two names with one address are
    one node (one campaign directory, reported twice)."""
    if str(connection or "ssh") == "local":
        return ("local", str(logdir or ""))
    address = str(host or name).strip().lower().rstrip(".")
    if address == "localhost":
        address = "127.0.0.1"
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        pass
    try:
        port = int(port) if port not in (None, "") else 22
    except (TypeError, ValueError):
        port = 22
    return (address, port)


def duplicate_node_problems(groups: Mapping[str, list], addresses: Mapping[str, tuple]) -> list[str]:
    """Problems for mlperf_nodes naming one machine twice (one name twice, or two names)."""
    problems = []
    nodes = list(groups.get("mlperf_nodes") or [])
    for host in dict.fromkeys(nodes):
        if nodes.count(host) > 1:
            problems.append(f"inventory group mlperf_nodes lists {host} {nodes.count(host)} times: "
                            f"list each node once")
    seen: dict[Any, str] = {}
    for host in dict.fromkeys(nodes):
        key = addresses.get(host)
        if key is None:
            continue
        if key in seen:
            where = ("this machine (local connection) with one mlperf_logdir" if key[0] == "local"
                     else f"{key[0]} port {key[1]}")
            problems.append(f"inventory group mlperf_nodes names one node twice: {seen[key]} and "
                            f"{host} are both {where} (one campaign directory, reported twice); "
                            f"list each node once")
        else:
            seen[key] = host
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
        else:
            spec.update(site_spec(site))
    return {"problems": problems, "spec": spec}


def site_spec(site: Mapping[str, Any]) -> dict[str, Any]:
    """The values every stage derives from a host's (valid) site values, resolved once here and
    read by the roles from ``mlperf_spec``: the run count as an integer, the container runtime,
    the tunables mode, where the benchmark code goes on a node (``code_dir``), the directory
    of this benchmark/system's campaigns on a node (``campaign_root``: LOGDIR/<benchmark>/<system>)
    and on the controller (``results_root``: mlperf_results_dir/<benchmark>/<system>)."""
    bench, system = str(site["mlperf_benchmark"]), str(site["mlperf_system"])
    below = f"{bench}/{system}"
    return {
        "nexp": _integer(site["mlperf_nexp"]),
        "runtime": str(site["mlperf_container_runtime"]),
        "tunables_mode": str(site.get("tunables_mode") or TUNABLES_DEFAULT),
        "code_dir": f"{site['mlperf_workdir']}/code/{bench}",
        "campaign_root": f"{site['mlperf_logdir']}/{below}",
        "results_root": f"{site['mlperf_results_dir']}/{below}",
    }


#: The site values of a host that validation reads, with the value an unset one stands for.
SITE_VARS: dict[str, Any] = {
    "mlperf_benchmark": None, "mlperf_system": None, "mlperf_nexp": None,
    "mlperf_container_runtime": None, "mlperf_datadir": None, "mlperf_logdir": None,
    "mlperf_workdir": None, "mlperf_results_dir": None, "mlperf_shared_storage": None,
    "mlperf_provision": None, "mlperf_site_env": {}, "mlperf_allow_partial": False,
    "mlperf_slurm_partition": None, "tunables_mode": TUNABLES_DEFAULT, "rocm_version": None,
    "rocm_amdgpu_version": None, "preflight_min_rocm_version": None, "mlperf_campaign": None,
}


#: Fewer characters than any real token has (HF tokens are 37): Ansible masks a secret's value
#: wherever it appears in output, so a short one ("x") garbles every message of the run.
MIN_SECRET_LENGTH = 8
#: Secrets a run takes from the controller's environment when the inventory does not set them.
SECRET_ENVIRONMENT = ("HF_TOKEN", "CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET")


def short_secret_problems(site: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """A problem for each secret too short to be one, naming it, never showing its value:
    variables named like secrets (``campaign_hf_token``, ...), every value of a ``*secret_env``
    mapping, and the controller's ``HF_TOKEN``/``CF_ACCESS_*`` environment."""
    import os
    found: list[str] = []
    for name, value in site.items():
        if not isinstance(name, str) or not SECRET_RE.search(name) or name.endswith("extra_env"):
            continue
        items = value.items() if isinstance(value, Mapping) else [(None, value)]
        for key, item in items:
            if isinstance(item, str) and 0 < len(item.strip()) < MIN_SECRET_LENGTH:
                found.append(name if key is None else f"{name}.{key}")
    environ = os.environ if environ is None else environ
    found += [f"the environment's {name}" for name in SECRET_ENVIRONMENT
              if 0 < len((environ.get(name) or "").strip()) < MIN_SECRET_LENGTH]
    return [f"{name} is shorter than {MIN_SECRET_LENGTH} characters: too short to be a secret "
            "(its value would be masked wherever it appears, garbling every message); check it"
            for name in found]


def validate_hosts(sites: Mapping[str, Mapping[str, Any]], groups: Mapping[str, list] | None,
                   catalog: Catalog, addresses: Mapping[str, tuple] | None = None) -> dict[str, Any]:
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
    problems += duplicate_node_problems(dict(groups or {}), dict(addresses or {}))
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
