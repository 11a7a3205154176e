"""mlperf_repro.node.gpu_facts against recorded real outputs (tests/data/gpu-outputs, see SOURCES.tsv).

Where no real output of a form exists (complete ``amd-smi static --json``, ``amd-smi list --json``),
the JSON is built from a recorded text output with the documented key mapping (amd-smi prints its
JSON keys upper-cased as text), never typed in by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlperf_repro.node import gpu_facts as gf  # noqa: E402

DATA = ROOT / "tests" / "data" / "gpu-outputs"

MI300A_STATIC = "amd-smi-static__MI300A-x4__rocm-6.2-6.3-era__1.txt"
MI350X_STATIC = "amd-smi-static-text-partial__MI350X__rocm-7.x-amdgpu-6.18.3__1.txt"
MI300X_STATIC = "amd-smi-static-text-partial__MI300X__rocm-6.2-era__1.txt"
MI308X_ASIC = "amd-smi-static-asic-text__MI308X__rocm-6.2-6.3-era__1.txt"
MI355X_CLOCK_JSON = "amd-smi-static-clock-json-partial__MI355X__rocm-6.4-7.0-era__1.txt"
MI300X_VRAM_JSON = "amd-smi-static-json-jq-vram__MI300X__rocm-6.2-era__1.txt"
LIST_X8 = "amd-smi-list__MI300X-x8__rocm-6.1.2__1.txt"
LIST_PARTIAL = "amd-smi-list-text-partial__MI300X__rocm-6.2-era__1.txt"
LIST_KFD = "amd-smi-list-text-kfd-fields__MI3xx__rocm-6.2-6.3-era__1.txt"
ROCMSMI_JSON = "rocm-smi-showproductname-showid-json__MI300A-x4__rocm-7.x-driver-6.16.13__secondhand.txt"
ROCMSMI_VRAM = "rocm-smi-showmeminfo-vram__MI300X__rocm-6.3.3__1.txt"
ROCMINFO_MI300X = "rocminfo-gpu-agent-partial__MI300X__rocm-6.3.3__1.txt"
ROCMINFO_MI300X_2 = "rocminfo-gpu-agent-partial__MI300X__rocm-6.3-6.4__2.txt"
ROCMINFO_MI308X = "rocminfo-gpu-agent-partial__MI308X__unknown-rocm__1.txt"
LSPCI_MI300X_PP = "lspci-d-1002-74a1-PP__MI300X-x8__n-a__1.txt"
LSPCI_MI300X_GREP = "lspci-grep-MI300X__MI300X-x8__n-a__1.txt"
LSPCI_MI325X = "lspci-d-1002-74a5__MI325X-x8__n-a__1.txt"
LSPCI_MI350X = "lspci-d-1002-75a0__MI350X-x8__n-a__1.txt"
LSPCI_MI355X = "lspci-d-1002-75a3__MI355X-x8__n-a__1.txt"
SYS_VERSION_DKMS = "sys-module-amdgpu-version__MI300X-VF__dkms-6.12.12__1.txt"
SYS_VERSION_MISSING = "sys-module-amdgpu-version__MI300X__inbox-kernel-6.8.0-79__missing.txt"
SYS_SRCVERSION_INBOX = "sys-module-amdgpu-srcversion__MI300X__inbox-kernel-6.8.0-79__1.txt"
ROCM_INFO_GREP = "opt-rocm-info-grep__n-a__rocm-6.4.0__semisynthetic.txt"
DKMS_6_DISTROS = "dkms-status__n-a__amdgpu-6.14.14__docs-6-distros.txt"
DKMS_RADEON = "dkms-status__Radeon-non-instinct__amdgpu-6.2.4-rocm-6.0__1.txt"
VERSION_INBOX = "amd-smi-version__MI300X-partitioned-inbox-driver__rocm-6.4.0__1.txt"
VERSION_633 = "amd-smi-version__MI300X__rocm-6.3.3__1.txt"
VERSION_JSON_702 = "amd-smi-version-json__unknown-gpu__rocm-7.0.2__secondhand.txt"


def fixture(name):
    return (DATA / name).read_text(encoding="utf-8")


def static_json_from_text(name, wrapped):
    """``amd-smi static --json`` for a host whose text output was recorded (documented mapping:
    JSON keys are the text keys lower-cased; amd-smi >= 26 wraps the list in ``gpu_data``)."""
    gpus = []
    for block in gf.parse_amdsmi_blocks(fixture(name)):
        if block.pop("kind") == "gpu":
            block["gpu"] = block.pop("index")
            gpus.append(block)
    return json.dumps({"gpu_data": gpus} if wrapped else gpus, indent=4)


def static_gpus(name):
    """What collect's parser (amd-smi static --json) makes of the host whose text was recorded."""
    return gf.parse_amdsmi_static_json(static_json_from_text(name, False))


