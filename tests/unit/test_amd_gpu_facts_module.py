"""library/amd_gpu_facts.py: documentation, a run through ansible-core's test helpers with recorded
outputs, and a real ``ansible localhost -m amd_gpu_facts`` on this machine (which has no GPU)."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ansible.module_utils.testing import patch_module_args  # noqa: E402  (ansible-core >= 2.19)

from mlperf_repro.node import gpu_facts as gf  # noqa: E402

DATA = ROOT / "tests" / "data" / "gpu-outputs"
MODULE_PATH = ROOT / "library" / "amd_gpu_facts.py"
LSPCI_MI325X = "lspci-d-1002-74a5__MI325X-x8__n-a__1.txt"
ROCM_INFO_GREP = "opt-rocm-info-grep__n-a__rocm-6.4.0__semisynthetic.txt"


def load_module():
    spec = importlib.util.spec_from_file_location("amd_gpu_facts_under_test", MODULE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mod():
    return load_module()


class Replay:
    """run(argv) replaying recorded outputs; other tools are not installed, cat finds no file."""

    def __init__(self, outputs):
        self.outputs = outputs

    def __call__(self, argv):
        argv = tuple(argv)
        if argv in self.outputs:
            out = self.outputs[argv]
            return out if isinstance(out, tuple) else (0, (DATA / out).read_text(encoding="utf-8"), "")
        if argv[0] == "cat":
            return 1, "", "cat: %s: No such file or directory" % argv[1]
        if argv[0] == "lspci":
            return 0, "", ""
        return 127, "", "not found"


def run_main(mod, args, capsys, monkeypatch, replay=None):
    if replay is not None:
        monkeypatch.setattr(mod, "module_runner", lambda module: replay)
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            mod.main()
    return json.loads(capsys.readouterr().out)


def test_documentation_matches_argument_spec(mod):
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    ret = yaml.safe_load(mod.RETURN)
    assert doc["module"] == "amd_gpu_facts"
    assert doc["attributes"]["check_mode"]["support"] == "full"
    assert {k: v["type"] for k, v in doc["options"].items()} == {
        "expected_count": "int", "expected_model": "str", "min_rocm_version": "str",
        "rocm_pending": "bool"}
    documented = set(ret["ansible_facts"]["contains"]["amd_gpu"]["contains"])
    assert documented == set(gf._empty_record())
    assert "problems" in ret


def test_module_uses_bundled_module_utils_import():
    source = MODULE_PATH.read_text()
    # AnsiballZ bundles module_utils it finds in `from ansible.module_utils.X import` statements
    assert "from ansible.module_utils.gpu_facts import" in source


def rocm_version_file():
    """/opt/rocm/.info/version as recorded (the grep -H listing's line for that file)."""
    listing = (DATA / ROCM_INFO_GREP).read_text(encoding="utf-8")
    return dict(line.split(":", 1) for line in listing.splitlines())["/opt/rocm/.info/version"] + "\n"


@pytest.mark.parametrize("check_mode", [False, True])
def test_module_with_recorded_outputs(mod, capsys, monkeypatch, check_mode):
    replay = Replay({gf.cmd_lspci("74a5"): LSPCI_MI325X,
                     gf.CMD_ROCM_VERSION_FILE: (0, rocm_version_file(), "")})
    args = {"expected_count": 8, "expected_model": "MI325X", "min_rocm_version": "7.2.2"}
    if check_mode:
        args["_ansible_check_mode"] = True
    result = run_main(mod, args, capsys, monkeypatch, replay)
    assert not result.get("failed") and not result.get("skipped")
    assert result["changed"] is False
    facts = result["ansible_facts"]["amd_gpu"]
    assert (facts["gpu_count"], facts["model"], facts["gfx_target"], facts["source"]) == (8, "MI325X", "gfx942", "lspci")
    assert (facts["rocm_version"], facts["sources"]["rocm_version"]) == ("6.4.0", "/opt/rocm/.info/version")
    assert result["problems"] == [
        "GPUs are visible only on the PCI bus: neither amd-smi nor rocm-smi reported them "
        "(ROCm not installed or amdgpu not loaded)",
        "ROCm 6.4.0 is older than the required 7.2.2",
    ]


def test_module_on_this_machine_through_test_helpers(mod, capsys, monkeypatch):
    result = run_main(mod, {"expected_count": 8}, capsys, monkeypatch)
    assert not result.get("failed")
    facts = result["ansible_facts"]["amd_gpu"]
    if facts["gpu_count"] == 0:  # the development machine has no GPU
        assert any(p.startswith("expected 8 GPUs, found 0") for p in result["problems"])


@pytest.mark.parametrize("args, named", [
    ({"min_rocm_version": "7.2.x"}, "'7.2.x'"),
])
def test_module_fails_on_bad_options_before_running_anything(mod, capsys, monkeypatch, args, named):
    def explode(module):
        raise AssertionError("nothing should run")
    monkeypatch.setattr(mod, "module_runner", explode)
    result = run_main(mod, args, capsys, monkeypatch)
    assert result["failed"] is True
    assert named in result["msg"]


def test_real_ansible_adhoc_without_gpu(tmp_path):
    """``ansible localhost -m amd_gpu_facts -M library`` for real: the module and its bundled
    module_utils run on this GPU-less machine, succeed with gpu_count 0 and list the problem."""
    ansible = Path(sys.executable).with_name("ansible")
    if not ansible.exists():
        pytest.skip("ansible CLI not installed next to this interpreter")
    env = dict(os.environ)
    env.update({
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_MODULE_UTILS": str(ROOT / "mlperf_repro" / "node"),
        "ANSIBLE_CACHE_PLUGIN": "memory",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        # keep the AnsiballZ payload to check what was bundled
        "ANSIBLE_KEEP_REMOTE_FILES": "1",
        "ANSIBLE_PIPELINING": "0",
        "ANSIBLE_REMOTE_TMP": str(tmp_path / "remote"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "local"),
    })
    proc = subprocess.run(
        [str(ansible), "localhost", "-m", "amd_gpu_facts", "-M", str(ROOT / "library"),
         "-a", "expected_count=8", "-e", "ansible_python_interpreter=%s" % sys.executable],
        cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head, sep, body = proc.stdout.partition(" => ")
    assert head.strip().endswith("localhost | SUCCESS"), proc.stdout + proc.stderr
    result = json.loads(body)
    facts = result["ansible_facts"]["amd_gpu"]
    assert facts["gpu_count"] == 0, "this test expects a machine without AMD GPUs"
    assert any(p.startswith("expected 8 GPUs, found 0") for p in result["problems"])
    assert not result.get("failed")

    # AnsiballZ really carried gpu_facts as ansible.module_utils.gpu_facts
    [payload] = glob.glob(str(tmp_path / "remote" / "*" / "AnsiballZ_amd_gpu_facts.py"))
    subprocess.run([sys.executable, payload, "explode"], cwd=os.path.dirname(payload),
                   check=True, capture_output=True, timeout=60)
    bundled = Path(payload).parent / "debug_dir" / "ansible" / "module_utils" / "gpu_facts.py"
    assert bundled.read_bytes() == (ROOT / "mlperf_repro" / "node" / "gpu_facts.py").read_bytes()


def test_preflight_probe_reads_the_gpus_in_the_same_module_run(mod, capsys, monkeypatch, tmp_path):
    """mlperf_preflight with ``gpus`` gives amd_gpu_facts' record and problems, after its own."""
    spec = importlib.util.spec_from_file_location("mlperf_preflight_under_test",
                                                  ROOT / "library" / "mlperf_preflight.py")
    preflight = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(preflight)
    replay = Replay({gf.cmd_lspci("74a5"): LSPCI_MI325X,
                     gf.CMD_ROCM_VERSION_FILE: (0, rocm_version_file(), "")})
    gpus = {"expected_count": 8, "expected_model": "MI325X", "min_rocm_version": "7.2.2"}
    alone = run_main(mod, dict(gpus), capsys, monkeypatch, replay)
    args = {"paths": [{"label": "LOGDIR", "path": str(tmp_path), "need_gb": 10 ** 6}],
            "gpus": gpus, "deferred": ["docker"]}
    monkeypatch.setattr(preflight, "module_runner", lambda module: replay)
    merged = run_main(preflight, args, capsys, monkeypatch)
    assert merged["gpus"] == merged["ansible_facts"]["amd_gpu"] == alone["ansible_facts"]["amd_gpu"]
    assert merged["problems"][0].startswith("LOGDIR: ")  # the probe's own problem first
    assert merged["problems"][1:] == alone["problems"]
    assert merged["deferred"] == ["docker"]
    without = run_main(preflight, {"paths": []}, capsys, monkeypatch)
    assert without["gpus"] is None and "ansible_facts" not in without
