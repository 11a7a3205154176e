"""Platforms as data (issue 16, item 1): platforms.yml loaded and validated, one platform chosen.

A bad definition fails on load naming the file, the key and what was expected; the platform of a
run follows from the catalog system or the inventory (never both apart); what a platform gives
the chain (container options per runtime, PCI IDs, memory floors) is read from the definition.
"""

import copy
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import CatalogError, load_catalog, parse_catalog
from mlperf_repro.platforms import (DEFAULT_PLATFORMS, PlatformError, choose, load_platforms,
                                    parse_platforms, wiring_problems)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(name="raw")
def fixture_raw():
    return yaml.safe_load(DEFAULT_PLATFORMS.read_text())


def test_the_packaged_definitions_load_with_both_platforms():
    platforms = load_platforms()
    assert sorted(platforms.platforms) == ["amd", "nvidia"]
    for platform in platforms.platforms.values():
        # every platform gives both runtimes their GPUs, and names its facts module and role
        assert platform.options_for("docker") and platform.options_for("podman")
        assert platform.gpu_facts_module and platform.driver_role
        for product in platform.pci_ids.values():
            assert platform.expected_memory_gib(product) > 0


def test_the_nvidia_container_options_are_the_toolkits_for_each_runtime():
    nvidia = load_platforms().get("nvidia")
    assert "--gpus=all" in nvidia.options_for("docker")
    assert "--device=nvidia.com/gpu=all" in nvidia.options_for("podman")  # CDI, no --gpus
    assert not any(o.startswith("--gpus") for o in nvidia.options_for("podman"))
    with pytest.raises(PlatformError, match="no container options for 'none'"):
        nvidia.options_for("none")


@pytest.mark.parametrize("device_id,product", [("0x2335", "H200"), ("2335", "H200"),
                                               (0x2901, "B200"), ("0x74A1", "MI300X"),
                                               ("0xffff", None), ("xyz", None), (True, None)])
def test_a_pci_device_id_names_its_product(device_id, product):
    platforms = load_platforms()
    names = {p.product_for_pci_id(device_id) for p in platforms.platforms.values()} - {None}
    assert names == ({product} if product else set())


def test_a_product_gets_its_full_name():
    platforms = load_platforms()
    assert platforms.get("nvidia").accelerator_name("H200") == "NVIDIA H200"
    assert platforms.get("amd").accelerator_name("MI355X") == "AMD Instinct MI355X"


def test_the_memory_floor_is_below_what_the_tools_report_for_a_healthy_gpu():
    # an H200 reports 143771 MiB (nvidia-smi); an MI300X 196592 MiB (amd-smi, tests/data)
    platforms = load_platforms()
    assert platforms.get("nvidia").expected_memory_gib("H200") <= 143771 / 1024
    assert platforms.get("amd").expected_memory_gib("MI300X") <= 196592 / 1024
    assert platforms.get("nvidia").expected_memory_gib("H100") > 40  # not a 40 GB part
    assert platforms.get("nvidia").expected_memory_gib("unknown") is None


BAD = [
    (("platforms", "nvidia", "pci_vendor_id"), "10DE", "platforms.nvidia.pci_vendor_id: expected 4 lower-case hex"),
    (("platforms", "nvidia", "pci_ids"), {"2335": "H200"}, "'2335' is not a PCI device ID"),
    (("platforms", "nvidia", "pci_ids"), {"0x2335": "H201"}, "H201 not in platforms.nvidia.products"),
    (("platforms", "nvidia", "container_options"), {"docker": ["--gpus all"]},
     "platforms.nvidia.container_options.docker: '--gpus all' is not one option word"),
    (("platforms", "nvidia", "container_options"), {"docker": ["--gpus=all;reboot"], "podman": []},
     "is not one option word"),
    (("platforms", "nvidia", "container_options"), {"docker": ["--gpus=all"]},
     "platforms.nvidia.container_options: missing podman"),
    (("platforms", "nvidia", "container_options"), {"docker": [], "podman": [], "lxc": []},
     "'lxc' is not a container runtime"),
    (("platforms", "nvidia", "driver_role"), "../rocm", "platforms.nvidia.driver_role: expected a module or role name"),
    (("platforms", "nvidia", "version_checks"), {"driver": {"min_version": "R580", "source": "x"}},
     "version_checks.driver.min_version: expected a version like 7.2.2"),
    (("platforms", "nvidia", "version_checks"), {"driver": {"min_version": "580"}},
     "version_checks.driver.source: expected a non-empty string"),
    (("platforms", "nvidia", "products"), {"H200": {"memory_gib": 0, "gpus_per_node": 8}},
     "products.H200.memory_gib: expected a positive number"),
    (("platforms", "nvidia", "collective_env"), {"NCCL_DEBUG": True}, "collective_env.NCCL_DEBUG: expected a string"),
    (("platforms", "nvidia", "collective_env"), {"NCCL DEBUG": "WARN"}, "'NCCL DEBUG' is not a variable name"),
    (("platforms", "nvidia", "code"), ["../outside.py"], "'../outside.py' is not a path inside the project"),
    (("platforms", "nvidia", "colour"), "green", "platforms.nvidia: unknown key(s) colour"),
    (("platforms", "nvidia", "products"), {p: {"memory_gib": 100, "gpus_per_node": 8}
                                           for p in ("H100", "H200", "B200", "MI300X")},
     "product 'MI300X' is named by both platform 'amd' and 'nvidia'"),
    (("platforms", "NVIDIA"), {}, "'NVIDIA' is not a platform name"),
    (("schema_version",), 2, "schema_version: expected 1, got 2"),
    (("platforms", "nvidia", "accelerator_name"), "NVIDIA GPU", "accelerator_name: expected a name holding {product}"),
    (("platforms", "nvidia", "slurm_container"), "singularity",
     "platforms.nvidia.slurm_container: expected one of docker, pyxis, got 'singularity'"),
]