def list_json_from_text(name):
    out = []
    for block in gf.parse_amdsmi_blocks(fixture(name)):
        block.pop("kind")
        block["gpu"] = block.pop("index")
        out.append(block)
    return json.dumps(out)


def test_every_copied_fixture_has_a_provenance_row():
    rows = {line.split("\t", 1)[0] for line in fixture("SOURCES.tsv").splitlines()[1:]}
    files = {p.name for p in DATA.glob("*.txt")}
    assert files == rows


# ---------------------------------------------------------------------------------- amd-smi static

def test_amdsmi_static_text_mi300a_x4_complete():
    text = fixture(MI300A_STATIC)
    blocks = gf.parse_amdsmi_blocks(text)
    assert [(b["kind"], b["index"]) for b in blocks] == [("cpu", i) for i in range(4)] + [("gpu", i) for i in range(4)]
    # repeated keys inside a section become a list
    assert blocks[4]["soc_pstate"]["policies"]["policy_id"] == ["0", "1", "2", "3"]

    gpus = static_gpus(MI300A_STATIC)
    assert len(gpus) == 4  # CPU sockets are not GPUs
    assert {g["model"] for g in gpus} == {"MI300A"}
    assert {g["device_id"] for g in gpus} == {"0x74a0"}
    assert gpus[0]["bdf"] == "0000:01:00.0"
    assert gpus[0]["vram_mib"] == 64289
    assert gpus[0]["driver_version"] == "6.9.0-rc5+"
    assert gpus[0]["board_name"] == "Aqua Vanjaram [Instinct MI300A]"
    assert (gpus[0]["compute_partition"], gpus[0]["memory_partition"]) == ("SPX", "NPS1")
    assert gpus[0]["gfx_target"] is None  # TARGET_GRAPHICS_VERSION not in this amd-smi era
    assert all(g["xgmi"] for g in gpus)  # XGMI_PLPD section present


def test_amdsmi_static_text_mi350x_gfx950():
    [gpu] = static_gpus(MI350X_STATIC)
    assert gpu["model"] == "MI350X"
    assert gpu["name"] == "AMD Instinct MI350X"
    assert gpu["device_id"] == "0x75a0"
    assert gpu["gfx_target"] == "gfx950"
    assert gpu["driver_version"] == "6.18.3"
    assert gpu["bdf"] == "0000:05:00.0"
    # the FRU board name cannot tell MI350X from MI355X: never a model source
    assert gpu["board_name"] == "AMD Instinct MI350 OAM"
    assert gf.model_from_name(gpu["board_name"]) is None


def test_amdsmi_static_text_mi300x_truncated_and_mi308x_asic():
    text = fixture(MI300X_STATIC)
    assert gf.looks_truncated(text)
    [gpu] = static_gpus(MI300X_STATIC)
    assert (gpu["name"], gpu["model"], gpu["device_id"]) == ("MI300X-O", "MI300X", "0x74a1")
    assert gpu["bdf"] == "0000:05:00.0"

    [gpu] = static_gpus(MI308X_ASIC)
    assert (gpu["model"], gpu["device_id"], gpu["gfx_target"]) == ("MI308X", "0x74a2", "gfx942")


