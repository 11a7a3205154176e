"""Bad input, caught before any host is changed, with a message naming what and what was expected.

One table a reader can scan: (where, the bad input, words the message must contain). Inventory
rows go through the validate role's check (mlperf_repro.site), catalog rows through the catalog
loader, CLI rows through `mlperf-repro`. tests/integration/test_local_chain.py proves through
ansible-playbook that the same messages stop a play before its first change.
"""

import copy
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import DEFAULT_CATALOG, CatalogError, parse_catalog
from mlperf_repro.cli import main as cli
from mlperf_repro.site import site_problems

GOOD = {
    "mlperf_benchmark": "llama31_8b", "mlperf_system": "MI355X_1x8x1", "mlperf_nexp": 10,
    "mlperf_container_runtime": "docker", "mlperf_datadir": "/data/d", "mlperf_logdir": "/data/l",
    "mlperf_workdir": "/opt/w", "mlperf_results_dir": "/r", "mlperf_shared_storage": False,
    "mlperf_provision": True, "mlperf_site_env": {}, "tunables_mode": "apply",
}
FLUX = dict(GOOD, mlperf_benchmark="flux1", mlperf_system="MI325X_08x08x32",
            mlperf_shared_storage=True, mlperf_slurm_partition="gpu")
NODES = {"mlperf_nodes": ["n1"]}
EIGHT = {"mlperf_nodes": [f"n{i}" for i in range(8)], "mlperf_submit": ["login"]}
LLAMA = ("benchmarks", "llama31_8b")
MI355 = LLAMA + ("platforms", "MI355X_1x8x1")

