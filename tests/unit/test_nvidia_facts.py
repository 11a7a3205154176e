"""The NVIDIA GPU facts (mlperf_repro/node/nvidia_facts.py, library/nvidia_gpu_facts.py) on recorded
real ``nvidia-smi -q -x`` / ``nvidia-smi -q`` outputs (tests/data/gpu-outputs/nvidia, provenance in
its PROVENANCE.tsv), and the module run for real by ``ansible localhost``."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from mlperf_repro.node import nvidia_facts as nf  # noqa: E402

DATA = ROOT / "tests" / "data" / "gpu-outputs" / "nvidia"
A100_MIG = "nvidia-smi-q-x__A100-SXM4-80GB-x4-MIG__driver-535.54.03__1.xml"
T4 = "nvidia-smi-q-x__Tesla-T4__driver-515.105.01__1.xml"
A10G = "nvidia-smi-q-x__A10G__driver-515.105.01__1.xml"
ADA = "nvidia-smi-q-x__RTX-4000-SFF-Ada__driver-595.84__1.xml"
H100 = "nvidia-smi-q__H100-80GB-HBM3__driver-560.35.03__1.txt"
H200 = "nvidia-smi-q__H200__driver-550.90.12__1.txt"
H200_XML = "nvidia-smi-q-x__H200__driver-580.159.04__1.xml"
REMAP_PENDING = "nvidia-smi-q-fragment-remapped-rows-pending__unknown-gpu__unknown-driver__1.txt"
MODULE_PATH = ROOT / "library" / "nvidia_gpu_facts.py"
BIN = Path(sys.executable).parent


def read(name):
    return (DATA / name).read_text(encoding="utf-8")


def record_of(name):
    return nf.summarize(nf.parse_nvidia_smi(read(name)))


def test_every_recorded_output_has_provenance():
    rows = (DATA / "PROVENANCE.tsv").read_text().splitlines()[1:]
    listed = {row.split("\t")[0] for row in rows}
    on_disk = {p.name for p in DATA.iterdir() if p.suffix in (".xml", ".txt")}
    assert listed == on_disk
    assert all(len(row.split("\t")) == 5 and row.split("\t")[1] for row in rows)


# ---------------------------------------------------------------------------------------------
# Parsing real outputs
# ---------------------------------------------------------------------------------------------
def test_h200_text_output():
    r = record_of(H200)
    assert (r["driver_version"], r["cuda_version"], r["gpu_count"], r["attached_gpus"]) == (
        "550.90.12", "12.4", 1, 1)
    assert (r["model"], r["device_id"], r["vram_mib_per_gpu"]) == ("H200", "0x2335", 143771)
    assert (r["persistence_mode"], r["mig_enabled"], r["ecc_enabled"], r["fabric_state"]) == (
        "Enabled", False, True, "Completed")
    gpu = r["gpus"][0]
    assert gpu["bus_id"] == "00000000:03:00.0" and gpu["sub_system_id"] == "0x18BE10DE"
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16,
                           "replays": 0}
    assert gpu["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False,
                                    "failure": False}
    assert gpu["ecc_errors"] == {"volatile_correctable": 0, "volatile_uncorrectable": 0,
                                 "aggregate_correctable": 0, "aggregate_uncorrectable": 0}
    assert (gpu["temperature_c"], gpu["memory_temperature_c"], gpu["power_draw_w"], gpu["power_limit_w"]) == (
        28, 25, 74.58, 700)
    assert gpu["clocks_mhz"] == {"sm": 345, "sm_max": 1980, "memory": 3199, "memory_max": 3201}
    assert nf.evaluate(r, expected_count=1, expected_model="NVIDIA H200", min_driver_version="550",
                       min_memory_mib=140000) == []


def test_h200_xml_recorded_on_the_borrowed_machine():
    r = record_of(H200_XML)
    assert (r["driver_version"], r["cuda_version"], r["gpu_count"], r["model"], r["device_id"]) == (
        "580.159.04", "13.0", 1, "H200", "0x2335")
    assert (r["vram_mib_per_gpu"], r["persistence_mode"], r["mig_enabled"], r["ecc_enabled"]) == (
        143771, "Enabled", False, True)
    gpu = r["gpus"][0]
    assert gpu["pcie"] == {"gen_current": 5, "gen_max": 5, "width_current": 16, "width_max": 16, "replays": 3}
    assert gpu["remapped_rows"] == {"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False}
    assert gpu["ecc_errors"]["volatile_uncorrectable"] == 0 and gpu["recovery_action"] is None
    assert (gpu["power_draw_w"], gpu["power_limit_w"], gpu["temperature_c"]) == (82.14, 700.0, 42)
    # the platform's expectations for an H200 with the R580 driver hold
    assert nf.evaluate(r, expected_count=1, expected_model="H200", min_driver_version="580",
                       min_memory_mib=140000, pci_models={"0x2335": "H200"}) == []
    # the same document read as XML and the H200 text document of another node: one shape
    text = record_of(H200)
    assert set(text) == set(r) and set(text["gpus"][0]) == set(gpu)
    # a driver asking for recovery (the field newer drivers report) is a problem
    asked = nf.summarize(nf.parse_nvidia_smi(read(H200_XML).replace(
        "<gpu_recovery_action>None</gpu_recovery_action>", "<gpu_recovery_action>Reset</gpu_recovery_action>")))
    assert nf.evaluate(asked) == ["GPU 0 (00000000:00:06.0): the driver asks for a recovery action: Reset"]


def test_h100_text_output_one_gpu_of_a_slurm_job():
    r = record_of(H100)
    assert (r["model"], r["device_id"], r["vram_mib_per_gpu"], r["driver_version"]) == (
        "H100", "0x2330", 81559, "560.35.03")
    gpu = r["gpus"][0]
    assert (gpu["index"], gpu["bus_id"], gpu["architecture"]) == (7, "00000000:DB:00.0", "Hopper")
    assert gpu["pcie"]["replays"] == 6
    # the job saw one GPU of eight: the count check says so, nothing else is wrong
    assert nf.evaluate(r, expected_count=8, expected_model="H100") == ["expected 8 GPUs, found 1"]


def test_a100_with_mig_and_persistence_off():
    r = record_of(A100_MIG)
    assert (r["model"], r["device_id"], r["vram_mib_per_gpu"], r["driver_version"], r["cuda_version"]) == (
        "A100", "0x20b2", 81920, "535.54.03", "12.2")
    gpu = r["gpus"][0]
    assert (gpu["mig_mode"], gpu["mig_devices"], gpu["persistence_mode"]) == ("Enabled", 4, "Disabled")
    # remapped rows are not reported in MIG mode (N/A): unknown, not "no"
    assert gpu["remapped_rows"] == {"correctable": None, "uncorrectable": None, "pending": None,
                                    "failure": None}
    problems = nf.evaluate(r)
    assert problems == [
        "nvidia-smi reports 4 attached GPUs but describes 1",
        "GPU 1 (00000000:01:00.0): MIG is enabled (4 MIG devices): the benchmarks need whole GPUs "
        "(nvidia-smi -mig 0)",
        "GPU 1 (00000000:01:00.0): persistence mode is off (nvidia-smi -pm 1 or nvidia-persistenced)",
    ]
    assert not any("MIG" in p for p in nf.evaluate(record_of(A100_MIG), allow_mig=True))
    assert not any("persistence" in p for p in nf.evaluate(record_of(A100_MIG), require_persistence=False))


def test_pcie_width_downgrade_is_a_problem_an_idle_gen_drop_only_a_note():
    t4 = record_of(T4)   # x8 of x16 at P0, gen 3 of 3
    assert "GPU 0 (00000000:00:1E.0): PCIe link x8 of x16 (downgraded width)" in nf.evaluate(t4)
    assert not any("gen" in p for p in nf.evaluate(record_of(T4)))
    a10g = record_of(A10G)   # gen 1 of 4 at P8 (idle)
    problems = nf.evaluate(a10g)
    assert not any("PCIe gen" in p for p in problems), problems
    assert a10g["notes"] == ["GPU 0 (00000000:00:1E.0): PCIe gen 1 of 4 at P8 (an idle GPU lowers "
                             "its link speed)"]
    assert a10g["device_id"] is None   # pci_device_id 000000DE: no ID reported
    # the same link under load is a problem
    loaded = nf.summarize(nf.parse_nvidia_smi(read(A10G).replace(
        "<performance_state>P8</performance_state>", "<performance_state>P0</performance_state>")))
    assert "GPU 0 (00000000:00:1E.0): PCIe gen 1 of 4 under load (P0): downgraded link speed" in nf.evaluate(loaded)


def test_newest_schema_v13_and_ecc_disabled():
    r = record_of(ADA)
    assert (r["driver_version"], r["cuda_version"], r["ecc_enabled"], r["vram_mib_per_gpu"]) == (
        "595.84", "13.2", False, 20475)
    assert r["gpus"][0]["ecc_errors"]["volatile_uncorrectable"] is None  # N/A with ECC off
    assert "GPU 0 (00000000:06:00.0): ECC is disabled (nvidia-smi -e 1, then a reset)" in nf.evaluate(r)
    assert not any("ECC" in p for p in nf.evaluate(record_of(ADA), require_ecc=False))


def test_remapping_pending_from_a_real_fragment():
    gpu = nf.parse_gpu_section(read(REMAP_PENDING))
    assert gpu["remapped_rows"] == {"correctable": 0, "uncorrectable": 4, "pending": True, "failure": None}
    record = nf.empty_record()
    record.update(gpus=[gpu], gpu_count=1)
    assert nf.evaluate(record) == ["GPU ? (bus ?): row remapping pending (4 uncorrectable rows): "
                                   "reset the GPU or reboot the node before a run"]


def test_uncorrectable_ecc_remap_failure_and_fabric_from_changed_real_outputs():
    # The recorded H200 document with counters changed (no real output with these errors was
    # found): volatile DRAM uncorrectable 2, aggregate 5, a remapping failure, fabric in progress.
    text = read(H200)
    volatile, aggregate = text.split("        Aggregate\n", 1)
    volatile = re.sub(r"(DRAM Uncorrectable\s+:) 0", r"\1 2", volatile)
    aggregate = re.sub(r"(DRAM Uncorrectable\s+:) 0", r"\1 5", aggregate, count=1)
    text = volatile + "        Aggregate\n" + aggregate
    text = re.sub(r"(Remapping Failure Occurred\s+:) No", r"\1 Yes", text)
    text = re.sub(r"(State\s+:) Completed", r"\1 In Progress", text)
    r = nf.summarize(nf.parse_nvidia_smi(text))
    assert r["gpus"][0]["ecc_errors"]["volatile_uncorrectable"] == 2
    assert r["gpus"][0]["ecc_errors"]["aggregate_uncorrectable"] == 5
    where = "GPU 0 (00000000:03:00.0)"
    assert nf.evaluate(r) == [
        where + ": 2 uncorrectable ECC errors since the driver loaded",
        where + ": row remapping failed: the GPU's memory cannot be repaired (NVIDIA's RMA criterion)",
        where + ": NVLink fabric In Progress (status Success): is nvidia-fabricmanager running?",
    ]
    assert r["notes"] == [where + ": 5 uncorrectable ECC errors over its lifetime"]


def test_expectations_count_model_memory_driver_and_pci_table():
    r = record_of(H100)
    assert nf.evaluate(r, expected_model="H200", min_memory_mib=140000, min_driver_version="570.133.20") == [
        "expected H200 GPUs, found H100",
        "NVIDIA driver 560.35.03 is older than the required 570.133.20",
        "GPU 7 (00000000:DB:00.0) has 81559 MiB of memory, at least 140000 MiB expected",
    ]
    # the platform's table names the product by PCI ID, over the tool's name
    r = record_of(H200)
    assert nf.evaluate(r, expected_model="H200 SXM", pci_models={"0x2335": "H200 SXM"}) == []
    assert r["model"] == "H200 SXM"


@pytest.mark.parametrize("kwargs, message", [
    ({"min_driver_version": "570.x"}, "invalid driver version '570.x'"),
    ({"min_driver_version": 570}, "invalid driver version 570"),
    ({"expected_count": -1}, "expected_count: expected a whole number >= 0"),
    ({"min_memory_mib": "lots"}, "min_memory_mib: expected a whole number >= 0"),
    ({"pci_models": {"h200": "H200"}}, "pci_models: expected entries such as '0x2335': H200"),
])
def test_bad_expectations_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        nf.check_expectations(**kwargs)


@pytest.mark.parametrize("text, message", [
    ("", "nvidia-smi printed nothing"),
    ("<nvidia_smi_log><gpu>", "not well-formed XML"),
    ("<amd_smi/>", "root element <amd_smi>, expected <nvidia_smi_log>"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "x">]><nvidia_smi_log/>', "declares entities"),
    ("bash: nvidia-smi: command not found", "not an nvidia-smi -q document"),
])
def test_unreadable_output_raises(text, message):
    with pytest.raises(ValueError, match=message):
        nf.parse_nvidia_smi(text)


# ---------------------------------------------------------------------------------------------
# The collector
# ---------------------------------------------------------------------------------------------
def test_collect_missing_failing_and_working_nvidia_smi():
    missing = nf.collect(lambda argv: (127, "", "not found"))
    assert missing["missing_commands"] == ["nvidia-smi"] and missing["gpu_count"] == 0
    assert nf.evaluate(missing, expected_count=8) == [
        "nvidia-smi is not installed: the NVIDIA driver is missing (the nvidia_driver role installs it)",
        "expected 8 GPUs, found 0"]
    assert nf.evaluate(missing, expected_count=8, driver_pending=True) == []
    no_driver = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
    failed = nf.collect(lambda argv: (9, no_driver, ""))
    assert failed["commands"] == {"nvidia-smi -q -x": "rc=9"}
    assert nf.evaluate(failed) == ["nvidia-smi sees no GPU: nvidia-smi -q -x: rc=9: NVIDIA-SMI has failed "
                                   "because it couldn't communicate with the NVIDIA driver."]
    seen = []
    ok = nf.collect(lambda argv: seen.append(argv) or (0, read(A100_MIG), ""))
    assert seen == [["nvidia-smi", "-q", "-x"]]
    assert (ok["source"], ok["gpu_count"], ok["commands"]) == ("nvidia-smi -q -x", 1, {"nvidia-smi -q -x": "rc=0"})


# ---------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mod():
    spec = importlib.util.spec_from_file_location("nvidia_gpu_facts_under_test", MODULE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_documentation_matches_argument_spec_and_record(mod):
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    ret = yaml.safe_load(mod.RETURN)
    assert doc["module"] == "nvidia_gpu_facts"
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert set(doc["options"]) == {"expected_count", "expected_model", "min_driver_version", "min_memory_mib",
                                   "require_persistence", "require_ecc", "allow_mig", "pci_models",
                                   "driver_pending"}
    assert set(ret["ansible_facts"]["contains"]["nvidia_gpu"]["contains"]) == set(nf.empty_record())


def test_module_rejects_a_bad_option_before_running_anything(mod, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(mod, "module_runner", lambda module: lambda argv: ran.append(argv))
    with patch_module_args({"min_driver_version": "r570"}):
        with pytest.raises(SystemExit):
            mod.main()
    out = json.loads(capsys.readouterr().out)
    assert out["failed"] and "invalid driver version 'r570'" in out["msg"] and ran == []


def adhoc(args: dict, tmp_path: Path, path_dir: Path | None = None):
    """``ansible localhost -m nvidia_gpu_facts`` for real; the module's result."""
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_MODULE_UTILS": str(ROOT / "mlperf_repro" / "node"),
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
    })
    if path_dir:
        env["PATH"] = f"{path_dir}:{env['PATH']}"
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-m", "nvidia_gpu_facts", "-M", str(ROOT / "library"),
                           "-a", json.dumps(args), "-e", "ansible_python_interpreter=" + sys.executable],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    head, _sep, body = proc.stdout.partition(" => ")
    assert proc.returncode == 0 and head.strip().endswith("localhost | SUCCESS"), proc.stdout + proc.stderr
    return json.loads(body)