@pytest.mark.parametrize("wrapped", [False, True], ids=["list-form", "gpu_data-form"])
def test_amdsmi_static_json_both_top_level_shapes(wrapped):
    listed = gf.parse_amdsmi_static_json(static_json_from_text(MI300A_STATIC, False))
    wrapped_gpus = gf.parse_amdsmi_static_json(static_json_from_text(MI300A_STATIC, wrapped))
    assert wrapped_gpus == listed and len(listed) == 4


def test_amdsmi_static_json_vram_object_from_the_blog():
    vram = json.loads(fixture(MI300X_VRAM_JSON))  # `amd-smi static --json | jq '.[0]["vram"]'`
    [gpu] = gf.parse_amdsmi_static_json(json.dumps([{"gpu": 0, "vram": vram}]))
    assert gpu["vram_mib"] == 196592
    # the same GPU model's rocm-smi figure, in bytes, is the same MiB count: amd-smi "MB" is MiB
    assert "VRAM Total Memory (B): 206141652992" in fixture(ROCMSMI_VRAM)
    assert 206141652992 // 2 ** 20 == gpu["vram_mib"]


def test_amdsmi_static_json_rejects_truncated_and_foreign_output():
    with pytest.raises(ValueError, match="amd-smi static --json"):
        gf.parse_amdsmi_static_json(fixture(MI355X_CLOCK_JSON))  # cut mid-key by its source
    with pytest.raises(ValueError, match="gpu_data"):
        gf.parse_amdsmi_static_json('{"cpu_data": []}')
    with pytest.raises(ValueError, match="empty"):
        gf.parse_amdsmi_static_json("")
    # banner lines before the document are tolerated
    assert len(gf.parse_amdsmi_static_json("note: x\n" + static_json_from_text(MI350X_STATIC, True))) == 1


# ----------------------------------------------------------------------------------- amd-smi list

def test_amdsmi_list_text_x8():
    gpus = gf.parse_amdsmi_list(fixture(LIST_X8))
    assert [g["index"] for g in gpus] == list(range(8))
    assert [g["bdf"] for g in gpus] == [
        "0000:11:00.0", "0000:2f:00.0", "0000:46:00.0", "0000:5d:00.0",
        "0000:8b:00.0", "0000:aa:00.0", "0000:c2:00.0", "0000:da:00.0"]
    assert gpus[0]["uuid"] == "d4ff74a1-0000-1000-80b1-dbb1e6a69543"
    # device ID embedded in the UUID
    assert {(g["device_id"], g["model"]) for g in gpus} == {("0x74a1", "MI300X")}
    assert gf.parse_amdsmi_list(list_json_from_text(LIST_X8)) == gpus


def test_amdsmi_list_partial_and_kfd_fields():
    text = fixture(LIST_PARTIAL)
    assert gf.looks_truncated(text)
    assert [g["bdf"] for g in gf.parse_amdsmi_list(text)] == ["0000:05:00.0", "0000:26:00.0", "0000:46:00.0"]

    gpus = gf.parse_amdsmi_list(fixture(LIST_KFD))
    assert len(gpus) == 2
    assert (gpus[0]["kfd_id"], gpus[0]["node_id"], gpus[0]["partition_id"]) == ("45412", "1", "0")
    assert gpus[1]["bdf"] == "0000:26:00.0"
    assert gpus[0]["device_id"] is None and gpus[0]["model"] is None  # UUID redacted by AMD


# -------------------------------------------------------------------------------- amd-smi version

@pytest.mark.parametrize("name, tool, rocm, amdgpu", [
    ("amd-smi-version__MI3xx__rocm-6.1.0__changelog.txt", "23.4.2+505b858", "6.1.0", None),
    ("amd-smi-version__MI300X__rocm-6.1.2__1.txt", "24.5.1+c5106a9", "6.1.2", None),
    (VERSION_633, "24.7.1+8dc45db", "6.3.3", None),
    (VERSION_INBOX, "25.3.0+ede62f2", "6.4.0", None),
    ("amd-smi-version__Radeon-R9700-non-instinct__rocm-7.2.1__1.txt", "26.2.2+e1a6bc5663", "7.2.1", "6.16.13"),
    ("amd-smi-version__unknown-gpu__rocm-7.10.0__docs.txt", "26.1.0+cd50d9e0", "7.10.0", "6.16.6"),
    (VERSION_JSON_702, "26.2.0+021c61fc", "7.0.2", "6.16.6"),
])
def test_amdsmi_version(name, tool, rocm, amdgpu):
    v = gf.parse_amdsmi_version(fixture(name))
    assert (v["tool_version"], v["rocm_version"], v["amdgpu_version"]) == (tool, rocm, amdgpu)


