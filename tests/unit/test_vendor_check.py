"""The image's config_<SYSTEM>.sh against the catalog, by name (mlperf_vendor_check).

Driven with the stand-in image layouts of tests/infra/amd_layout (AMD's published v6.0 config
values) and the packaged catalog; the module through a real `ansible localhost -m` run.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro.catalog import load_catalog
from mlperf_repro.node.vendor_check import RECORD_NAME, inspect

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LAYOUT = ROOT / "tests" / "infra" / "amd_layout"
CONFIGS = [("llama2_70b_lora", "MI355X_1x8x1"), ("llama2_70b_lora", "MI350X_1x8x1"),
           ("llama31_8b", "MI355X_1x8x1"), ("llama31_8b", "MI350X_1x8x1"),
           ("flux1", "MI325X_08x08x32")]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.mark.parametrize("benchmark, system", CONFIGS)
def test_every_variable_of_the_image_is_accounted_for_by_name(catalog, benchmark, system):
    spec = catalog.resolve(benchmark, system)
    record = inspect(LAYOUT / benchmark / "code", spec["config_file"], spec["catalog_env"])
    assert record["source"] == "image"
    diff = record["differences"]
    named = {item["name"] for key in ("added", "removed", "changed") for item in diff[key]}
    # every catalog value is either the image's or reported by name
    assert record["same"] + len({i["name"] for i in diff["changed"]} | {i["name"] for i in diff["removed"]}) \
        == len(spec["catalog_env"])
    # what the catalog leaves out on purpose is reported, not dropped: NEXP (LoRA's config sets it)
    if benchmark == "llama2_70b_lora":
        assert {"name": "NEXP", "image": "1"} in diff["added"]
    # the catalog renders the config's own file name without running a command; AMD's runs basename
    if benchmark != "flux1":
        changed = {i["name"]: i for i in diff["changed"]}
        assert changed["MLLOG_CONFIG_FILENAME"]["image"] == '$(basename "${BASH_SOURCE[0]}")'
    assert record["summary"].startswith(f"{spec['config_file']} from the image: {record['same']} variable(s)")
    for name in named:
        assert name in record["summary"]


def test_a_system_the_image_has_no_file_for_is_said(catalog):
    spec = catalog.resolve("llama31_8b", "MI355X_1x8x1")
    record = inspect(LAYOUT / "flux1" / "code", spec["config_file"], spec["catalog_env"])
    assert record["source"] == "absent"
    assert record["summary"] == ("the image has no config_MI355X_1x8x1.sh: the catalog's values "
                                 "are rendered instead (not the vendor's file)")


def test_site_values_overriding_the_image_are_named(catalog):
    spec = catalog.resolve("llama31_8b", "MI355X_1x8x1", {"NCCL_DEBUG": "INFO", "PRIMUS_MICRO_BATCH_SIZE": "4"})
    record = inspect(LAYOUT / "llama31_8b" / "code", spec["config_file"], spec["catalog_env"],
                     spec["site_env"])
    assert record["site_overrides"] == [{"name": "PRIMUS_MICRO_BATCH_SIZE", "image": "2", "site": "4"}]
    assert "site values override PRIMUS_MICRO_BATCH_SIZE" in record["summary"]
    # the catalog's expectation is not the site's value
    assert spec["catalog_env"]["PRIMUS_MICRO_BATCH_SIZE"] == "2" and spec["site_env"] == {
        "NCCL_DEBUG": "INFO", "PRIMUS_MICRO_BATCH_SIZE": "4"}


def module(code_dir, config_file, *flags, catalog_env=None):
    args = json.dumps({"code_dir": str(code_dir), "config_file": config_file,
                       "catalog_env": catalog_env or {}})
    env = dict(os.environ, ANSIBLE_LIBRARY=str(ROOT / "library"),
               ANSIBLE_MODULE_UTILS=str(ROOT / "mlperf_repro" / "node"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                           "-e", f"ansible_python_interpreter={sys.executable}",
                           "-m", "mlperf_vendor_check", "-a", args, "-o", *flags],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    line = proc.stdout.strip().splitlines()[-1]
    status, _, payload = line.partition(" => ")
    return status, json.loads(payload)


def test_module_restores_the_image_file_of_the_earlier_layout_once(catalog, tmp_path):
    spec = catalog.resolve("llama31_8b", "MI350X_1x8x1")
    code = tmp_path / "code"
    shutil.copytree(LAYOUT / "llama31_8b" / "code", code)
    image_text = (code / spec["config_file"]).read_text()
    (code / (spec["config_file"] + ".from-image")).write_text(image_text)
    (code / spec["config_file"]).write_text("export ONLY_OURS=1\n")   # what render used to write

    status, planned = module(code, spec["config_file"], "--check", catalog_env=spec["catalog_env"])
    assert "CHANGED" in status and (code / spec["config_file"]).read_text() == "export ONLY_OURS=1\n"
    assert not (code / RECORD_NAME).exists()

    status, first = module(code, spec["config_file"], catalog_env=spec["catalog_env"])
    assert "CHANGED" in status and first["source"] == "image"
    assert (code / spec["config_file"]).read_text() == image_text
    assert not (code / (spec["config_file"] + ".from-image")).exists()
    record = json.loads((code / RECORD_NAME).read_text())
    assert record["differences"] == first["differences"] and record["same"] == 94
    assert oct((code / RECORD_NAME).stat().st_mode & 0o777) == "0o644"

    status, again = module(code, spec["config_file"], catalog_env=spec["catalog_env"])
    assert "SUCCESS" in status and again["changed"] is False


def test_module_refuses_a_path_for_a_file_name(tmp_path):
    status, result = module(tmp_path, "../../etc/passwd")
    assert "FAILED" in status
    assert result["msg"] == "config_file: expected a plain file name such as config_MI355X_1x8x1.sh, got '../../etc/passwd'"


def test_campaign_records_amds_files_and_the_report_says_them(catalog, tmp_path):
    """A docker campaign started on the image's code records how the image's config and AMD's
    run_with_docker.sh compare (campaign.json); the report of a set collected with it says so."""
    from mlperf_repro.node import campaign
    from mlperf_repro.node.vendor_check import record_text
    from mlperf_repro.report import render_reports
    from mlperf_repro.scoring import score_directory

    spec = catalog.resolve("llama2_70b_lora", "MI350X_1x8x1")
    code = tmp_path / "code"
    shutil.copytree(LAYOUT / "llama2_70b_lora" / "code", code)
    (code / RECORD_NAME).write_text(record_text(inspect(code, spec["config_file"], spec["catalog_env"])))
    run_spec = {"nexp": 10, "code_dir": str(code), "config_file": str(code / spec["config_file"]),
                "runtime": "docker", "image": spec["image"], "container_name": spec["container_name"],
                "container_flags": ["--net=host", "--uts=host", "--ipc=host", "--device=/dev/dri",
                                    "--device=/dev/kfd", "--security-opt=seccomp=unconfined"],
                "mounts": spec["mounts"], "benchmark": "llama2_70b_lora", "system": "MI350X_1x8x1"}
    root = tmp_path / "logs"
    action, campaign_dir, _, commands = campaign.ensure_started(
        str(root), "c1", run_spec, "/nonexistent-runner", env={"DATADIR": "/data/mlperf_llama2",
                                                              "CODEDIR": str(code)}, check_mode=True)
    assert action == "started" and commands  # check mode: nothing created, nothing started
    assert not root.exists()
    recorded = dict(run_spec, mounts=campaign.expand_mounts(
        spec["mounts"], {"DATADIR": "/data/mlperf_llama2", "CODEDIR": str(code), "LOGDIR": "/logs/c1"}, {}))
    launch = campaign.vendor_launch(recorded, {"DATADIR": "/data/mlperf_llama2", "LOGDIR": "/logs/c1"})
    assert launch["script"] == "run_with_docker.sh" and launch["found"] is True
    by_name = {(d["kind"], d["name"]): d for d in launch["differences"]}
    # the stand-in carries AMD's container options; what the native runner does not pass (the
    # launcher's -e IMAGE_NAME=$CONT) is named, and nothing else differs
    assert set(by_name) == {("env", "IMAGE_NAME")}, launch["differences"]
    assert by_name[("env", "IMAGE_NAME")]["difference"] == "only in AMD's"

    set_dir = tmp_path / "results" / "node1"
    shutil.copytree(ROOT / "tests" / "data" / "mlperf-logs" / "v5.1" / "AMD" / "results"
                    / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora", set_dir)
    (set_dir / "campaign.json").write_text(json.dumps(
        dict(recorded, vendor_launch=launch, vendor_config=json.loads((code / RECORD_NAME).read_text()))))
    score = score_directory(set_dir).to_dict()
    score["platform"] = {"label_disagrees": "the logs call themselves submission_platform 1xMI355X, "
                                            "but the campaign ran on MI350X_1x8x1: ..."}
    outputs = render_reports("t", "c1", [("node1", score)], [set_dir])
    md = outputs["report.md"]
    assert "- label: the logs call themselves submission_platform 1xMI355X" in md
    assert "- config: config_MI350X_1x8x1.sh from the image: 113 variable(s) as the catalog expects; " \
           "1 only in the image (NEXP); 1 different (MLLOG_CONFIG_FILENAME)" in md
    assert "- launch: the native runner against AMD's run_with_docker.sh: " in md
    assert "- launch: the native runner against AMD's run_with_docker.sh: 1 difference(s)" in md
    assert "- launch: env IMAGE_NAME: only in AMD's (AMD's: IMAGE_NAME=${CONT})" in md
    assert "config_MI350X_1x8x1.sh from the image" in outputs["report.html"]
    assert json.loads(outputs["report.json"])["sets"]["node1"]["vendor"]["config_source"] == "image"
