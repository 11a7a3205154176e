"""Bad input, caught before any host is changed, with a message naming what and what was expected.

One table a reader can scan: (the bad input, the variable the message must name, words it must
contain). Every row runs twice: through ``mlperf_repro.inventory_check`` / the catalog loader (fast, exact)
and through the real thing: ``ansible-playbook site.yml`` on an inventory that holds the bad
value, which must stop with that message and with no task changed and nothing written.

* INVENTORY rows are per-host values: all of them go into one inventory, one host per row
  (``caseNNN``), so one playbook run checks them all: each message must name its host.
* GROUPS rows are about the inventory as a whole (its groups, its node addresses, --tags):
  one playbook run each.
* CATALOG rows are catalog entries: one playbook run each, with ``validate_catalog_path``.
* CLI rows go through `mlperf-repro`.
"""

import copy
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import DEFAULT_CATALOG, CatalogError, load_catalog, parse_catalog
from mlperf_repro.cli import main as cli
from mlperf_repro.inventory_check import node_address, site_problems, validate_hosts
from tests.infra.ansible_output import changed_tasks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# The good values: the smoke benchmark on this machine (what inventory/local runs).
GOOD = {
    "mlperf_benchmark": "smoke", "mlperf_system": "CPU_1x1x1", "mlperf_nexp": 10,
    "mlperf_container_runtime": "none", "mlperf_datadir": "/srv/mlperf/data",
    "mlperf_logdir": "/srv/mlperf/logs", "mlperf_workdir": "/srv/mlperf/work",
    "mlperf_results_dir": "/srv/mlperf/results", "mlperf_shared_storage": False,
    "mlperf_provision": False, "mlperf_site_env": {}, "tunables_mode": "off",
}
GROUPS = {"mlperf_nodes": ["n1"], "mlperf_staging": ["n1"]}
LLAMA = {"mlperf_benchmark": "llama31_8b", "mlperf_system": "MI355X_1x8x1",
         "mlperf_container_runtime": "docker"}
FLUX = {"mlperf_benchmark": "flux1", "mlperf_system": "MI325X_08x08x32",
        "mlperf_container_runtime": "docker", "mlperf_shared_storage": True,
        "mlperf_slurm_partition": "gpu"}


def env(**values):
    return {"mlperf_site_env": values}


