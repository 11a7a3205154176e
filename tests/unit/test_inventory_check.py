"""Site values from the inventory: every problem named before any host is changed."""

from mlperf_repro.inventory_check import site_problems

GOOD = {
    "mlperf_benchmark": "llama31_8b", "mlperf_system": "MI355X_1x8x1", "mlperf_nexp": 10,
    "mlperf_container_runtime": "docker", "mlperf_datadir": "/data/d", "mlperf_logdir": "/data/l",
    "mlperf_workdir": "/opt/w", "mlperf_results_dir": "/r", "mlperf_shared_storage": False,
    "mlperf_provision": True, "mlperf_site_env": {}, "tunables_mode": "apply",
}
GROUPS = {"mlperf_nodes": ["n1"], "mlperf_staging": ["n1"]}
FLUX = dict(GOOD, mlperf_benchmark="flux1", mlperf_system="MI325X_08x08x32",
            mlperf_shared_storage=True, mlperf_slurm_partition="gpu")
FLUX_GROUPS = {"mlperf_nodes": [f"n{i}" for i in range(8)], "mlperf_submit": ["login"],
               "mlperf_staging": ["n0"]}


def test_good_values_have_no_problem():
    assert site_problems(GOOD, GROUPS) == []
    assert site_problems(FLUX, FLUX_GROUPS) == []


# Each bad value and its message: the table in test_bad_input.py.


def test_all_problems_reported_at_once():
    bad = dict(GOOD, mlperf_datadir="FILL_IN", mlperf_nexp=0, tunables_mode="x")
    assert len(site_problems(bad, GROUPS)) == 3


def test_every_host_resolved_at_once_when_all_are_good():
    from mlperf_repro.catalog import load_catalog
    from mlperf_repro.inventory_check import validate_hosts
    env = {"NCCL_SOCKET_IFNAME": "ens51np0"}
    sites = {"n1": GOOD, "n2": dict(GOOD, mlperf_site_env=env)}
    result = validate_hosts(sites, GROUPS, load_catalog())
    assert result["problems"] == []
    assert result["specs"]["n1"]["benchmark"] == result["specs"]["n2"]["benchmark"] == "llama31_8b"
    assert result["specs"]["n2"]["env"]["NCCL_SOCKET_IFNAME"] == "ens51np0"  # each host its own
    assert result["specs"]["n1"]["env"].get("NCCL_SOCKET_IFNAME") != "ens51np0"


def test_a_problem_of_some_hosts_names_them_one_of_all_hosts_is_said_once():
    from mlperf_repro.catalog import load_catalog
    from mlperf_repro.inventory_check import validate_hosts
    sites = {"n1": dict(GOOD, mlperf_nexp=0), "n2": dict(GOOD, mlperf_nexp=0),
             "n3": dict(GOOD, mlperf_nexp=0, mlperf_datadir="FILL_IN")}
    result = validate_hosts(sites, GROUPS, load_catalog())
    assert result["specs"] == {}  # nothing is resolved for a bad inventory
    assert len(result["problems"]) == 2
    assert result["problems"][0].startswith("mlperf_nexp must be a positive integer")
    assert result["problems"][0].endswith("got 0")
    assert result["problems"][1].startswith("mlperf_datadir is not set")
    assert result["problems"][1].endswith(" (on n3)")


def test_every_variable_the_shipped_inventories_set_is_known():
    from pathlib import Path

    import yaml

    from mlperf_repro.inventory_check import declared_problems
    root = Path(__file__).resolve().parents[2]
    files = sorted(root.glob("inventory/*/group_vars/*.yml"))
    assert files
    for path in files:
        values = yaml.safe_load(path.read_text()) or {}
        unknown = [p for p in declared_problems(values) if "is not a variable" in p]
        assert unknown == [], (path, unknown)


def test_known_variables_come_from_the_argument_specs():
    from mlperf_repro.inventory_check import known_variables, role_prefixes
    known = known_variables()
    assert {"campaign_poll_seconds", "slurm_job_time", "tunables_root", "mlperf_nexp",
            "mlperf_local_root", "validate_catalog_path"} <= known
    assert {"mlperf_", "campaign_", "slurm_job_", "shared_storage_"} <= set(role_prefixes())


def test_one_node_under_two_names_is_found_by_its_address():
    from mlperf_repro.inventory_check import duplicate_node_problems, node_address
    groups = {"mlperf_nodes": ["a", "b", "c", "d"]}
    addresses = {"a": node_address("ssh", "10.0.0.1", None, "a"),
                 "b": node_address("ssh", "10.0.0.1", 2222, "b"),   # another port: another node
                 "c": node_address(None, None, None, "C.example."),
                 "d": node_address("ssh", "c.example", "22", "d")}
    problems = duplicate_node_problems(groups, addresses)
    assert len(problems) == 1 and "C.example" not in problems[0]
    assert "c and d are both c.example port 22" in problems[0]
    assert duplicate_node_problems({"mlperf_nodes": ["a", "a"]}, {}) == [
        "inventory group mlperf_nodes lists a 2 times: list each node once"]


def test_stages_selected_by_tags():
    from mlperf_repro.inventory_check import selected_stages
    assert "data" in selected_stages({})
    assert selected_stages({"ansible_run_tags": ["score"]}) == {"score"}
    assert "data" not in selected_stages({"ansible_skip_tags": ["data"]})
    assert {"rocm", "docker"} <= selected_stages({"ansible_run_tags": ["provision"]})
    assert not site_problems(dict(GOOD, ansible_run_tags=["score"]), {"mlperf_nodes": ["n1"]})


def test_values_every_stage_derives_are_resolved_once_into_the_spec():
    """The roles read these from mlperf_spec (no role computes them again): the run count as
    parsed once (``-e mlperf_nexp=3`` arrives as a string), where the code and the campaigns go,
    the runtime, the tunables mode (off when the inventory does not say)."""
    from mlperf_repro.catalog import load_catalog
    from mlperf_repro.inventory_check import validate_hosts
    unset = {k: v for k, v in GOOD.items() if k != "tunables_mode"}
    sites = {"n1": dict(GOOD, mlperf_nexp="3", mlperf_allow_partial=True),
             "n2": dict(unset, mlperf_container_runtime="podman", tunables_mode="off")}
    specs = validate_hosts(sites, GROUPS, load_catalog())["specs"]
    assert {k: specs["n1"][k] for k in ("nexp", "runtime", "tunables_mode", "code_dir",
                                         "campaign_root", "results_root", "ruleset")} == {
        "nexp": 3, "runtime": "docker", "tunables_mode": "apply", "code_dir": "/opt/w/code/llama31_8b",
        "campaign_root": "/data/l/llama31_8b/MI355X_1x8x1", "results_root": "/r/llama31_8b/MI355X_1x8x1",
        "ruleset": load_catalog().ruleset}
    assert (specs["n2"]["nexp"], specs["n2"]["runtime"], specs["n2"]["tunables_mode"]) == (10, "podman", "off")
    from mlperf_repro.inventory_check import SITE_VARS, TUNABLES_DEFAULT
    assert SITE_VARS["tunables_mode"] == TUNABLES_DEFAULT == "off"
