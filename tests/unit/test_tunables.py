"""AMD's runtime tunables: read, drift, apply and reset on a copy of /proc and /sys.

Machine-wide kernel.* and vm.* settings must not change on the test machine, so every test works
under a path prefix holding files laid out like the real ones, with real starting values.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro.node import tunables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def fake_root(tmp_path):
    files = {
        "proc/sys/kernel/nmi_watchdog": "1",
        "proc/sys/kernel/numa_balancing": "1",
        "proc/sys/kernel/randomize_va_space": "2",
        "proc/sys/vm/drop_caches": "0",
        "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never",
        "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never",
    }
    for cpu in range(4):
        files[f"sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"] = "powersave"
        files[f"sys/devices/system/cpu/cpu{cpu}/cpuidle/state2/disable"] = "0"
    for rel, value in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    return tmp_path


def test_reads_bracketed_sysfs_choices(fake_root):
    state = tunables.read_state(str(fake_root))
    assert state["thp_enabled"] == "madvise"
    assert state["thp_defrag"] == "madvise"
    assert state["cpu_governor"] == "powersave"
    assert state["amdgpu_module"] == "absent"


def test_drift_names_every_setting_off_amds_values(fake_root):
    drift = tunables.drift(tunables.read_state(str(fake_root)))
    assert set(drift) == {"nmi_watchdog", "numa_balancing", "randomize_va_space", "thp_enabled",
                          "thp_defrag", "cpu_governor", "cpu_idle_state2_disabled", "amdgpu_module"}
    assert drift["randomize_va_space"] == {"current": "2", "wanted": "0"}


def test_apply_then_reset_restores_what_was_there(fake_root, tmp_path):
    before = tunables.read_state(str(fake_root))
    record = tmp_path / "state" / "before.json"
    assert tunables.save_before(str(record), before)
    target = {k: v for k, v in tunables.wanted().items() if k != "amdgpu_module"}
    assert tunables.set_values(target, str(fake_root), use_commands=False) == []
    after = tunables.read_state(str(fake_root))
    assert after["numa_balancing"] == "0" and after["cpu_governor"] == "performance"
    assert set(tunables.drift(after)) == {"amdgpu_module"}
    # A second apply must not overwrite the record of the original values.
    assert not tunables.save_before(str(record), after)
    restore = {k: v for k, v in tunables.load_before(str(record)).items() if k != "amdgpu_module"}
    assert tunables.set_values(restore, str(fake_root), use_commands=False) == []
    assert tunables.read_state(str(fake_root)) == before


def run_module(args):
    """The real module through ansible, against the prefix."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_tunables",
           "-a", args, "-o"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return proc


def test_module_apply_records_then_reset_restores(fake_root, tmp_path):
    before = tunables.read_state(str(fake_root))
    args = f"use_commands=false root={fake_root} state_file={tmp_path}/rec.json"
    proc = run_module(f"mode=apply {args}")
    assert "CHANGED" in proc.stdout, proc.stdout + proc.stderr
    assert tunables.read_state(str(fake_root))["thp_enabled"] == "always"
    assert json.loads((tmp_path / "rec.json").read_text())["thp_enabled"] == "madvise"
    assert "SUCCESS" in run_module(f"mode=apply {args}").stdout  # idempotent: nothing to change
    assert "SUCCESS" in run_module(f"mode=check {args}").stdout  # no change reported by check
    proc = run_module(f"mode=reset {args}")
    assert "CHANGED" in proc.stdout, proc.stdout
    # sysfs shows the chosen value in brackets; the fake files hold it plain: compare states.
    assert tunables.read_state(str(fake_root)) == before


def test_module_check_mode_is_read_only(fake_root, tmp_path):
    snapshot = {p: p.read_text() for p in fake_root.rglob("*") if p.is_file()}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_tunables", "-a",
         f"mode=apply use_commands=false root={fake_root} state_file={tmp_path}/rec.json", "--check", "-o"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "CHANGED" in proc.stdout
    assert {p: p.read_text() for p in fake_root.rglob("*") if p.is_file()} == snapshot
    assert not (tmp_path / "rec.json").exists()


def test_reset_without_a_record_fails_clearly(fake_root, tmp_path):
    proc = run_module(f"mode=reset use_commands=false root={fake_root} state_file={tmp_path}/none.json")
    assert "FAILED" in proc.stdout and "no record of the values before apply" in proc.stdout


def test_module_keeps_the_kernel_settings_across_reboots_and_reset_removes_them(fake_root, tmp_path):
    conf = tmp_path / "sysctl.d" / "90-mlperf-repro.conf"
    conf.parent.mkdir()
    args = f"use_commands=false root={fake_root} state_file={tmp_path}/rec.json sysctl_file={conf}"
    dry = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_tunables", "-a", f"mode=apply persistent=true {args}", "--check", "-o"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "CHANGED" in dry.stdout and not conf.exists(), dry.stdout
    assert "CHANGED" in run_module(f"mode=apply persistent=true {args}").stdout
    assert conf.read_text().splitlines()[1:] == [
        "kernel.nmi_watchdog = 0", "kernel.numa_balancing = 0", "kernel.randomize_va_space = 0"]
    assert oct(conf.stat().st_mode & 0o777) == "0o644"
    assert "SUCCESS" in run_module(f"mode=apply persistent=true {args}").stdout  # nothing left to do
    assert "CHANGED" in run_module(f"mode=reset {args}").stdout
    assert not conf.exists()