INVENTORY = [
    # (change to the good values, the variable named, words the message must contain)
    # -- catalog names
    ({"mlperf_benchmark": "bert"}, "mlperf_benchmark", "unknown benchmark 'bert'"),
    (dict(LLAMA, mlperf_system="MI325X_08x08x32"), "mlperf_system",
     "'llama31_8b' has no platform 'MI325X_08x08x32'"),
    (dict(LLAMA, mlperf_benchmark="llama2_70b_lora", mlperf_system="MI300X_1x8x1"), "mlperf_system",
     "has no platform 'MI300X_1x8x1': AMD published MI350X_1x8x1, MI355X_1x8x1"),
    # -- run counts
    ({"mlperf_nexp": 0}, "mlperf_nexp", "must be a positive integer"),
    ({"mlperf_nexp": "ten"}, "mlperf_nexp", "must be a positive integer"),
    ({"mlperf_nexp": -3}, "mlperf_nexp", "must be a positive integer"),
    ({"mlperf_nexp": 2.5}, "mlperf_nexp", "must be a positive integer"),
    ({"mlperf_nexp": True}, "mlperf_nexp", "must be a positive integer"),
    ({"mlperf_nexp": 1}, "mlperf_nexp", "is 1 but a score needs exactly 10 runs"),
    ({"mlperf_nexp": 12}, "mlperf_nexp", "is 12 but a score needs exactly 10 runs"),
    ({"mlperf_nexp": 100000, "mlperf_allow_partial": True}, "mlperf_nexp", "must be at most 1000"),
    ({"mlperf_nexp": 3, "mlperf_allow_partial": "true"}, "mlperf_allow_partial", "must be a boolean"),
    # -- unset values
    ({"mlperf_datadir": "FILL_IN"}, "mlperf_datadir", "is not set"),
    ({"mlperf_datadir": None}, "mlperf_datadir", "is not set"),
    ({"mlperf_workdir": "  "}, "mlperf_workdir", "is not set"),
    # -- paths
    ({"mlperf_logdir": "results"}, "mlperf_logdir", "must be an absolute path"),
    ({"mlperf_workdir": "../work"}, "mlperf_workdir", "must be an absolute path"),
    ({"mlperf_results_dir": "results"}, "mlperf_results_dir", "must be an absolute path"),
    ({"mlperf_datadir": "/srv/../etc"}, "mlperf_datadir", "must not contain a '..' component"),
    ({"mlperf_results_dir": "/srv/r/../../x"}, "mlperf_results_dir", "'..' component"),
    ({"mlperf_logdir": "/srv/logs\nrm -rf /"}, "mlperf_logdir", "must not contain control characters"),
    ({"mlperf_workdir": "/srv/w\tx"}, "mlperf_workdir", "must not contain control characters"),
    ({"mlperf_datadir": 5}, "mlperf_datadir", "must be a path (a string), got 5 (integer)"),
    ({"mlperf_modeldir": "model"}, "mlperf_modeldir", "must be an absolute path"),
    # -- the campaign directories' mode and group (LOGDIR)
    ({"mlperf_logdir_mode": "0777"}, "mlperf_logdir_mode", "world-writable"),
    ({"mlperf_logdir_mode": "2777"}, "mlperf_logdir_mode", "set mlperf_logdir_world_writable: true"),
    ({"mlperf_logdir_mode": "0777", "mlperf_logdir_world_writable": "yes"},
     "mlperf_logdir_world_writable", "must be a boolean"),
    ({"mlperf_logdir_mode": 504}, "mlperf_logdir_mode", "an octal mode in quotes"),
    ({"mlperf_logdir_mode": "rwxrwx---"}, "mlperf_logdir_mode", "an octal mode in quotes"),
    ({"mlperf_logdir_mode": "2780"}, "mlperf_logdir_mode", "an octal mode in quotes"),
    ({"mlperf_logdir_mode": "0570"}, "mlperf_logdir_mode", "does not let the owner read, write"),
    ({"mlperf_logdir_mode": "4770"}, "mlperf_logdir_mode", "sets setuid"),
    ({"mlperf_logdir_group": "mlperf users"}, "mlperf_logdir_group", "a group name or a numeric gid"),
    ({"mlperf_logdir_group": "x;id"}, "mlperf_logdir_group", "a group name or a numeric gid"),
    ({"campaign_root": "campaigns"}, "campaign_root", "must be an absolute path"),
    ({"data_dir": "/data/../../etc"}, "data_dir", "'..' component"),
    ({"collect_dest_root": "rel/x"}, "collect_dest_root", "must be an absolute path"),
    ({"score_results_root": "/x\ty"}, "score_results_root", "control characters"),
    ({"render_code_dir": "code"}, "render_code_dir", "must be an absolute path"),
    ({"tunables_state_file": "state.json"}, "tunables_state_file", "must be an absolute path"),
    ({"campaign_runner_script": "bin/run.py"}, "campaign_runner_script", "must be an absolute path"),
    ({"slurm_job_root": ["/a"]}, "slurm_job_root", "must be a path (a string)"),
    # -- the campaign name (a directory under the log directory)
    ({"mlperf_campaign": "../x"}, "mlperf_campaign", "must be a plain name"),
    ({"mlperf_campaign": ".."}, "mlperf_campaign", "must be a plain name"),
    ({"mlperf_campaign": "a/b"}, "mlperf_campaign", "must be a plain name"),
    ({"mlperf_campaign": "/tmp/x"}, "mlperf_campaign", "must be a plain name"),
    # -- booleans given as strings
    ({"mlperf_shared_storage": "false"}, "mlperf_shared_storage", "must be a boolean"),
    ({"mlperf_provision": "yes"}, "mlperf_provision", "must be a boolean"),
    ({"data_refresh": "yes"}, "data_refresh", "must be a boolean"),
    ({"campaign_resume": "false"}, "campaign_resume", "must be a boolean"),
    ({"rocm_reboot": "no"}, "rocm_reboot", "must be a boolean"),
    ({"preflight_fail_on_problems": 1}, "preflight_fail_on_problems", "got 1 (integer)"),
    # -- choices and versions
    ({"mlperf_container_runtime": "lxc"}, "mlperf_container_runtime", "must be one of docker, podman, none"),
    (dict(LLAMA, mlperf_container_runtime="none"), "mlperf_container_runtime", "none cannot run llama31_8b"),
    ({"mlperf_container_runtime": "docker"}, "mlperf_container_runtime", "must be none for smoke"),
    ({"tunables_mode": "on"}, "tunables_mode", "must be one of apply, check, reset, off"),
    ({"rocm_version": "seven"}, "rocm_version", "must be a version like 7.2.2"),
    ({"preflight_min_rocm_version": "7.2.2-beta"}, "preflight_min_rocm_version", "must be a version"),
    # -- intervals, counts and sizes
    ({"campaign_poll_seconds": 0}, "campaign_poll_seconds", "must be an integer from 1 to 86400"),
    ({"campaign_poll_seconds": -5}, "campaign_poll_seconds", "must be an integer from 1 to 86400"),
    ({"slurm_job_poll_seconds": 0}, "slurm_job_poll_seconds", "from 1 to 86400"),
    ({"campaign_timeout_hours": 0}, "campaign_timeout_hours", "must be a number from"),
    ({"campaign_timeout_hours": 100000}, "campaign_timeout_hours", "must be a number from"),
    ({"data_workers": 0}, "data_workers", "must be an integer from 1 to 1024"),
    ({"data_workers": 100000}, "data_workers", "must be an integer from 1 to 1024"),
    ({"data_retries": -1}, "data_retries", "must be an integer from 0 to 100"),
    ({"image_pull_retries": "many"}, "image_pull_retries", "must be an integer, got 'many' (string)"),
    ({"preflight_logdir_need_gb": -1}, "preflight_logdir_need_gb", "must be a number from 0"),
    ({"preflight_expected_gpu_count": 0}, "preflight_expected_gpu_count", "from 1 to 64"),
    ({"rocm_reboot_timeout": 0}, "rocm_reboot_timeout", "from 1 to 86400"),
    ({"data_script_min_free_gb": -3}, "data_script_min_free_gb", "must be a number from 0"),
    # -- lists, mappings and strings that go into job.sh
    ({"mlperf_slurm_time": "forever"}, "mlperf_slurm_time", "must be a Slurm time limit like 60:00:00"),
    ({"slurm_job_time": "60:00:00\nsrun rm"}, "slurm_job_time", "must be a Slurm time limit"),
    ({"render_slurm_comment": "x\nrm -rf /"}, "render_slurm_comment", "control characters"),
    ({"slurm_job_partition": ["gpu"]}, "slurm_job_partition", "must be a string, got ['gpu'] (list)"),
    ({"render_slurm_extra_options": "--exclusive"}, "render_slurm_extra_options", "must be a list"),
    ({"collect_patterns": "*.txt"}, "collect_patterns", "must be a list"),
    ({"docker_daemon_config": "x"}, "docker_daemon_config", "must be a mapping, got 'x' (string)"),
    # -- names no stage declares
    ({"mlperf_nexpp": 3}, "mlperf_nexpp", "did you mean mlperf_nexp?"),
    ({"mlperf_datadirr": "/d"}, "mlperf_datadirr", "did you mean mlperf_datadir?"),
    ({"campaign_poll_second": 5}, "campaign_poll_second", "did you mean campaign_poll_seconds?"),
    ({"tunables_moed": "off"}, "tunables_moed", "did you mean tunables_mode?"),
    ({"slurm_job_tme": "1:00:00"}, "slurm_job_tme", "did you mean slurm_job_time?"),
    ({"mlperf_zzzzzz": 1}, "mlperf_zzzzzz", "is not a variable of mlperf-repro"),
    # -- site values (mlperf_site_env)
    (env(NCCL_IB_HCA="FILL_IN"), "mlperf_site_env.NCCL_IB_HCA", "is not set"),
    (env(**{"1X": "v"}), "mlperf_site_env", "'1X' is not a valid environment variable name"),
    ({"mlperf_site_env": ["eno0"]}, "mlperf_site_env", "must be a mapping of variable names to values, got list"),
    (env(X={"a": 1}), "mlperf_site_env.X", "must be a string or a number, got {'a': 1} (mapping)"),
    (env(X=True), "mlperf_site_env.X", "(boolean)"),
    (env(NEXP="1"), "mlperf_site_env.NEXP", "the launch sets NEXP itself"),
    (env(SEED="42"), "mlperf_site_env.SEED", "the launch sets SEED itself"),
    (env(DGXSYSTEM="MI355X_1x8x1"), "mlperf_site_env.DGXSYSTEM", "the launch sets DGXSYSTEM itself"),
    (env(PATH="/tmp/evil:/usr/bin"), "mlperf_site_env.PATH", "the launch sets PATH itself"),
    (env(MLLOG_SUBMISSION_ORG="me"), "mlperf_site_env.MLLOG_SUBMISSION_ORG", "MLLOG identity"),
    (env(MLLOG_SUBMISSION_PLATFORM="X"), "mlperf_site_env.MLLOG_SUBMISSION_PLATFORM", "MLLOG identity"),
    (env(MLPERF_SUBMISSION_PLATFORM="X"), "mlperf_site_env.MLPERF_SUBMISSION_PLATFORM", "MLLOG identity"),
    (env(LOGDIR="/elsewhere"), "mlperf_site_env.LOGDIR", "it comes from mlperf_logdir"),
    (env(DATADIR="/elsewhere"), "mlperf_site_env.DATADIR", "it comes from mlperf_datadir"),
    (env(HF_TOKEN="hf_secret"), "mlperf_site_env.HF_TOKEN", "campaign_hf_token"),
    (dict(LLAMA, **env(EVAL_SAMPLES_INTERVAL="a[$(touch /tmp/x)]")),
     "mlperf_site_env.EVAL_SAMPLES_INTERVAL", "must be an integer"),
    (dict(LLAMA, campaign_extra_env={"PRIMUS_GLOBAL_BATCH_SIZE": "x[$(id)]"}),
     "campaign_extra_env.PRIMUS_GLOBAL_BATCH_SIZE", "must be an integer"),
    ({"campaign_extra_env": ["A=1"]}, "campaign_extra_env", "must be a mapping"),
    ({"campaign_extra_env": {"TOKEN": {"v": "hf_nested_secret"}}}, "campaign_extra_env.TOKEN",
     "must be a string or a number, got a value not shown (a secret) (mapping)"),
    ({"campaign_hf_token": "hf_split\nsecret"}, "campaign_hf_token",
     "must not contain control characters (newline, tab, ...), got a value not shown (a secret)"),
    ({"data_cf_access_client_secret": ["cf_listed_secret"]}, "data_cf_access_client_secret",
     "must be a string, got a value not shown (a secret) (list)"),
    ({"campaign_extra_env": {"A-B": "1"}}, "campaign_extra_env", "'A-B' is not a valid environment variable name"),
    # -- Slurm benchmarks
    (dict(FLUX, mlperf_slurm_partition="FILL_IN"), "mlperf_slurm_partition", "is not set"),
    (dict(FLUX, mlperf_slurm_partition="gpu\nrm -rf /"), "mlperf_slurm_partition", "must be a Slurm partition name"),
    ({"render_slurm_extra_options": ["--exclusive", "--x\nsrun rm"]}, "render_slurm_extra_options[1]",
     "must not contain control characters"),
    (dict(FLUX, mlperf_shared_storage=False), "mlperf_shared_storage", "must be true for flux1"),
]