def test_amdsmi_version_inbox_driver_banner_is_not_a_driver_version():
    v = gf.parse_amdsmi_version(fixture(VERSION_INBOX))
    assert v["amdgpu_version"] is None
    assert v["amdgpu_version_raw"].startswith("Linuxversion6.8.0-79-generic(")
    assert v["inbox_kernel"] == "6.8.0-79-generic"
    assert v["library_version"] == "25.3.0"


def test_amdsmi_version_garbage():
    with pytest.raises(ValueError):
        gf.parse_amdsmi_version("Segmentation fault")


# -------------------------------------------------------------------------------------- rocm-smi

def test_rocm_smi_json_mi300a_x4():
    parsed = gf.parse_rocm_smi_json(fixture(ROCMSMI_JSON))
    assert parsed["driver_version"] == "6.16.13"
    gpus = parsed["gpus"]
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    assert {(g["model"], g["device_id"], g["gfx_target"], g["name"]) for g in gpus} == {
        ("MI300A", "0x74a0", "gfx942", "AMD Instinct MI300A")}
    # lenient about lines printed before the JSON
    assert gf.parse_rocm_smi_json("warning line\n" + fixture(ROCMSMI_JSON)) == parsed


# -------------------------------------------------------------------------------------- rocminfo

@pytest.mark.parametrize("name, marketing, model, device_id, node", [
    (ROCMINFO_MI300X, "AMD Instinct MI300X", "MI300X", "0x74a1", 2),
    (ROCMINFO_MI300X_2, "AMD Instinct MI300X", "MI300X", None, None),
    (ROCMINFO_MI308X, "AMD Instinct MI308X", "MI308X", None, None),
])
def test_rocminfo_gpu_agents(name, marketing, model, device_id, node):
    [agent] = gf.parse_rocminfo(fixture(name))
    assert agent["gfx_target"] == "gfx942"
    assert (agent["marketing_name"], agent["model"], agent["device_id"], agent["node"]) == (marketing, model, device_id, node)
    assert agent["uuid"].startswith("GPU-")


# ----------------------------------------------------------------------------------------- lspci

def test_lspci_mi325x_x8():
    devs = gf.parse_lspci(fixture(LSPCI_MI325X))
    assert len(devs) == 8
    assert {(d["device_id"], d["model"], d["class"]) for d in devs} == {("0x74a5", "MI325X", "Processing accelerators")}
    assert [d["bdf"] for d in devs][:2] == ["0000:05:00.0", "0000:26:00.0"]
    assert devs[-1]["bdf"] == "0000:e5:00.0"


@pytest.mark.parametrize("name, device_id, model", [(LSPCI_MI350X, "0x75a0", "MI350X"), (LSPCI_MI355X, "0x75a3", "MI355X")])
def test_lspci_mi35x_truncated_by_amd(name, device_id, model):
    text = fixture(name)
    assert gf.looks_truncated(text)
    devs = gf.parse_lspci(text)
    assert [d["bdf"] for d in devs] == ["0000:05:00.0", "0000:15:00.0", "0000:f5:00.0"]
    assert {(d["device_id"], d["model"]) for d in devs} == {(device_id, model)}


