"""Site values from the inventory: every problem named before any host is changed."""

import pytest

from mlperf_repro.site import site_problems

GOOD = {
    "mlperf_benchmark": "llama31_8b", "mlperf_system": "MI355X_1x8x1", "mlperf_nexp": 10,
    "mlperf_container_runtime": "docker", "mlperf_datadir": "/data/d", "mlperf_logdir": "/data/l",
    "mlperf_workdir": "/opt/w", "mlperf_results_dir": "/r", "mlperf_shared_storage": False,
    "mlperf_provision": True, "mlperf_site_env": {}, "tunables_mode": "apply",
}
GROUPS = {"mlperf_nodes": ["n1"]}
FLUX = dict(GOOD, mlperf_benchmark="flux1", mlperf_system="MI325X_08x08x32",
            mlperf_shared_storage=True, mlperf_slurm_partition="gpu")
FLUX_GROUPS = {"mlperf_nodes": [f"n{i}" for i in range(8)], "mlperf_submit": ["login"]}


def test_good_values_have_no_problem():
    assert site_problems(GOOD, GROUPS) == []
    assert site_problems(FLUX, FLUX_GROUPS) == []


CASES = [
    ({"mlperf_datadir": "FILL_IN"}, GROUPS, "mlperf_datadir is not set"),
    ({"mlperf_nexp": 0}, GROUPS, "mlperf_nexp must be a positive integer"),
    ({"mlperf_nexp": "ten"}, GROUPS, "mlperf_nexp must be a positive integer"),
    ({"mlperf_nexp": 1}, GROUPS, "mlperf_nexp is 1 but a score needs 10 runs"),
    ({"mlperf_shared_storage": "false"}, GROUPS, "mlperf_shared_storage must be a boolean"),
    ({"mlperf_container_runtime": "lxc"}, GROUPS, "mlperf_container_runtime must be one of docker, podman, none"),
    ({"mlperf_container_runtime": "none"}, GROUPS, "mlperf_container_runtime none cannot run llama31_8b"),
    ({"mlperf_logdir": "results"}, GROUPS, "mlperf_logdir must be an absolute path"),
    ({"mlperf_benchmark": "bert"}, GROUPS, "unknown benchmark 'bert'"),
    ({"mlperf_system": "MI325X_08x08x32"}, GROUPS, "llama31_8b' has no platform 'MI325X_08x08x32'"),
    ({"tunables_mode": "on"}, GROUPS, "tunables_mode must be one of apply, check, reset, off"),
    ({"mlperf_site_env": {"NCCL_IB_HCA": "FILL_IN"}}, GROUPS, "mlperf_site_env.NCCL_IB_HCA is not set"),
    ({"mlperf_site_env": {"X": "a`b`"}}, GROUPS, "mlperf_site_env.X must be a plain string"),
    ({}, {"mlperf_nodes": []}, "inventory group mlperf_nodes is empty"),
]


@pytest.mark.parametrize("change,groups,message", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_values_are_named(change, groups, message):
    problems = site_problems(dict(GOOD, **change), groups)
    assert any(message in p for p in problems), problems


@pytest.mark.parametrize("change,groups,message", [
    ({"mlperf_slurm_partition": "FILL_IN"}, FLUX_GROUPS, "mlperf_slurm_partition is not set"),
    ({"mlperf_shared_storage": False}, FLUX_GROUPS, "mlperf_shared_storage must be true for flux1"),
    ({}, dict(FLUX_GROUPS, mlperf_nodes=["a", "b"]), "mlperf_nodes has 2 hosts but MI325X_08x08x32 runs on 8 nodes"),
    ({}, {"mlperf_nodes": FLUX_GROUPS["mlperf_nodes"]}, "inventory group mlperf_submit is empty"),
])
def test_slurm_benchmark_rules(change, groups, message):
    problems = site_problems(dict(FLUX, **change), groups)
    assert any(message in p for p in problems), problems


def test_all_problems_reported_at_once():
    bad = dict(GOOD, mlperf_datadir="FILL_IN", mlperf_nexp=0, tunables_mode="x")
    assert len(site_problems(bad, GROUPS)) == 3