GROUPS_CASES = [
    # (host vars of each node, groups beyond mlperf_nodes, extra playbook args, variable, words)
    ({}, {"mlperf_nodes": []}, [], "mlperf_nodes", "inventory group mlperf_nodes is empty"),
    ({"n1": {}}, {"mlperf_staging": []}, [], "mlperf_staging", "inventory group mlperf_staging is empty"),
    ({f"n{i}": FLUX for i in range(8)}, {}, [], "mlperf_submit", "inventory group mlperf_submit is empty"),
    ({"n1": FLUX, "n2": FLUX}, {"mlperf_submit": ["n1"]}, [], "mlperf_nodes",
     "mlperf_nodes has 2 hosts but MI325X_08x08x32 runs on 8 nodes"),
    ({"n1": {"ansible_connection": "ssh", "ansible_host": "10.0.0.5"},
      "n2": {"ansible_connection": "ssh", "ansible_host": "10.0.0.5"}}, {}, [], "mlperf_nodes",
     "n1 and n2 are both 10.0.0.5 port 22"),
    ({"node1": {"ansible_connection": "ssh"}, "NODE1": {"ansible_connection": "ssh"}}, {}, [],
     "mlperf_nodes", "names one node twice: node1 and NODE1"),
    ({"a": {"ansible_connection": "ssh", "ansible_host": "localhost"},
      "b": {"ansible_connection": "ssh", "ansible_host": "127.0.0.1", "ansible_port": 22}}, {}, [],
     "mlperf_nodes", "a and b are both 127.0.0.1 port 22"),
    ({"a": {"mlperf_logdir": "/srv/shared/logs"}, "b": {"mlperf_logdir": "/srv/shared/logs"}}, {}, [],
     "mlperf_nodes", "this machine (local connection) with one mlperf_logdir"),
    ({"n1": {}}, {}, ["--tags", "scroe"], "--tags", "unknown tag(s) scroe in --tags"),
    ({"n1": {}}, {}, ["--skip-tags", "provison"], "--skip-tags", "unknown tag(s) provison in --skip-tags"),
]