def test_lspci_mi300x_pp_paths_and_grep():
    devs = gf.parse_lspci(fixture(LSPCI_MI300X_PP), device_id="74a1")
    assert len(devs) == 8
    assert devs[0]["bdf"] == "0000:05:00.0" and devs[-1]["bdf"] == "0000:e7:00.0"
    assert {(d["device_id"], d["model"]) for d in devs} == {("0x74a1", "MI300X")}
    # without the queried ID, only the pci.ids name is there
    grep = gf.parse_lspci(fixture(LSPCI_MI300X_GREP))
    assert len(grep) == 8  # including the doc-typo vendor line
    assert {(d["device_id"], d["model"]) for d in grep} == {(None, "MI300X")}


# -------------------------------------------------------------------- version files, dkms status

def test_sys_module_amdgpu_version():
    assert gf.parse_sys_module_version(fixture(SYS_VERSION_DKMS)) == "6.12.12"
    assert gf.parse_sys_module_version(fixture(SYS_VERSION_MISSING)) is None  # cat's error text
    assert gf.parse_sys_module_version("") is None


def test_opt_rocm_info_version():
    listing = dict(line.split(":", 1) for line in fixture(ROCM_INFO_GREP).splitlines())
    assert len(listing) == 14
    version = listing["/opt/rocm/.info/version"]
    assert version == listing["/opt/rocm/.info/version-rocm"] == "6.4.0-47"
    assert gf.parse_rocm_version_file(version + "\n") == {"version": "6.4.0", "build": "47", "raw": "6.4.0-47"}
    assert gf.parse_rocm_version_file(fixture(ROCM_INFO_GREP))["version"] == "6.4.0"  # grep -H form
    assert gf.parse_rocm_version_file("") is None


def test_dkms_status_six_distros_and_two_kernels():
    entries = gf.parse_dkms_status(fixture(DKMS_6_DISTROS))
    assert len(entries) == 6
    assert {(e["module"], e["driver_version"], e["build"]) for e in entries} == {("amdgpu", "6.14.14", "2222715")}
    assert [e["distro"] for e in entries] == ["24.04", "22.04", "el10", "el10", "el9", None]
    assert entries[2]["kernel"] == "6.12.0-55.34.1.el10_0.x86_64"
    assert entries[2]["status"] == "installed (Original modules exist)"
    radeon = gf.parse_dkms_status(fixture(DKMS_RADEON))
    assert [e["kernel"] for e in radeon] == ["6.2.0-37-generic", "6.2.0-39-generic"]
    assert {e["driver_version"] for e in radeon} == {"6.2.4"}


# -------------------------------------------------------------------------------------- versions

@pytest.mark.parametrize("a, b, expected", [
    ("7.2.2", "7.2.2", True),
    ("7.2.2", "7.2.0", True),
    ("7.2.0", "7.2.2", False),
    ("7.2.0-48", "7.2.0", True),
    ("7.2.0-48", "7.2.2", False),
    ("7.10.0", "7.2.2", True),      # numeric, not lexical
    ("10.0", "7.2.2", True),
    ("7.2", "7.2.0", True),
    ("6.12.12", "6.12.12", True),
    ("6.12.12", "6.14.14", False),
    ("6.3.3.60303", "6.3.3", True),
    ("6.3.3", "6.3.3.60303", False),
    ("6.9.0-rc5+", "6.9.0", True),
    ("26.2.0+021c61fc", "26.2.0", True),
])
def test_version_at_least(a, b, expected):
    assert gf.version_at_least(a, b) is expected


@pytest.mark.parametrize("bad", [
    "", "N/A", "7.x", "latest", "1:6.12.12.60401-2164967.24.04",
    "Linuxversion6.8.0-79-generic(buildd@lcy02-amd64-049)", None, 7.2,
])
def test_version_at_least_rejects_bad_strings_naming_them(bad):
    with pytest.raises(ValueError) as exc:
        gf.version_at_least(bad, "7.2.2")
    assert repr(bad) in str(exc.value)
    with pytest.raises(ValueError) as exc:
        gf.version_at_least("7.2.2", bad)
    assert repr(bad) in str(exc.value)


# -------------------------------------------------------------------------------------- collector

