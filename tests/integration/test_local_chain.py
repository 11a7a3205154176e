"""site.yml end to end on inventory/local: real runs, real logs, a real score; then idempotence."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro.scoring import check_compliance
from tests.infra.ansible_output import changed_tasks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


def playbook(*args, extra=None, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), *args]
    for key, value in (extra or {}).items():
        argv += ["-e", f"{key}={value}"]
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    return proc



@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    base = tmp_path_factory.mktemp("local")
    return {"mlperf_local_root": str(base / "root"), "mlperf_results_dir": str(base / "results")}


@pytest.fixture(scope="module")
def first_run(sandbox):
    return playbook("site.yml", "-i", "inventory/local", extra=sandbox)


def campaigns(sandbox):
    return sorted((Path(sandbox["mlperf_results_dir"]) / "smoke" / "CPU_1x1x1").iterdir())


def test_chain_ends_in_a_valid_score_of_ten_runs(first_run, sandbox):
    assert "smoke: score " in first_run.stdout
    (campaign,) = campaigns(sandbox)
    score = json.loads((campaign / "local" / "score.json").read_text())
    assert score["valid"], score["reasons"]
    assert len(score["runs"]) == 10
    assert all(run["status"] == "success" for run in score["runs"])
    assert score["score_minutes"] == score["olympic_minutes"] > 0
    assert len({run["samples_to_converge"] for run in score["runs"]}) > 1  # seeds differ
    assert (campaign / "report.md").read_text().count("| result_") == 10


def test_smoke_logs_pass_the_common_compliance_rules(first_run, sandbox):
    (campaign,) = campaigns(sandbox)
    logs = sorted((campaign / "local").glob("result_*.txt"))
    assert len(logs) == 10
    for log in logs:
        result = check_compliance(log, "6.0.0", common_only=True)
        assert result.compliant, (log, result.errors)


def test_campaign_records_every_run_and_keeps_secrets_out_of_results(first_run, sandbox):
    (campaign,) = campaigns(sandbox)
    state = json.loads((campaign / "local" / "state.json").read_text())
    assert state["status"] == "complete"
    assert [run["index"] for run in state["runs"]] == list(range(10))
    assert not (campaign / "local" / "env.json").exists()
    config = (campaign / "local" / "config_CPU_1x1x1.sh").read_text()
    assert 'export DGXSYSTEM="CPU_1x1x1"' in config


def test_second_run_changes_nothing_but_the_new_runs_results(first_run, sandbox):
    second = playbook("site.yml", "-i", "inventory/local", extra=sandbox)
    allowed = {
        "campaign : Start the campaign, or re-attach to an unfinished one",
        "collect : Create the set's directory on the controller",  # the new campaign's
        "collect : Bring the files back",
        "collect : Bring the rendered config back",
        "collect : Mark the campaign collected (the next run stage starts a new campaign)",
        "score : Score each set",
        "report : Write the report",
    }
    assert changed_tasks(second.stdout) <= allowed, changed_tasks(second.stdout) - allowed
    assert "campaign : Start the campaign, or re-attach to an unfinished one" in changed_tasks(second.stdout)
    first, new = campaigns(sandbox)
    assert len(list((first / "local").glob("result_*.txt"))) == 10  # the earlier campaign is intact
    assert len(list((new / "local").glob("result_*.txt"))) == 10


def test_tags_score_alone_rescores_collected_logs(first_run, sandbox):
    rescore = playbook("site.yml", "-i", "inventory/local", "--tags", "score", extra=sandbox)
    assert changed_tasks(rescore.stdout) == set()
    assert "smoke: score " in rescore.stdout
    assert "Start the campaign" not in rescore.stdout


def test_package_stage_runs_only_when_asked(first_run, sandbox):
    """The opt-in package stage: never part of the chain; with --tags score,package it needs the
    organization (named before anything changes), then writes the MLCommons tree of the set."""
    submission = Path(sandbox["mlperf_results_dir"]) / "submission"
    assert not submission.exists()  # the whole chain ran without it
    assert "Assemble the submission tree" not in first_run.stdout
    assert "TASK [package :" not in first_run.stdout  # not even its argument checks
    unnamed = playbook("site.yml", "-i", "inventory/local", "--tags", "score,package", extra=sandbox,
                       check=False)
    assert unnamed.returncode != 0
    assert "package_org is not set" in unnamed.stdout
    assert changed_tasks(unnamed.stdout) == set() and not submission.exists()
    packaged = playbook("site.yml", "-i", "inventory/local", "--tags", "score,package",
                        "-e", json.dumps({"package_fail_on_errors": False}),
                        extra=dict(sandbox, package_org="ACME"))
    assert "Assemble the submission tree and run the package checker" in packaged.stdout
    results = submission / "ACME" / "results" / "CPU_1x1x1" / "smoke"
    assert sorted(p.name for p in results.glob("result_*.txt")) == sorted(f"result_{i}.txt" for i in range(10))
    campaign = campaigns(sandbox)[-1]  # the score stage scores the newest campaign
    assert (results / "result_3.txt").read_bytes() == (campaign / "local" / "result_3.txt").read_bytes()
    system = json.loads((submission / "ACME" / "systems" / "CPU_1x1x1.json").read_text())
    assert system["submitter"] == "ACME"


def test_bad_inventory_value_fails_before_any_change(sandbox, tmp_path):
    bad = playbook("site.yml", "-i", "inventory/local", extra=dict(sandbox, mlperf_nexp="ten"),
                   check=False)
    assert bad.returncode != 0
    assert "mlperf_nexp must be a positive integer" in bad.stdout
    assert changed_tasks(bad.stdout) == set()


def test_bad_catalog_entry_fails_naming_it(sandbox, tmp_path):
    import yaml
    from mlperf_repro.catalog import DEFAULT_CATALOG
    data = yaml.safe_load(DEFAULT_CATALOG.read_text())
    data["benchmarks"]["smoke"]["runs"] = "ten"
    catalog = tmp_path / "catalog.yml"
    catalog.write_text(yaml.safe_dump(data))
    bad = playbook("site.yml", "-i", "inventory/local",
                   extra=dict(sandbox, validate_catalog_path=str(catalog)), check=False)
    assert bad.returncode != 0
    assert "benchmarks.smoke.runs: expected a positive integer" in bad.stdout


@pytest.mark.parametrize("inventory", ["local", "mi355x", "mi350x", "mi325x"])
def test_every_inventory_parses_and_lists_its_stages(inventory):
    playbook("site.yml", "-i", f"inventory/{inventory}", "--syntax-check")
    listing = playbook("site.yml", "-i", f"inventory/{inventory}", "--list-tasks", "--list-tags").stdout
    for tag in ("preflight", "provision", "rocm", "docker", "tunables", "data", "render", "run",
                "collect", "score", "report", "package"):
        assert tag in listing


def test_unfilled_site_values_are_named_by_preflight():
    out = playbook("site.yml", "-i", "inventory/mi325x", "--tags", "preflight", check=False).stdout
    for name in ("mlperf_datadir", "mlperf_slurm_partition", "mlperf_site_env.NCCL_SOCKET_IFNAME"):
        assert f"{name} is not set" in out