MI355 = ("benchmarks", "llama31_8b", "platforms", "MI355X_1x8x1")
LLAMA_ENV = ("benchmarks", "llama31_8b", "common_env")
SMOKE_ENV = ("benchmarks", "smoke", "common_env")
CATALOG = [
    # (path into catalog.yml, bad value, expected words; the message names the path)
    (("benchmarks", "llama31_8b", "runs"), 0, "benchmarks.llama31_8b.runs: expected a positive integer"),
    (("benchmarks", "llama31_8b", "launch"), "k8s", "benchmarks.llama31_8b.launch: expected one of docker, slurm, local"),
    (("benchmarks", "flux1", "image"), "flux1", "benchmarks.flux1.image: expected repository:tag"),
    (("benchmarks", "flux1", "quality", "target"), "low", "flux1.quality.target: expected a non-negative number"),
    (("benchmarks", "smoke", "runs"), "ten", "benchmarks.smoke.runs: expected a positive integer"),
    (MI355 + ("env", "DGXSYSTEM"), "MI350X_1x8x1", "MI355X_1x8x1.env.DGXSYSTEM: expected 'MI355X_1x8x1'"),
    (MI355 + ("env", "NEXP"), "1", "env.NEXP: NEXP must not be in a config"),
    (MI355 + ("env", "FP4"), True, "env.FP4: expected a string (quote YAML booleans"),
    (MI355 + ("env", "X"), None, "env.X: expected a string"),
    (MI355 + ("reference", "submission_id"), "0036", "reference.submission_id: expected like 6.0-0036"),
    (("benchmarks", "smoke", "dataset", "recipe"), "torrent", "smoke.dataset.recipe: expected one of"),
    (("schema_version",), 2, "schema_version: expected 1"),
    (("ruleset",), "6.0", "ruleset: expected a version like 6.0.0"),
    (("benchmarks",), {}, "benchmarks: expected at least one benchmark"),
    # -- shell expressions: only declared ones expand, and none can run a command
    (SMOKE_ENV + ("X",), "$HOME/x", "common_env.X: value '$HOME/x' holds a $ but is literal data"),
    (SMOKE_ENV + ("X",), {"expr": "$(touch /tmp/x)"}, "common_env.X.expr: '$(touch /tmp/x)': only $NAME"),
    (SMOKE_ENV + ("X",), {"expr": "`touch /tmp/x`"}, "common_env.X.expr: '`touch /tmp/x`' holds '`'"),
    (SMOKE_ENV + ("X",), {"expr": "${X:-$(id)}"}, "common_env.X.expr: '${X:-$(id)}': only ${NAME}"),
    (SMOKE_ENV + ("X",), {"expr": "$((a[$(id)]))"}, "common_env.X.expr: '[' inside $((...)): only names"),
    (SMOKE_ENV + ("X",), {"expr": "$((X + $(id)))"}, "common_env.X.expr: a $ inside $((...)) that is not $NAME"),
    (SMOKE_ENV + ("X",), {"expr": "$((1 + 2"}, "common_env.X.expr: a $(( without its closing ))"),
    (SMOKE_ENV + ("X",), {"expr": "$((1 + 2)"}, "common_env.X.expr: an unbalanced ')'"),
    (SMOKE_ENV + ("X",), {"expr": "a\"; touch /tmp/x; \""}, "common_env.X.expr:"),
    (SMOKE_ENV + ("X",), {"expr": "a\\$(id)"}, "common_env.X.expr:"),
    (SMOKE_ENV + ("X",), {"expr": "<(cat /etc/passwd)"}, "common_env.X.expr: '<(cat /etc/passwd)' holds a process substitution"),
    (SMOKE_ENV + ("X",), {"expr": "a\nb"}, "common_env.X.expr:"),
    (SMOKE_ENV + ("X",), {"expr": "$1"}, "common_env.X.expr: '$1': only $NAME"),
    (SMOKE_ENV + ("X",), {"expr": "$X", "also": 1}, "common_env.X: expected a string or {expr:"),
    (SMOKE_ENV + ("X",), {"expr": 5}, "common_env.X: expected a string or {expr:"),
    (LLAMA_ENV + ("EVAL_SAMPLES_INTERVAL",), "a[0]", "common_env.EVAL_SAMPLES_INTERVAL: expected an integer (read inside $((...))"),
]
CLI = [
    # (argv, expected exit status, expected words on stderr)
    (["score", "/does/not/exist"], 2, "/does/not/exist is not a directory"),
    (["score", "{empty}"], 2, "no result_*.txt or *.log files"),
    (["score", "{empty}", "--ruleset", "9.9.9"], 2, ""),
    (["report", "{empty}"], 2, "{empty}"),
]