class FakeRun:
    """Replays recorded outputs.  ``outputs`` maps argv tuples to (rc, stdout, stderr) or to a
    fixture name (rc 0).  ``files`` maps paths for ``cat``.  Other commands of an installed tool
    exit 1; commands of tools not in ``installed`` exit 127 (not installed)."""

    def __init__(self, outputs=None, files=None, installed=()):
        self.outputs = {tuple(k): v for k, v in (outputs or {}).items()}
        self.files = files or {}
        self.installed = set(installed) | {k[0] for k in self.outputs} | {"cat"}
        self.calls = []

    def __call__(self, argv):
        argv = tuple(argv)
        self.calls.append(argv)
        if argv in self.outputs:
            out = self.outputs[argv]
            return (0, fixture(out), "") if isinstance(out, str) else out
        if argv[0] not in self.installed:
            return 127, "", "%s: command not found" % argv[0]
        if argv[0] == "cat":
            path = argv[1]
            if path in self.files:
                return 0, self.files[path], ""
            return 1, "", "cat: %s: No such file or directory\n" % path
        if argv[0] == "lspci":
            return 0, "", ""  # no device with that ID
        return 1, "", "%s: unsupported here" % " ".join(argv)


def test_collect_amdsmi_first_mi300a_inbox_driver():
    run = FakeRun(
        outputs={gf.CMD_AMDSMI_STATIC: (0, static_json_from_text(MI300A_STATIC, wrapped=False), ""),
                 gf.CMD_AMDSMI_VERSION: VERSION_633},
        files={"/sys/module/amdgpu/srcversion": fixture(SYS_SRCVERSION_INBOX)},
    )
    rec = gf.collect(run)
    assert rec["source"] == "amd-smi"
    assert (rec["gpu_count"], rec["physical_count"], rec["model"], rec["device_id"]) == (4, 4, "MI300A", "0x74a0")
    assert rec["vram_mib_per_gpu"] == 64289
    assert rec["xgmi"] is True
    assert (rec["compute_partition"], rec["memory_partition"]) == ("SPX", "NPS1")
    # no TARGET_GRAPHICS_VERSION and no rocminfo: inferred from the model, and said so
    assert (rec["gfx_target"], rec["gfx_target_inferred"], rec["sources"]["gfx_target"]) == ("gfx942", True, "model table")
    # `amd-smi version --json` failed, the text form worked
    assert (rec["rocm_version"], rec["sources"]["rocm_version"]) == ("6.3.3", "amd-smi version")
    # inbox driver: amd-smi static's "6.9.0-rc5+" is the kernel, not an amdgpu version
    assert (rec["driver_kind"], rec["driver_version"]) == ("inbox", None)
    assert gf.CMD_ROCMSMI not in run.calls
    assert rec["missing_commands"] == ["lspci", "rocminfo", "dkms"]
    assert rec["pci_count"] is None
    json.dumps(rec)  # facts must be JSON-serializable


def test_collect_amdsmi_missing_falls_back_to_rocm_smi():
    rocm_version_content = "6.4.0-47\n"  # /opt/rocm/.info/version in ROCM_INFO_GREP
    run = FakeRun(
        outputs={gf.CMD_ROCMSMI: ROCMSMI_JSON},
        files={"/opt/rocm/.info/version": rocm_version_content,
               "/sys/module/amdgpu/version": fixture(SYS_VERSION_DKMS)},
    )
    rec = gf.collect(run)
    assert run.calls[0] == gf.CMD_AMDSMI_STATIC and run.calls[1] == gf.CMD_ROCMSMI
    assert rec["source"] == "rocm-smi"
    assert (rec["gpu_count"], rec["model"], rec["gfx_target"], rec["gfx_target_inferred"]) == (4, "MI300A", "gfx942", False)
    assert (rec["rocm_version"], rec["sources"]["rocm_version"]) == ("6.4.0", "/opt/rocm/.info/version")
    assert (rec["driver_version"], rec["driver_kind"]) == ("6.12.12", "dkms")
    assert rec["sources"]["driver_version"] == "/sys/module/amdgpu/version"
    assert "amd-smi" in rec["missing_commands"] and "rocm-smi" not in rec["missing_commands"]
    assert not any(c[0] == "amd-smi" for c in run.calls[1:])  # a missing tool is not retried


