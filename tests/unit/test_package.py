"""Submission package: the MLCommons tree, the system description and the package checker's verdict.

The checker runs for real (``python -m mlperf_logging.package_checker``) on AMD's published v5.1
MI355X llama2_70b_lora set: it passes under rulesets 6.0.0 and 5.1.0, and 9 files are an error.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ansible.module_utils.testing import patch_module_args  # noqa: E402

from mlperf_repro import cli  # noqa: E402
from mlperf_repro.package import (SYSTEM_REQUIRED_FIELDS, VERDICT_OK, package, parse_checker_output,  # noqa: E402
                                  system_description, system_fields_from_facts)

DATA = ROOT / "tests" / "data" / "mlperf-logs" / "v5.1" / "AMD"
SYSTEM = "MI355X_EPYC_9575F_pytorch"
AMD_LORA = DATA / "results" / SYSTEM / "llama2_70b_lora"
AMD_SYSTEM_JSON = DATA / "systems" / f"{SYSTEM}.json"
COUNTS = {"host_processors_per_node": "2", "host_processor_core_count": "64"}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def nine_files(tmp_path: Path) -> Path:
    bench = tmp_path / "nine"
    bench.mkdir()
    for i in range(9):
        shutil.copyfile(AMD_LORA / f"result_{i}.txt", bench / f"result_{i}.txt")
    return bench


def test_published_set_passes_with_derived_system_fields(tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(AMD_LORA)
    out = tmp_path / "submission"
    umask = os.umask(0)  # modes never come from the umask
    try:
        result = package(AMD_LORA, out, "AMD", SYSTEM, system_fields=COUNTS)
    finally:
        os.umask(umask)
    for path in [out / "AMD" / "systems" / f"{SYSTEM}.json",
                 *(out / "AMD" / "results" / SYSTEM / "llama2_70b_lora").glob("result_*.txt")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    for path in (out / "AMD" / "results" / SYSTEM / "llama2_70b_lora", out / "AMD" / "systems"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755, path
    assert result.passed and result.verdict == VERDICT_OK and result.errors == []
    assert result.returncode == 0 and result.benchmark == "llama2_70b_lora" and result.ruleset == "6.0.0"
    bench_dir = out / "AMD" / "results" / SYSTEM / "llama2_70b_lora"
    names = sorted(p.name for p in bench_dir.iterdir())
    assert names == sorted([f"result_{i}.txt" for i in range(10)] + ["scaling.json"])  # the checker's RCP factor
    assert json.loads((bench_dir / "scaling.json").read_text())["scaling_factor"] == \
        json.loads((AMD_LORA / "scaling.json").read_text())["scaling_factor"]
    for i in range(10):
        assert (bench_dir / f"result_{i}.txt").read_bytes() == (AMD_LORA / f"result_{i}.txt").read_bytes()
    desc = json.loads((out / "AMD" / "systems" / f"{SYSTEM}.json").read_text())
    assert set(SYSTEM_REQUIRED_FIELDS) <= set(desc)
    assert desc["submitter"] == "AMD" and desc["division"] == "closed" and desc["status"] == "Available on-premise"
    # derived from the logs' submission_platform 1xMI355X and the catalog's MI355X_1x8x1
    assert desc["number_of_nodes"] == "1" and desc["accelerators_per_node"] == "8"
    assert desc["accelerator_model_name"] == "AMD Instinct MI355X"
    assert "host_processor_model_name" in result.empty_fields
    assert Path(result.log) == out / "package_checker.log" and VERDICT_OK in Path(result.log).read_text()
    assert snapshot(AMD_LORA) == before and list(cwd.iterdir()) == []  # nothing written there


def test_cli_package_with_the_published_system_json_ruleset_510(tmp_path, capsys):
    out = tmp_path / "submission"
    rc = cli.main(["package", str(AMD_LORA), "--org", "AMD", "--system", SYSTEM, "--out", str(out),
                   "--system-json", str(AMD_SYSTEM_JSON), "--ruleset", "5.1.0", "--json"])
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert rc == 0 and data["passed"] and data["verdict"] == VERDICT_OK and data["ruleset"] == "5.1.0"
    desc = json.loads(Path(data["system_json"]).read_text())
    assert desc == json.loads(AMD_SYSTEM_JSON.read_text())  # every field came from the given file
    assert captured.err == ""


def test_nine_files_are_reported_as_errors(tmp_path, capsys):
    out = tmp_path / "submission"
    rc = cli.main(["package", str(nine_files(tmp_path)), "--org", "AMD", "--system", SYSTEM, "--out", str(out),
                   "--system-json", str(AMD_SYSTEM_JSON)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "PACKAGE CHECKER FOUND ERRORS" in captured.out
    assert "Incorrect number of files" in captured.err and "found 9, expected 10" in captured.err
    assert len(list((out / "AMD" / "results" / SYSTEM / "llama2_70b_lora").glob("result_*.txt"))) == 9


def test_module_fails_the_task_on_errors(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("mlperf_package_under_test", ROOT / "library" / "mlperf_package.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = {"path": str(nine_files(tmp_path)), "out_dir": str(tmp_path / "submission"), "org": "AMD",
            "system": SYSTEM, "system_fields": COUNTS}
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            mod.main()
    result = json.loads(capsys.readouterr().out)
    assert result["failed"] and "found 9, expected 10" in result["msg"]
    assert result["package"]["passed"] is False and result["changed"] is True


def test_module_documentation_matches_its_options():
    import yaml

    spec = importlib.util.spec_from_file_location("mlperf_package_doc", ROOT / "library" / "mlperf_package.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    yaml.safe_load(mod.EXAMPLES)
    assert "package" in yaml.safe_load(mod.RETURN)
    assert set(doc["options"]) == {"path", "out_dir", "org", "system", "ruleset", "benchmark", "system_json",
                                   "system_fields", "facts", "force", "fail_on_errors"}


# ---------------------------------------------------------------- without running the checker

def test_output_inside_the_result_dir_is_refused(tmp_path):
    bench = shutil.copytree(AMD_LORA, tmp_path / "set")
    with pytest.raises(ValueError, match="must be outside the result directory"):
        package(bench, bench / "submission", "AMD", SYSTEM)
    with pytest.raises(ValueError, match="must be outside"):
        package(bench, tmp_path, "AMD", SYSTEM)  # would contain it
    assert not (bench / "submission").exists()


def test_existing_results_need_force(tmp_path):
    target = tmp_path / "out" / "AMD" / "results" / SYSTEM / "llama2_70b_lora"
    target.mkdir(parents=True)
    (target / "result_0.txt").write_text("old")
    with pytest.raises(ValueError, match="already exists"):
        package(AMD_LORA, tmp_path / "out", "AMD", SYSTEM)
    assert (target / "result_0.txt").read_text() == "old"


def test_bad_names_and_status_are_refused(tmp_path):
    with pytest.raises(ValueError, match="system name"):
        package(AMD_LORA, tmp_path / "out", "AMD", "../escape")
    with pytest.raises(ValueError, match="status"):
        package(AMD_LORA, tmp_path / "out", "AMD", SYSTEM, system_fields={"status": "onprem"})
    with pytest.raises(ValueError, match="submitter"):
        system_description("AMD", SYSTEM, "llama2_70b_lora", fields={"submitter": "ACME"})
    assert not (tmp_path / "out").exists()


def test_integer_fields_the_summarizer_needs(tmp_path):
    desc, empty = system_description("AMD", SYSTEM, "llama2_70b_lora", submission_platform="1xMI355X")
    assert desc["number_of_nodes"] == "1" and "host_processors_per_node" in empty
    from mlperf_repro.package import integer_field_problems
    assert [p.split()[2] for p in integer_field_problems(desc)] == ["host_processors_per_node"]
    assert integer_field_problems({**desc, "host_processors_per_node": "2"}) == []


def test_parse_checker_output():
    ok = "INFO - RCP Test Passed: RCP found\nINFO - PACKAGE CHECKER FOUND NO ERRORS, SUCCESS !\n"
    assert parse_checker_output(ok) == (True, VERDICT_OK, [], [])
    bad = ("WARNING -  1 file does not comply, accepting this under olympic scoring\n"
           "ERROR - Seed checker failed\n"
           "INFO - PACKAGE CHECKER FOUND ERRORS, LOOK INTO ERROR LOG LINES AND FIX THEM.\n")
    passed, verdict, errors, warnings = parse_checker_output(bad)
    assert not passed and verdict.startswith("PACKAGE CHECKER FOUND ERRORS")
    assert errors == ["Seed checker failed"] and warnings[0].startswith("1 file does not comply")
    assert parse_checker_output("Traceback (most recent call last):\nKeyError: 'metadata'\n")[:2] == (False, None)


def test_system_fields_from_facts():
    facts = {"ansible_processor": ["0", "AuthenticAMD", "AMD EPYC 9575F 64-Core Processor", "1", "AuthenticAMD",
                                   "AMD EPYC 9575F 64-Core Processor"],
             "ansible_processor_count": 2, "ansible_processor_cores": 64, "ansible_processor_vcpus": 256,
             "ansible_memtotal_mb": 3 * 1024 * 1024, "ansible_distribution": "Ubuntu",
             "ansible_distribution_version": "22.04",
             "amd_gpu": {"model": "MI355X", "gpu_count": 8, "physical_count": 8, "vram_mib_per_gpu": 294912,
                         "xgmi": True, "rocm_version": "7.2.2"}}
    assert system_fields_from_facts(facts) == {
        "host_processor_model_name": "AMD EPYC 9575F", "host_processors_per_node": "2",
        "host_processor_core_count": "64", "host_processor_vcpu_count": "256", "host_memory_capacity": "3.0 TB",
        "operating_system": "Ubuntu 22.04", "accelerator_model_name": "AMD Instinct MI355X",
        "accelerators_per_node": "8", "accelerator_memory_capacity": "288 GB", "accelerator_interconnect": "XGMI",
        "framework": "ROCm 7.2.2"}
    plain = {k.replace("ansible_", ""): v for k, v in facts.items()}
    assert system_fields_from_facts(plain) == system_fields_from_facts(facts)
    assert system_fields_from_facts(None) == {}


def test_no_file_count_or_checker_run_for_an_empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no result_"):
        package(tmp_path / "empty", tmp_path / "out", "AMD", SYSTEM)
    assert os.listdir(tmp_path) == ["empty"]