# -- the real thing: ansible-playbook site.yml --------------------------------------------------



def playbook(inventory, *args):
    environ = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0")
    return subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory), *args],
                          cwd=ROOT, env=environ, capture_output=True, text=True, timeout=600)


def write_inventory(base, hosts, groups=None, group_vars=None):
    """An inventory of local-connection nodes whose good values point under ``base/hosts``."""
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    per_host = f"{base}/hosts/{{{{ inventory_hostname }}}}"
    good = dict(GOOD, mlperf_datadir=per_host + "/data", mlperf_logdir=per_host + "/logs",
                mlperf_workdir=per_host + "/work", mlperf_results_dir=f"{base}/hosts/results")
    good.update(group_vars or {})
    names = list(hosts)
    groups = dict(groups or {})
    children = {"mlperf_controller": {"hosts": {"localhost": local}},
                "mlperf_nodes": {"hosts": {n: dict(local, **hosts[n]) for n in
                                           groups.pop("mlperf_nodes", names)}}}
    staging = groups.pop("mlperf_staging", names[:1])
    if staging:
        children["mlperf_staging"] = {"hosts": {n: {} for n in staging}}
    for group, members in groups.items():
        children[group] = {"hosts": {n: {} for n in members}}
    path = Path(base) / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"vars": good, "children": children}}, sort_keys=False))
    return path


