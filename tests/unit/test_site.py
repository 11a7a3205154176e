"""Site values from the inventory: every problem named before any host is changed."""

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


# Each bad value and its message: the table in test_bad_input.py.


def test_all_problems_reported_at_once():
    bad = dict(GOOD, mlperf_datadir="FILL_IN", mlperf_nexp=0, tunables_mode="x")
    assert len(site_problems(bad, GROUPS)) == 3
