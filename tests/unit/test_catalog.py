"""The benchmark catalog: what the guide publishes, and bad entries named precisely."""

import copy
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import DEFAULT_CATALOG, CatalogError, load_catalog, parse_catalog

# Bad catalog entries, each named: the table in test_bad_input.py.


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture()
def raw():
    return yaml.safe_load(DEFAULT_CATALOG.read_text())


def test_benchmarks_and_images(catalog):
    assert set(catalog.benchmarks) == {"llama2_70b_lora", "llama31_8b", "flux1", "smoke"}
    assert catalog.benchmark("llama2_70b_lora").image == "rocm/amd-mlperf:llama2_70b_training_6.0"
    assert catalog.benchmark("llama31_8b").image == "rocm/amd-mlperf:llama31_8b_training_6.0"
    assert catalog.benchmark("flux1").image == "rocm/amd-mlperf:flux1_training_6.0"
    assert all(b.runs == 10 for b in catalog.benchmarks.values())


@pytest.mark.parametrize("bench,system,minutes,submission", [
    ("llama2_70b_lora", "MI355X_1x8x1", 8.27, "6.0-0036"),
    ("llama2_70b_lora", "MI350X_1x8x1", 10.25, "6.0-0035"),
    ("llama31_8b", "MI355X_1x8x1", 86.84, "6.0-0036"),
    ("llama31_8b", "MI350X_1x8x1", 109.76, "6.0-0035"),
    ("flux1", "MI325X_08x08x32", 92.36, "6.0-0037"),
])
def test_reference_scores_from_the_guide(catalog, bench, system, minutes, submission):
    ref = catalog.resolve(bench, system)["reference"]
    assert ref["score_minutes"] == minutes
    assert ref["submission_id"] == submission


def test_launch_modes_and_topology(catalog):
    flux = catalog.resolve("flux1", "MI325X_08x08x32")
    assert (flux["launch"], flux["nodes"], flux["gpus_per_node"]) == ("slurm", 8, 8)
    lora = catalog.resolve("llama2_70b_lora", "MI355X_1x8x1")
    assert (lora["launch"], lora["nodes"], lora["gpus_per_node"]) == ("docker", 1, 8)
    assert catalog.resolve("smoke", "CPU_1x1x1")["launch"] == "local"


def test_quality_targets_and_cadence(catalog):
    assert catalog.benchmark("llama31_8b").quality["target"] == 3.3
    assert catalog.benchmark("llama2_70b_lora").quality["target"] == 0.925
    assert catalog.benchmark("flux1").quality["target"] == 0.586
    assert catalog.benchmark("flux1").evaluation["every_samples"] == 262144
    assert catalog.benchmark("llama31_8b").evaluation["every_samples"] == 12288


def test_platform_values_differ_where_amd_configs_differ(catalog):
    mi355 = catalog.resolve("llama31_8b", "MI355X_1x8x1")["env"]
    mi350 = catalog.resolve("llama31_8b", "MI350X_1x8x1")["env"]
    assert (mi355["PRIMUS_LR"], mi350["PRIMUS_LR"]) == ("8e-4", "1e-3")
    assert {k for k in mi355 if mi355[k] != mi350.get(k)} == {
        "DGXSYSTEM", "PRIMUS_LR", "PRIMUS_MIN_LR", "MLLOG_SUBMISSION_PLATFORM"}


def test_no_config_sets_nexp(catalog):
    for bench in catalog.benchmarks.values():
        for plat in bench.platforms.values():
            assert "NEXP" not in plat.env


def test_site_env_overrides_amd_hardcoded_interfaces(catalog):
    env = catalog.resolve("flux1", "MI325X_08x08x32", {"NCCL_SOCKET_IFNAME": "ens5"})["env"]
    assert env["NCCL_SOCKET_IFNAME"] == "ens5"
    assert env["GLOO_SOCKET_IFNAME"] == "eno0"  # AMD's value where the site sets nothing


def test_unknown_benchmark_and_unpublished_pair(catalog):
    with pytest.raises(CatalogError, match="unknown benchmark 'bert'.*llama31_8b"):
        catalog.resolve("bert", "MI355X_1x8x1")
    with pytest.raises(CatalogError, match="no platform 'MI325X_08x08x32'.*MI350X_1x8x1"):
        catalog.resolve("llama31_8b", "MI325X_08x08x32")


def test_bad_platform_name(raw):
    data = copy.deepcopy(raw)
    data["benchmarks"]["smoke"]["platforms"]["laptop"] = data["benchmarks"]["smoke"]["platforms"]["CPU_1x1x1"]
    with pytest.raises(CatalogError, match=r"platforms.laptop: expected a config name <system>_<nodes>x<gpus>x<batch>"):
        parse_catalog(data, Path("catalog.yml"))


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load_catalog(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("benchmarks: [unclosed\n")
    with pytest.raises(CatalogError, match="bad.yml: not valid YAML"):
        load_catalog(bad)


@pytest.mark.parametrize("text", [
    "plain", "$NAME", "${NAME}", "${NAME:-1}", "${NAME:--1}", "${BASH_SOURCE[0]##*/}",
    "$A:$B/x:$C", "$((A / B))", "$((5 + ${NEXP:-1} * (W + 5)))", "${X:=y}", "${X%.sh}",
])
def test_allowed_expressions(text):
    from mlperf_repro.catalog import expression_problem
    assert expression_problem(text) is None


@pytest.mark.parametrize("text", [
    "$(id)", "`id`", "${X:-$(id)}", "$((a[$(id)]))", "$(($(id)))", "<(id)", ">(id)", "a\\b",
    'a"b', "a\nb", "$1", "$$", "$@", "${!X}", "${X/a/b}", "$((1 + 2)", "$((1 + 2",
])
def test_refused_expressions(text):
    from mlperf_repro.catalog import expression_problem
    assert expression_problem(text) is not None


def test_every_catalog_expression_is_declared_and_safe(catalog):
    from mlperf_repro.catalog import expression_problem
    seen = 0
    for bench in catalog.benchmarks.values():
        for plat in bench.platforms.values():
            for name in plat.expressions:
                value = plat.site_env.get(name, plat.env.get(name))
                assert expression_problem(value) is None
                seen += 1
            for name, value in {**plat.env, **plat.site_env}.items():
                if name not in plat.expressions:
                    assert "$" not in value, (bench.name, plat.name, name)
    assert seen > 20