def test_module_check_names_the_node_and_fails_on_drift_only_when_asked(fake_root, tmp_path):
    args = f"mode=check use_commands=false root={fake_root} state_file={tmp_path}/rec.json node_name=node07"
    warned = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_tunables",
                             "-a", args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "SUCCESS" in warned.stdout  # the default callback: warnings on the console
    said = warned.stdout + warned.stderr
    assert "node07: " in said and "setting(s) differ from AMD's" in said, said
    failed = run_module(f"{args} fail_on_drift=true")
    assert "FAILED" in failed.stdout and "node07: tunables drift: " in failed.stdout, failed.stdout


# --- AMD's steps 1 and 3 at a campaign's start (actions, not states) ------------------------

def enumerator(root, output, rc=0):
    """A stand-in rocm_agent_enumerator where ROCm installs it, under the prefix."""
    path = root / "opt" / "rocm" / "bin" / "rocm_agent_enumerator"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nprintf '%s'\nexit %d\n" % (output.replace("\n", "\\n"), rc))
    path.chmod(0o755)
    return path


def module_json(args, check=False):
    """The real module through ansible, its result as JSON (one line, -o)."""
    cmd = [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_tunables",
           "-a", json.dumps(args), "-o"] + (["--check"] if check else [])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    line = proc.stdout.strip().splitlines()[-1]
    status = line.split(" | ")[1].split(" ")[0].rstrip("!")
    return status, json.loads(line[line.index("{"):])


def start_args(root, tmp_path, **more):
    args = {"mode": "apply", "use_commands": False, "root": str(root),
            "state_file": f"{tmp_path}/rec.json", "node_name": "node03",
            "actions": ["drop_caches", "rocm_agent_enumerator"], "gpu": "MI355X"}
    args.update(more)
    return args


def test_start_actions_drop_caches_and_record_the_gfx_targets_never_as_a_change(fake_root, tmp_path):
    enumerator(fake_root, "gfx000\ngfx950\ngfx950\n")
    status, result = module_json(start_args(fake_root, tmp_path))
    assert status == "CHANGED"  # the settings were applied
    assert (fake_root / "proc/sys/vm/drop_caches").read_text().strip() == "3"
    assert result["gfx_targets"] == ["gfx950"]
    assert [a["name"] for a in result["actions"]] == ["drop_caches", "rocm_agent_enumerator"]
    assert all(a["done"] for a in result["actions"])
    # Again, settings as AMD's: the actions are done again but the call changes nothing.
    (fake_root / "proc/sys/vm/drop_caches").write_text("0\n")
    status, result = module_json(start_args(fake_root, tmp_path))
    assert status == "SUCCESS" and result["changed"] is False, result
    assert (fake_root / "proc/sys/vm/drop_caches").read_text().strip() == "3"
    assert result["gfx_targets"] == ["gfx950"]


def test_start_actions_are_not_done_in_check_mode(fake_root, tmp_path):
    enumerator(fake_root, "gfx000\ngfx950\n")
    status, result = module_json(start_args(fake_root, tmp_path, mode="check"), check=True)
    assert status == "SUCCESS"
    assert (fake_root / "proc/sys/vm/drop_caches").read_text().strip() == "0"
    assert [a["done"] for a in result["actions"]] == [False, False]
    assert result["gfx_targets"] == []


@pytest.mark.parametrize("output, rc, said", [
    (None, 0, "rocm_agent_enumerator: command not found"),
    ("gfx000\n", 0, "rocm_agent_enumerator lists no GPU agent"),
    ("", 1, "rocm_agent_enumerator exited 1"),
])
def test_no_gpu_agent_fails_naming_the_node_and_the_command(fake_root, tmp_path, output, rc, said):
    if output is not None:
        enumerator(fake_root, output, rc)
    status, result = module_json(start_args(fake_root, tmp_path))
    assert status == "FAILED"
    assert result["msg"].startswith("node03: ") and said in result["msg"], result["msg"]


@pytest.mark.parametrize("gpu", ["none", "any"])
def test_a_platform_without_a_gpu_needs_no_gpu_agent(fake_root, tmp_path, gpu):
    status, result = module_json(start_args(fake_root, tmp_path, gpu=gpu))
    assert status in ("CHANGED", "SUCCESS"), result
    probe = result["actions"][1]
    assert probe["name"] == "rocm_agent_enumerator" and probe["done"] is False
    assert gpu in probe["why"]


def test_another_gpus_gfx_target_is_said_not_refused(fake_root, tmp_path):
    enumerator(fake_root, "gfx000\ngfx942\n")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible"), "localhost", "-m",
                           "mlperf_tunables", "-a", json.dumps(start_args(fake_root, tmp_path))],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    said = proc.stdout + proc.stderr
    assert "CHANGED" in said and "node03: rocm_agent_enumerator lists gfx942, not MI355X's gfx950" in said


def test_check_with_fail_on_drift_fails_before_the_actions(fake_root, tmp_path):
    enumerator(fake_root, "gfx000\ngfx950\n")
    status, result = module_json(start_args(fake_root, tmp_path, mode="check", fail_on_drift=True))
    assert status == "FAILED" and "randomize_va_space is 2 (AMD: 0)" in result["msg"]
    assert (fake_root / "proc/sys/vm/drop_caches").read_text().strip() == "0"


def test_the_runner_records_the_tunables_at_each_run_start(fake_root):
    from mlperf_repro.node.campaign import record_tunables
    record = {}
    record_tunables({"tunables_root": str(fake_root)}, record)
    assert record["tunables"]["as_amd"] is False
    assert record["tunables"]["drift"]["randomize_va_space"] == {"current": "2", "wanted": "0"}
    assert record["tunables"]["state"] == tunables.read_state(str(fake_root))
    nothing = {}
    record_tunables({}, nothing)  # campaign_tunables_record off: the record is as before
    assert nothing == {}