def problems_of(run):
    """The problems the validate role listed, one per line."""
    text = run.stdout + run.stderr
    assert "The inventory is not ready:" in text, text[-4000:]
    block = text.split("The inventory is not ready:", 1)[1]
    block = re.split(r"\nOrigin:|\nfatal:|\n\n", block, maxsplit=1)[0]
    return [line[2:] for line in block.splitlines() if line.startswith("- ")]


def assert_nothing_changed(run, base):
    assert run.returncode != 0
    assert changed_tasks(run.stdout) == set(), changed_tasks(run.stdout)
    assert not (Path(base) / "hosts").exists(), "a directory was written"


def named(problem, host):
    """Whether a merged problem names ``host`` (a problem only some hosts have ends '(on ...)')."""
    match = re.search(r" \(on ([^()]*)\)$", problem)
    return match is not None and host in match.group(1).split(", ")


@pytest.fixture(scope="module")
def inventory_run(tmp_path_factory):
    """One playbook run over an inventory holding every INVENTORY row, one host each."""
    base = tmp_path_factory.mktemp("bad-inventory")
    hosts = {"good": {}}
    hosts.update({f"case{i:03d}": change for i, (change, _, _) in enumerate(INVENTORY)})
    run = playbook(write_inventory(base, hosts))
    return base, run


