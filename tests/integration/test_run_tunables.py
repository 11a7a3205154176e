"""Issue 14 item 5: the run stage checks the tunables at campaign start and on every resume.

Real playbook runs on inventory/local (the smoke benchmark, real detached runner). Tunables are
global to a machine, so every run works on a copy of the /proc and /sys files under a prefix
(``tunables_root``) holding drifted values, as a node has them after a reboot; this machine's own
settings are compared before and after and must not change.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node import tunables
from mlperf_repro.node.campaign import group_members

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration

#: What a node has after a reboot: none of AMD's values.
DRIFTED = {
    "proc/sys/kernel/nmi_watchdog": "1",
    "proc/sys/kernel/numa_balancing": "1",
    "proc/sys/kernel/randomize_va_space": "2",
    "proc/sys/vm/drop_caches": "0",
    "sys/kernel/mm/transparent_hugepage/enabled": "always [madvise] never",
    "sys/kernel/mm/transparent_hugepage/defrag": "always defer defer+madvise [madvise] never",
    **{f"sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor": "powersave" for c in range(2)},
    **{f"sys/devices/system/cpu/cpu{c}/cpuidle/state2/disable": "0" for c in range(2)},
}
CAMPAIGN_TASK = "campaign : Start the campaign, or re-attach to an unfinished one"
TUNABLES_TASK = "campaign : Tunables at the campaign's start"


def reboot(root: Path):
    """The settings as a fresh boot has them (the amdgpu driver loaded)."""
    for rel, value in DRIFTED.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")
    (root / "sys" / "module" / "amdgpu").mkdir(parents=True, exist_ok=True)


def dropped(root: Path) -> bool:
    return (root / "proc/sys/vm/drop_caches").read_text().strip() == "3"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    base = tmp_path_factory.mktemp("run-tunables")
    troot = base / "tunables-root"
    reboot(troot)
    values = {"mlperf_local_root": str(base / "local"), "mlperf_results_dir": str(base / "results"),
              "mlperf_nexp": 3, "mlperf_allow_partial": True, "tunables_root": str(troot),
              "tunables_state_file": str(base / "state" / "tunables-before.json")}
    (base / "vars.yml").write_text(yaml.safe_dump(values))
    lab = {"base": base, "root": troot, "vars": base / "vars.yml", "machine": tunables.read_state("/"),
           "logs": base / "local" / "logs" / "smoke" / "CPU_1x1x1",
           "results": base / "results" / "smoke" / "CPU_1x1x1",
           "code": base / "local" / "work" / "code" / "smoke"}
    playbook(lab, "--tags", "data,render")
    yield lab
    assert tunables.read_state("/") == lab["machine"]  # this machine's settings never changed


def playbook(lab, *args, check=True, **extra):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local", "-e",
            f"@{lab['vars']}", *args]
    for key, value in extra.items():
        argv += ["-e", json.dumps({key: value})]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc


def task_results(stdout):
    """Task name -> status (ok, changed, skipping, fatal) of the host, from the default callback."""
    results, task = {}, None
    for line in stdout.splitlines():
        header = re.match(r"^TASK \[(.+?)\] \*+", line)
        if header:
            task = re.sub(r" \((apply|check)\)$", "", header.group(1))
        elif task and re.match(r"^(ok|changed|skipping|fatal): \[local\]", line):
            results[task] = line.split(":", 1)[0]
    return results


def campaign_dirs(lab):
    return sorted(p for p in lab["logs"].iterdir() if p.is_dir()) if lab["logs"].is_dir() else []


def test_check_with_fail_on_drift_names_the_drift_and_starts_no_run(lab):
    proc = playbook(lab, "--tags", "run", check=False, campaign_tunables="check",
                    campaign_tunables_fail_on_drift=True)
    assert proc.returncode != 0
    assert task_results(proc.stdout)[TUNABLES_TASK] == "fatal"
    assert "local: tunables drift: " in proc.stdout
    for said in ("randomize_va_space is 2 (AMD: 0)", "thp_enabled is madvise (AMD: always)",
                 "cpu_governor is powersave (AMD: performance)", "nmi_watchdog is 1 (AMD: 0)"):
        assert said in proc.stdout
    assert CAMPAIGN_TASK not in task_results(proc.stdout)
    assert campaign_dirs(lab) == []  # no campaign, no run
    assert tunables.drift(tunables.read_state(str(lab["root"])))  # nothing applied
    assert not dropped(lab["root"])  # no action after the failure


def test_check_mode_changes_nothing(lab):
    proc = playbook(lab, "--tags", "run", "--check", campaign_tunables="apply")
    assert task_results(proc.stdout)[TUNABLES_TASK] == "changed"  # what apply would do
    assert campaign_dirs(lab) == []
    assert (lab["root"] / "proc/sys/kernel/randomize_va_space").read_text() == "2\n"
    assert not dropped(lab["root"])
    assert not Path(yaml.safe_load(lab["vars"].read_text())["tunables_state_file"]).exists()


def test_check_reports_drift_runs_and_the_report_names_it_per_run(lab):
    proc = playbook(lab, "--tags", "run,collect,score,report", campaign_tunables="check")
    assert "local: 7 setting(s) differ from AMD's" in proc.stdout + proc.stderr
    assert task_results(proc.stdout)[TUNABLES_TASK] == "ok"
    assert dropped(lab["root"])  # AMD's step 1, an action, done at the start
    assert tunables.drift(tunables.read_state(str(lab["root"])))  # check applies nothing
    (campaign,) = sorted(lab["results"].iterdir())
    state = json.loads((campaign / "local" / "state.json").read_text())
    assert [run["status"] for run in state["runs"]] == ["success"] * 3
    for run in state["runs"]:
        assert run["tunables"]["as_amd"] is False
        assert run["tunables"]["drift"]["randomize_va_space"] == {"current": "2", "wanted": "0"}
        assert run["tunables"]["state"]["thp_enabled"] == "madvise"
    report = (campaign / "report.md").read_text()
    assert "As AMD sets them in 0 of 3 runs." in report
    assert re.search(r"- result_0\.txt: drift from AMD's: .*randomize_va_space is 2 \(AMD: 0\)", report)
    assert json.loads((campaign / "report.json").read_text())["tunables"]["local"]["result_2.txt"]["as_amd"] is False
    assert 'data-as-amd="no"' in (campaign / "report.html").read_text()


def gate_runs(lab) -> Path:
    """Runs wait for a file before they start: the campaign is caught mid-way, every time."""
    script = lab["code"] / "run_and_time.sh"
    real = lab["code"] / "run_and_time.real.sh"
    if not real.exists():
        script.rename(real)
        script.write_text('#!/bin/bash\nwhile [ ! -e "%s" ]; do sleep 0.1; done\nexec bash ./run_and_time.real.sh "$@"\n'
                          % (lab["base"] / "go"))
        script.chmod(0o755)
    return lab["base"] / "go"


def test_apply_then_a_resume_after_a_reboot_applies_again_and_every_run_records_it(lab):
    reboot(lab["root"])
    go = gate_runs(lab)
    before = set(campaign_dirs(lab))
    started = playbook(lab, "--tags", "run", campaign_tunables="apply", campaign_wait=False)
    assert task_results(started.stdout)[TUNABLES_TASK] == "changed"
    assert tunables.drift(tunables.read_state(str(lab["root"]))) == {}
    assert dropped(lab["root"])
    record = json.loads(Path(yaml.safe_load(lab["vars"].read_text())["tunables_state_file"]).read_text())
    assert record["randomize_va_space"] == "2"  # what was there before the first apply
    (campaign,) = set(campaign_dirs(lab)) - before
    # The node reboots: the runner and its run are gone, and so are the settings.
    state = json.loads((campaign / "state.json").read_text())
    os.killpg(state["runner"]["pid"], signal.SIGKILL)
    for run in state["runs"]:
        if run.get("process"):
            os.killpg(run["process"]["pid"], signal.SIGKILL)
    groups = [state["runner"]] + [run["process"] for run in state["runs"] if run.get("process")]
    for _ in range(600):  # until the killed processes are gone (a bound, not a timing assertion)
        if not any(group_members(ident) for ident in groups):
            break
        time.sleep(0.1)
    reboot(lab["root"])
    go.touch()
    resumed = playbook(lab, "--tags", "run,collect,score,report", "-v", campaign_tunables="apply")
    assert '"action": "resumed"' in resumed.stdout
    assert task_results(resumed.stdout)[TUNABLES_TASK] == "changed"  # applied again
    assert tunables.drift(tunables.read_state(str(lab["root"]))) == {}
    assert dropped(lab["root"])
    assert json.loads(Path(yaml.safe_load(lab["vars"].read_text())["tunables_state_file"]).read_text()) == record
    result = lab["results"] / campaign.name
    state = json.loads((result / "local" / "state.json").read_text())
    assert [run["status"] for run in state["runs"]] == ["success"] * 3
    assert all(run["tunables"]["as_amd"] is True and run["tunables"]["drift"] == {} for run in state["runs"])
    report = (result / "report.md").read_text()
    assert "As AMD sets them in 3 of 3 runs." in report
    assert "- result_1.txt: as AMD sets them" in report


def test_a_second_run_changes_nothing(lab):
    # A new campaign on a node already as AMD's: the settings are checked, nothing changes but
    # the campaign itself; once it is complete, the run stage again changes nothing at all.
    new = playbook(lab, "--tags", "run", campaign_tunables="apply")
    results = task_results(new.stdout)
    assert results[TUNABLES_TASK] == "ok"
    assert {task for task, status in results.items() if status == "changed"} == {CAMPAIGN_TASK}
    again = playbook(lab, "--tags", "run", campaign_tunables="apply")
    results = task_results(again.stdout)
    assert "changed" not in results.values(), results
    assert results[TUNABLES_TASK] == "skipping"  # re-attached to the complete campaign: no action
    assert re.search(r"local\s+: ok=\d+\s+changed=0 ", again.stdout)