INVENTORY = [
    # (change to the good values, groups, expected words)
    ({"mlperf_benchmark": "bert"}, NODES, "unknown benchmark 'bert'"),
    ({"mlperf_system": "MI325X_08x08x32"}, NODES, "'llama31_8b' has no platform 'MI325X_08x08x32'"),
    ({"mlperf_benchmark": "llama2_70b_lora", "mlperf_system": "MI300X_1x8x1"}, NODES,
     "has no platform 'MI300X_1x8x1': AMD published MI350X_1x8x1, MI355X_1x8x1"),
    ({"mlperf_nexp": 0}, NODES, "mlperf_nexp must be a positive integer"),
    ({"mlperf_nexp": "ten"}, NODES, "mlperf_nexp must be a positive integer"),
    ({"mlperf_nexp": -3}, NODES, "mlperf_nexp must be a positive integer"),
    ({"mlperf_nexp": 1}, NODES, "mlperf_nexp is 1 but a score needs 10 runs"),
    ({"mlperf_datadir": "FILL_IN"}, NODES, "mlperf_datadir is not set"),
    ({"mlperf_datadir": None}, NODES, "mlperf_datadir is not set"),
    ({"mlperf_logdir": "results"}, NODES, "mlperf_logdir must be an absolute path"),
    ({"mlperf_shared_storage": "false"}, NODES, "mlperf_shared_storage must be a boolean"),
    ({"mlperf_provision": "yes"}, NODES, "mlperf_provision must be a boolean"),
    ({"mlperf_container_runtime": "lxc"}, NODES, "mlperf_container_runtime must be one of docker, podman, none"),
    ({"mlperf_container_runtime": "none"}, NODES, "mlperf_container_runtime none cannot run llama31_8b"),
    ({"tunables_mode": "on"}, NODES, "tunables_mode must be one of apply, check, reset, off"),
    ({"mlperf_site_env": {"NCCL_IB_HCA": "FILL_IN"}}, NODES, "mlperf_site_env.NCCL_IB_HCA is not set"),
    ({"mlperf_site_env": {"X": "a`id`"}}, NODES, "mlperf_site_env.X must be a plain string"),
    ({"mlperf_site_env": {"1X": "v"}}, NODES, "'1X' is not a valid environment variable name"),
    ({"mlperf_site_env": ["eno0"]}, NODES, "mlperf_site_env must be a mapping"),
    ({"rocm_version": "seven"}, NODES, "rocm_version must be a version like 7.2.2"),
    ({"preflight_min_rocm_version": "7.2.2-beta"}, NODES, "preflight_min_rocm_version must be a version"),
    ({"ansible_run_tags": ["scroe"]}, NODES, "unknown tag(s) scroe in --tags"),
    ({"ansible_skip_tags": ["provison"]}, NODES, "unknown tag(s) provison in --skip-tags"),
    ({}, {"mlperf_nodes": []}, "inventory group mlperf_nodes is empty"),
]
SLURM = [
    ({"mlperf_slurm_partition": "FILL_IN"}, EIGHT, "mlperf_slurm_partition is not set"),
    ({"mlperf_shared_storage": False}, EIGHT, "mlperf_shared_storage must be true for flux1"),
    ({}, dict(EIGHT, mlperf_nodes=["a", "b"]), "mlperf_nodes has 2 hosts but MI325X_08x08x32 runs on 8 nodes"),
    ({}, {"mlperf_nodes": EIGHT["mlperf_nodes"]}, "inventory group mlperf_submit is empty"),
]
CATALOG = [
    # (path into catalog.yml, bad value, expected words)
    (LLAMA + ("runs",), 0, "benchmarks.llama31_8b.runs: expected a positive integer"),
    (LLAMA + ("launch",), "k8s", "benchmarks.llama31_8b.launch: expected one of docker, slurm, local"),
    (("benchmarks", "flux1", "image"), "flux1", "benchmarks.flux1.image: expected repository:tag"),
    (("benchmarks", "flux1", "quality", "target"), "low", "flux1.quality.target: expected a non-negative number"),
    (MI355 + ("env", "DGXSYSTEM"), "MI350X_1x8x1", "MI355X_1x8x1.env.DGXSYSTEM: expected 'MI355X_1x8x1'"),
    (MI355 + ("env", "NEXP"), "1", "env.NEXP: NEXP must not be in a config"),
    (MI355 + ("env", "FP4"), True, "env.FP4: expected a string (quote YAML booleans"),
    (MI355 + ("env", "X"), 'a"b', "env.X: value 'a\"b' contains a double quote"),
    (MI355 + ("reference", "submission_id"), "0036", "reference.submission_id: expected like 6.0-0036"),
    (("benchmarks", "smoke", "dataset", "recipe"), "torrent", "smoke.dataset.recipe: expected one of"),
    (("schema_version",), 2, "schema_version: expected 1"),
    (("ruleset",), "6.0", "ruleset: expected a version like 6.0.0"),
    (("benchmarks",), {}, "benchmarks: expected at least one benchmark"),
]
CLI = [
    # (argv, expected exit status, expected words on stderr)
    (["score", "/does/not/exist"], 2, "/does/not/exist is not a directory"),
    (["score", "{empty}"], 2, "no result_*.txt or *.log files"),
    (["score", "{empty}", "--ruleset", "9.9.9"], 2, ""),
    (["report", "{empty}"], 2, "{empty}"),
]


@pytest.mark.parametrize("change,groups,words", INVENTORY, ids=[w[:48] for _, _, w in INVENTORY])
def test_inventory(change, groups, words):
    problems = site_problems(dict(GOOD, **change), groups)
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("change,groups,words", SLURM, ids=[w[:48] for _, _, w in SLURM])
def test_inventory_slurm(change, groups, words):
    problems = site_problems(dict(FLUX, **change), groups)
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("path,value,words", CATALOG, ids=[".".join(p[-2:]) for p, _, _ in CATALOG])
def test_catalog(path, value, words):
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CATALOG.read_text()))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(CatalogError) as err:
        parse_catalog(data, Path("catalog.yml"))
    assert str(err.value).startswith("catalog.yml: ") and words in str(err.value)


@pytest.mark.parametrize("argv,status,words", CLI, ids=[" ".join(a) for a, _, _ in CLI])
def test_cli(argv, status, words, tmp_path, capsys):
    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    assert cli(argv) == status
    assert words.replace("{empty}", str(tmp_path)) in capsys.readouterr().err


def test_the_table_is_at_least_thirty_cases():
    assert len(INVENTORY) + len(SLURM) + len(CATALOG) + len(CLI) >= 30


def test_good_values_pass():
    assert site_problems(GOOD, NODES) == []
    assert site_problems(FLUX, EIGHT) == []