@pytest.fixture(scope="module")
def catalog_runs(tmp_path_factory):
    """A playbook run per CATALOG row, two at a time, on inventory/local-like values."""
    base = tmp_path_factory.mktemp("bad-catalog")
    inventory = write_inventory(base, {"n1": {}})

    def one(index):
        path, value, _ = CATALOG[index]
        catalog = base / f"catalog-{index}.yml"
        catalog.write_text(yaml.safe_dump(bad_catalog(path, value)))
        return playbook(inventory, "-e", f"validate_catalog_path={catalog}")

    with ThreadPoolExecutor(2) as pool:
        return base, list(pool.map(one, range(len(CATALOG))))


def bad_catalog(path, value):
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CATALOG.read_text()))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


@pytest.mark.parametrize("index", range(len(INVENTORY)), ids=[w[:48] for _, _, w in INVENTORY])
def test_inventory(index):
    change, variable, words = INVENTORY[index]
    problems = site_problems(dict(GOOD, **change), GROUPS)
    assert any(variable in p and words in p for p in problems), problems


@pytest.mark.parametrize("index", range(len(INVENTORY)), ids=[w[:48] for _, _, w in INVENTORY])
def test_inventory_through_ansible(index, inventory_run):
    base, run = inventory_run
    _, variable, words = INVENTORY[index]
    assert_nothing_changed(run, base)
    problems = problems_of(run)
    host = f"case{index:03d}"
    assert any(variable in p and words in p and named(p, host) for p in problems), \
        [p for p in problems if named(p, host)]
    assert not any(named(p, "good") for p in problems)


def _groups_case(hosts, groups):
    nodes = groups.get("mlperf_nodes", list(hosts))
    full = {"mlperf_nodes": nodes, "mlperf_staging": groups.get("mlperf_staging", nodes[:1])}
    full.update({k: v for k, v in groups.items() if k not in full})
    return full


@pytest.mark.parametrize("hosts,groups,args,variable,words", GROUPS_CASES,
                         ids=[w[:48] for *_, w in GROUPS_CASES])
def test_groups(hosts, groups, args, variable, words):
    full = _groups_case(hosts, groups)
    sites = {h: dict(GOOD, **{k: v for k, v in hosts[h].items() if not k.startswith("ansible_")},
                     ansible_run_tags=args[1:] if args[:1] == ["--tags"] else [],
                     ansible_skip_tags=args[1:] if args[:1] == ["--skip-tags"] else [])
             for h in full["mlperf_nodes"]} or {"localhost": dict(GOOD)}
    addresses = {h: node_address(hosts[h].get("ansible_connection", "local"),
                                 hosts[h].get("ansible_host"), hosts[h].get("ansible_port"), h,
                                 sites[h]["mlperf_logdir"] + ("" if "mlperf_logdir" in hosts[h] else h))
                 for h in full["mlperf_nodes"]}
    problems = validate_hosts(sites, full, load_catalog(), addresses)["problems"]
    assert any(variable in p and words in p for p in problems), problems


@pytest.mark.parametrize("hosts,groups,args,variable,words", GROUPS_CASES,
                         ids=[w[:48] for *_, w in GROUPS_CASES])