def test_collect_driver_from_tools_when_sys_is_unreadable():
    run = FakeRun(outputs={gf.CMD_ROCMSMI: ROCMSMI_JSON})
    run.installed.discard("cat")
    rec = gf.collect(run)
    assert (rec["driver_version"], rec["sources"]["driver_version"], rec["driver_kind"]) == ("6.16.13", "rocm-smi", None)


def test_collect_only_lspci_mi325x():
    run = FakeRun(outputs={gf.cmd_lspci("0x74a5"): LSPCI_MI325X, ("dkms", "status"): DKMS_6_DISTROS})
    rec = gf.collect(run)
    assert [c for c in run.calls if c[0] == "lspci"] == [gf.cmd_lspci(d) for d in sorted(gf.PCI_DEVICE_MODELS)]
    assert gf.cmd_lspci("0x74a5") == ("lspci", "-d", "1002:74a5")
    assert rec["source"] == "lspci"
    assert (rec["gpu_count"], rec["pci_count"], rec["physical_count"]) == (8, 8, 8)
    assert (rec["model"], rec["device_id"], rec["gfx_target"], rec["gfx_target_inferred"]) == ("MI325X", "0x74a5", "gfx942", True)
    assert rec["driver_kind"] == "not loaded"
    assert rec["driver_dkms_installed"] == ["6.14.14"]
    assert rec["rocm_version"] is None
    problems = gf.evaluate(rec, expected_count=8, expected_model="MI325X")
    assert problems == ["GPUs are visible only on the PCI bus: neither amd-smi nor rocm-smi reported "
                        "them (ROCm not installed or amdgpu not loaded)"]


def test_collect_amdsmi_static_fails_list_gives_count():
    run = FakeRun(outputs={gf.CMD_AMDSMI_STATIC: (1, "", "ERROR:root:Unable to detect any GPU devices\n"),
                           gf.CMD_AMDSMI_LIST: (0, list_json_from_text(LIST_X8), ""),
                           gf.CMD_AMDSMI_VERSION_JSON: VERSION_JSON_702,
                           gf.cmd_lspci("0x74a1"): LSPCI_MI300X_PP})
    rec = gf.collect(run)
    assert rec["source"] == "amd-smi list"
    assert (rec["gpu_count"], rec["pci_count"], rec["model"]) == (8, 8, "MI300X")
    assert rec["errors"] == ["amd-smi static --json: rc=1, no output: ERROR:root:Unable to detect any GPU devices"]
    assert (rec["rocm_version"], rec["sources"]["rocm_version"]) == ("7.0.2", "amd-smi version")
    assert gf.evaluate(rec, expected_count=8, expected_model="AMD Instinct MI300X") == []


def test_collect_unparseable_amdsmi_json_then_lspci_mi355x():
    run = FakeRun(outputs={gf.CMD_AMDSMI_STATIC: MI355X_CLOCK_JSON, gf.cmd_lspci("75a3"): LSPCI_MI355X})
    rec = gf.collect(run)
    assert rec["errors"][0].startswith("amd-smi static --json: rc=0, amd-smi static --json: output is not JSON")
    assert gf.CMD_ROCMSMI in run.calls
    assert rec["source"] == "lspci"
    assert (rec["gpu_count"], rec["model"], rec["gfx_target"]) == (3, "MI355X", "gfx950")  # AMD cut the list to 3 lines
    assert gf.evaluate(rec, expected_count=8)[0].startswith("expected 8 GPUs, found 3 (source: lspci")


def test_collect_rocminfo_fills_gfx_target_and_lspci_cross_check():
    run = FakeRun(outputs={gf.CMD_AMDSMI_STATIC: (0, static_json_from_text(MI300X_STATIC, wrapped=True), ""),
                           gf.CMD_ROCMINFO: ROCMINFO_MI300X,
                           gf.cmd_lspci("74a1"): LSPCI_MI300X_PP})
    rec = gf.collect(run)
    assert (rec["gfx_target"], rec["gfx_target_inferred"], rec["sources"]["gfx_target"]) == ("gfx942", False, "rocminfo")
    assert (rec["gpu_count"], rec["pci_count"]) == (1, 8)
    assert "lspci shows 8 AMD Instinct devices but amd-smi reports only 1 GPUs" in gf.evaluate(rec)