def test_module_for_real_without_nvidia_smi(tmp_path):
    if any((Path(d) / "nvidia-smi").exists() for d in os.environ["PATH"].split(":") + nf.TOOL_DIRS):
        pytest.skip("this machine has an nvidia-smi")
    result = adhoc({"expected_count": 8}, tmp_path)
    facts = result["ansible_facts"]["nvidia_gpu"]
    assert facts["missing_commands"] == ["nvidia-smi"] and facts["gpu_count"] == 0
    assert result["problems"][-1] == "expected 8 GPUs, found 0" and result["changed"] is False


def test_module_for_real_with_a_stand_in_nvidia_smi(tmp_path):
    # a stand-in nvidia-smi earlier on the PATH prints the recorded A100 document for -q -x only
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "nvidia-smi"
    tool.write_text('#!/bin/sh\n[ "$*" = "-q -x" ] && exec cat %s\necho "unexpected: $*" >&2; exit 3\n'
                    % (DATA / A100_MIG))
    tool.chmod(0o755)
    result = adhoc({"expected_model": "A100", "min_driver_version": "535"}, tmp_path, tmp_path / "bin")
    facts = result["ansible_facts"]["nvidia_gpu"]
    assert (facts["model"], facts["driver_version"], facts["mig_enabled"]) == ("A100", "535.54.03", True)
    assert any("MIG is enabled" in p for p in result["problems"])