@pytest.mark.parametrize("where,value,words", BAD, ids=[w[:40] for *_, w in BAD])
def test_a_bad_definition_names_the_key_and_what_was_expected(raw, where, value, words):
    data = copy.deepcopy(raw)
    node = data
    for key in where[:-1]:
        node = node[key]
    if where[-1] == "NVIDIA":
        node["NVIDIA"] = node["nvidia"]
    else:
        node[where[-1]] = value
    with pytest.raises(PlatformError) as info:
        parse_platforms(data, Path("platforms.yml"))
    assert words in str(info.value) and str(info.value).startswith("platforms.yml: ")


def test_a_missing_key_is_named(raw):
    del raw["platforms"]["amd"]["container_options"]
    with pytest.raises(PlatformError, match="platforms.amd: missing container_options"):
        parse_platforms(raw, Path("platforms.yml"))


def test_an_unreadable_file_is_named(tmp_path):
    with pytest.raises(PlatformError, match="cannot read the platform definitions"):
        load_platforms(tmp_path / "absent.yml")
    (tmp_path / "bad.yml").write_text("platforms: [\n")
    with pytest.raises(PlatformError, match="bad.yml: not valid YAML"):
        load_platforms(tmp_path / "bad.yml")


def test_the_platform_follows_from_the_system_or_the_inventory():
    assert choose("amd", None, "MI355X_1x8x1").name == "amd"
    assert choose("amd", "amd", "MI355X_1x8x1").name == "amd"
    assert choose(None, "nvidia", "GPU_1x1x1").name == "nvidia"
    assert choose(None, "", "CPU_1x1x1") is None
    with pytest.raises(PlatformError, match="mlperf_platform: 'nvidia' disagrees with the catalog "
                                            "system MI355X_1x8x1, which runs on 'amd'"):
        choose("amd", "nvidia", "MI355X_1x8x1")
    with pytest.raises(PlatformError, match="unknown platform 'cpu': expected one of amd, nvidia"):
        choose(None, "cpu", "CPU_1x1x1")


def test_each_catalog_system_names_its_platform_and_resolve_carries_it():
    catalog = load_catalog()
    seen = {}
    for bench in catalog.benchmarks.values():
        for system in bench.platforms.values():
            seen[system.name] = system.gpu_platform
    assert seen["MI355X_1x8x1"] == "amd" and seen["MI325X_08x08x32"] == "amd"
    assert seen["XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1"] == "nvidia"
    assert seen["DGXB200_04x08x32"] == "nvidia" and seen["CPU_1x1x1"] is None
    spec = catalog.resolve("llama31_8b", "MI355X_1x8x1")
    assert spec["platform"] == "amd"
    assert spec["platform_spec"]["container_options"]["docker"] == load_platforms().get(
        "amd").options_for("docker")
    # the smoke benchmark's GPU system runs on whichever platform the inventory names
    assert catalog.resolve("smoke", "GPU_1x1x1", gpu_platform="nvidia")["platform"] == "nvidia"
    with pytest.raises(CatalogError, match="disagrees with the catalog system"):
        catalog.resolve("llama31_8b", "MI355X_1x8x1", gpu_platform="nvidia")


def test_a_catalog_system_on_a_platform_its_gpu_is_not_of_is_refused():
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    system = data["benchmarks"]["llama31_8b"]["platforms"]["MI355X_1x8x1"]
    system["platform"] = "nvidia"
    with pytest.raises(CatalogError, match=r"MI355X_1x8x1.platform: 'nvidia', but its gpu "
                                           r"'MI355X' is a 'amd' product"):
        parse_catalog(data, Path("catalog.yml"))
    system["platform"] = "tpu"
    with pytest.raises(CatalogError, match=r"MI355X_1x8x1.platform: expected one of amd, nvidia"):
        parse_catalog(copy.deepcopy(data), Path("catalog.yml"))


def test_wiring_names_a_missing_driver_role_or_facts_module(tmp_path):
    amd = load_platforms().get("amd")
    assert wiring_problems(amd) == []
    problems = wiring_problems(amd, tmp_path)
    assert any("driver role 'rocm' is not in" in p for p in problems)
    assert any("GPU facts module 'amd_gpu_facts' is not in" in p for p in problems)