def test_collect_inbox_banner_without_sys():
    run = FakeRun(outputs={gf.CMD_AMDSMI_STATIC: (0, static_json_from_text(MI300A_STATIC, wrapped=True), ""),
                           gf.CMD_AMDSMI_VERSION: VERSION_INBOX})
    run.installed.discard("cat")
    rec = gf.collect(run)
    assert (rec["driver_kind"], rec["driver_version"], rec["inbox_kernel"]) == ("inbox", None, "6.8.0-79-generic")
    assert rec["rocm_version"] == "6.4.0"


def test_collect_nothing_installed():
    rec = gf.collect(FakeRun())
    assert (rec["gpu_count"], rec["source"], rec["model"], rec["pci_count"]) == (0, None, None, None)
    assert rec["missing_commands"] == ["amd-smi", "rocm-smi", "lspci", "dkms"]
    assert rec["driver_kind"] == "not loaded"
    assert gf.evaluate(rec, expected_count=8) == [
        "expected 8 GPUs, found 0 (source: none; not installed: amd-smi, rocm-smi, lspci, dkms)"]


def test_collect_survives_a_raising_run():
    def run(argv):
        raise FileNotFoundError(argv[0])
    rec = gf.collect(run)
    assert rec["gpu_count"] == 0 and "amd-smi" in rec["missing_commands"]


# --------------------------------------------------------------------------------------- evaluate

def _record(**kw):
    rec = gf._empty_record()
    rec.update(gpu_count=8, source="amd-smi", model="MI355X", models=["MI355X"],
               rocm_version="7.2.2", driver_version="6.12.12", driver_kind="dkms")
    rec.update(kw)
    return rec


def test_evaluate_all_good():
    assert gf.evaluate(_record(), expected_count=8, expected_model="AMD Instinct MI355X",
                       min_rocm_version="7.2.2") == []


@pytest.mark.parametrize("kw, opts, problem", [
    ({}, {"expected_model": "MI350X"}, "expected model MI350X, found MI355X"),
    ({"model": None, "models": ["MI350X", "MI355X"]}, {"expected_model": "MI355X"}, "expected model MI355X, found a mix: MI350X, MI355X"),
    ({"model": None, "models": []}, {"expected_model": "MI355X"}, "expected model MI355X, but the model is unknown (source: amd-smi)"),
    ({"rocm_version": "7.2.0"}, {"min_rocm_version": "7.2.2"}, "ROCm 7.2.0 is older than the required 7.2.2"),
    ({"rocm_version": None}, {"min_rocm_version": "7.2.2"}, "ROCm 7.2.2 or later required, but no ROCm version was found"),
])
def test_evaluate_problems(kw, opts, problem):
    assert gf.evaluate(_record(**kw), **opts) == [problem]


def test_evaluate_count_mentions_partition_mode():
    rec = _record(gpu_count=32, compute_partition="QPX")
    assert gf.evaluate(rec, expected_count=8) == [
        "expected 8 GPUs, found 32 (source: amd-smi; compute partition QPX multiplies logical GPUs)"]


def test_evaluate_rejects_bad_options():
    with pytest.raises(ValueError, match="'7.2.x'"):
        gf.evaluate(_record(), min_rocm_version="7.2.x")


def test_model_gfx_table_only_where_supported():
    assert gf.MODEL_GFX_TARGETS == {"MI300A": "gfx942", "MI300X": "gfx942", "MI308X": "gfx942",
                                    "MI325X": "gfx942", "MI350X": "gfx950", "MI355X": "gfx950"}
    # the device-id table agrees with every recorded ID
    assert gf.model_from_device_id("0x75A3") == "MI355X"
    assert gf.model_from_device_id(0x74a5) == "MI325X"
    assert gf.model_from_device_id("0x1234") is None