# ---------------------------------------------------------------------------------------------
# Preflight's probe reads the GPUs through the platform's source
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def preflight():
    spec = importlib.util.spec_from_file_location("mlperf_preflight_nvidia", ROOT / "library" / "mlperf_preflight.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_preflight(preflight, args, capsys, monkeypatch, run):
    monkeypatch.setattr(preflight, "module_runner", lambda module: run)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            preflight.main()
    return json.loads(capsys.readouterr().out)


def test_preflight_reads_nvidia_gpus_through_the_platform_source(preflight, capsys, monkeypatch, tmp_path):
    ran = []

    def run(argv):
        ran.append(argv)
        return (0, read(H200_XML), "") if argv == ["nvidia-smi", "-q", "-x"] else (127, "", "")

    gpus = {"source": "nvidia_gpu_facts", "expected_count": 8, "expected_model": "H200",
            "min_driver_version": "580", "pci_models": {"0x2335": "H200"}, "min_memory_mib": 140000}
    result = run_preflight(preflight, {"paths": [{"label": "workdir", "path": str(tmp_path), "need_gb": 0}],
                                       "gpus": gpus}, capsys, monkeypatch, run)
    assert ["nvidia-smi", "-q", "-x"] in ran and not any(a[0] in ("amd-smi", "rocm-smi") for a in ran)
    assert result["gpus"] == result["ansible_facts"]["nvidia_gpu"]
    assert (result["gpus"]["model"], result["gpus"]["driver_version"]) == ("H200", "580.159.04")
    assert result["problems"] == ["expected 8 GPUs, found 1"]
    # the driver stack installed later in this run: a node without nvidia-smi is no problem yet
    pending = dict(gpus, driver_pending=True, min_driver_version=None, expected_count=0)
    result = run_preflight(preflight, {"gpus": pending}, capsys, monkeypatch, lambda argv: (127, "", ""))
    assert result["problems"] == [] and result["gpus"]["missing_commands"] == ["nvidia-smi"]
    without = run_preflight(preflight, {"gpus": dict(gpus, driver_pending=False, expected_count=8)},
                            capsys, monkeypatch, lambda argv: (127, "", ""))
    assert without["problems"][0].startswith("nvidia-smi is not installed")


@pytest.mark.parametrize("gpus, message", [
    ({"source": "intel_gpu_facts"}, "gpus.source: 'intel_gpu_facts' is not a GPU facts source; expected one of "
                                    "amd_gpu_facts, nvidia_gpu_facts"),
    ({"source": "nvidia_gpu_facts", "min_driver_version": "R580"}, "gpus: invalid driver version 'R580'"),
])
def test_preflight_names_a_bad_gpu_source_before_running_anything(preflight, capsys, monkeypatch, gpus, message):
    ran = []
    result = run_preflight(preflight, {"gpus": gpus}, capsys, monkeypatch, lambda argv: ran.append(argv))
    assert result["failed"] and result["msg"].startswith(message) and ran == []


def test_the_xml_and_the_text_of_one_node_read_the_same():
    """The borrowed H200's -q -x and -q, recorded in the same second on the same node: both forms
    give the same facts, field for field (the text parser cannot drift from the XML one)."""
    folder = Path(__file__).resolve().parents[1] / "data" / "gpu-outputs" / "nvidia"
    xml = nf.parse_nvidia_smi(
        (folder / "nvidia-smi-q-x__H200__driver-580.159.04__2.xml").read_text())
    text = nf.parse_nvidia_smi(
        (folder / "nvidia-smi-q__H200__driver-580.159.04__2.txt").read_text())
    assert (xml["form"], text["form"]) == ("xml", "text")
    assert xml["driver_version"] == text["driver_version"] == "580.159.04"
    assert xml["cuda_version"] == text["cuda_version"] == "13.0"
    assert len(xml["gpus"]) == len(text["gpus"]) == 1
    volatile = {"clocks", "temperature", "power"}   # the second between the two reads
    for key, value in xml["gpus"][0].items():
        if any(word in key for word in volatile):
            continue
        assert text["gpus"][0].get(key) == value, key
    assert xml["gpus"][0]["device_id"] == "0x2335"