def test_groups_through_ansible(hosts, groups, args, variable, words, tmp_path):
    hosts = dict(hosts) or {"n1": {}}
    run = playbook(write_inventory(tmp_path, hosts, groups), *args)
    assert_nothing_changed(run, tmp_path)
    assert any(variable in p and words in p for p in problems_of(run)), problems_of(run)


@pytest.mark.parametrize("index", range(len(CATALOG)), ids=[".".join(map(str, p[-2:])) for p, _, _ in CATALOG])
def test_catalog(index):
    path, value, words = CATALOG[index]
    with pytest.raises(CatalogError) as err:
        parse_catalog(bad_catalog(path, value), Path("catalog.yml"))
    assert str(err.value).startswith("catalog.yml: ") and words in str(err.value)
    assert ".".join(map(str, path[-2:-1])) in str(err.value)  # names the entry


@pytest.mark.parametrize("index", range(len(CATALOG)), ids=[".".join(map(str, p[-2:])) for p, _, _ in CATALOG])
def test_catalog_through_ansible(index, catalog_runs):
    base, runs = catalog_runs
    _, _, words = CATALOG[index]
    run = runs[index]
    assert_nothing_changed(run, base)
    problems = problems_of(run)
    assert any(p.startswith(f"catalog: {base}/catalog-{index}.yml: ") and words in p
               for p in problems), problems


@pytest.mark.parametrize("argv,status,words", CLI, ids=[" ".join(a) for a, _, _ in CLI])
def test_cli(argv, status, words, tmp_path, capsys):
    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    assert cli(argv) == status
    assert words.replace("{empty}", str(tmp_path)) in capsys.readouterr().err


def test_the_table_is_at_least_ninety_cases():
    assert len(INVENTORY) + len(GROUPS_CASES) + len(CATALOG) + len(CLI) >= 90


def test_good_values_pass():
    assert site_problems(GOOD, GROUPS) == []
    assert site_problems(dict(GOOD, **LLAMA), GROUPS) == []
    eight = {"mlperf_nodes": [f"n{i}" for i in range(8)], "mlperf_submit": ["login"],
             "mlperf_staging": ["n0"]}
    assert site_problems(dict(GOOD, **FLUX), eight) == []


def test_partial_runs_are_accepted_when_asked_for():
    assert site_problems(dict(GOOD, mlperf_nexp=3, mlperf_allow_partial=True), GROUPS) == []
    assert site_problems(dict(GOOD, mlperf_nexp=12, mlperf_allow_partial=True), GROUPS) == []


def test_secret_values_never_reach_a_message(inventory_run):
    _, run = inventory_run
    text = run.stdout + run.stderr
    for secret in ("hf_nested_secret", "hf_split", "cf_listed_secret", "x[$(id)]"):
        assert secret not in text


def test_no_internal_type_name_reaches_a_message(inventory_run):
    _, run = inventory_run
    text = run.stdout + run.stderr
    assert "_AnsibleTagged" not in text and "Module failed." not in text
    assert not re.search(r"\((str|int|dict|bool|NoneType|float|_Ansible\w+)\)", text)


def test_cli_run_names_each_bad_value_and_changes_nothing(tmp_path):
    """`mlperf-repro run` (ansible-runner, site.yml on inventory/local) with one value of each
    class: a typo, a launch-owned site value, a relative path, a string boolean."""
    proc = subprocess.run(
        [str(BIN / "mlperf-repro"), "run", "--plain", "--private-data-dir", str(tmp_path / "runner"),
         "-e", f"mlperf_local_root={tmp_path}/root", "-e", f"mlperf_results_dir={tmp_path}/results",
         "-e", "mlperf_nexpp=3", "-e", '{"mlperf_site_env": {"SEED": "7"}}',
         "-e", "mlperf_logdir=logs", "-e", '{"campaign_wait": "no"}'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    for words in ("mlperf_nexpp is not a variable of mlperf-repro: did you mean mlperf_nexp?",
                  "mlperf_site_env.SEED cannot be set", "mlperf_logdir must be an absolute path",
                  "campaign_wait must be a boolean"):
        assert words in proc.stdout, proc.stdout[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "root").exists() and not (tmp_path / "results").exists()
