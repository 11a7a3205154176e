"""``mlperf-repro score``: the JSON it prints, its exit code and stderr, the catalog comparison.

Driven through ``cli.main(argv)`` (in-process, stdout/stderr captured) and once through the
installed entry point in a subprocess, on the published sets of tests/data/mlperf-logs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlperf_repro import cli  # noqa: E402

DATA = ROOT / "tests" / "data" / "mlperf-logs"
AMD = DATA / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch"
NVIDIA = DATA / "v5.1" / "NVIDIA" / "results"
AMD_LORA = AMD / "llama2_70b_lora"
SAMPLES = DATA / "v6.0-samples" / "MI355X_EPYC_9575F_primus"

# README of tests/data/mlperf-logs: expected score; the catalog reference for AMD's MI355X
# (submission 6.0-0036) where the logs name that platform.
PUBLISHED = [
    (AMD_LORA, 10.1847, ("MI355X_1x8x1", 8.27, "6.0-0036")),
    (AMD / "llama31_8b", 99.7085, ("MI355X_1x8x1", 86.84, "6.0-0036")),
    (NVIDIA / "theia_ngpu16_ngc25.09_nemo" / "flux1", 146.2601, None),
    (NVIDIA / "theia_ngpu8_ngc25.09_nemo" / "llama2_70b_lora", 5.9713, None),
]
RUN_KEYS = {"file", "minutes", "status", "samples_to_converge", "compliant"}
TOP_KEYS = {"benchmark", "ruleset", "runs", "olympic_minutes", "rcp", "score_minutes", "valid", "reasons",
            "versus_reference", "platform"}


def score_json(capsys, *argv: str) -> tuple[int, dict, str]:
    rc = cli.main(["score", *map(str, argv), "--json"])
    captured = capsys.readouterr()
    return rc, json.loads(captured.out), captured.err


@pytest.mark.parametrize("directory, expected, reference", PUBLISHED, ids=lambda v: getattr(v, "name", None))
def test_published_sets(capsys, directory, expected, reference):
    rc, data, err = score_json(capsys, directory)
    assert rc == 0 and err == ""
    assert TOP_KEYS <= set(data)
    assert abs(data["score_minutes"] - expected) < 1e-4
    assert data["valid"] is True and data["reasons"] == [] and data["ruleset"] == "6.0.0"
    assert data["benchmark"] == directory.name
    assert {"status", "factor", "passed"} <= set(data["rcp"])
    assert data["rcp"]["status"] == "Pass" and data["rcp"]["passed"] is True
    assert data["score_minutes"] == data["olympic_minutes"] * data["rcp"]["factor"]
    assert len(data["runs"]) == 10
    for run in data["runs"]:
        assert RUN_KEYS <= set(run)
        assert run["status"] == "success" and run["compliant"] is True and run["minutes"] > 0
        assert isinstance(run["samples_to_converge"], int)
    versus = data["versus_reference"]
    if reference is None:
        assert versus is None and data["platform"]["catalog_platform"] is None
    else:
        platform, minutes, submission = reference
        assert data["platform"]["catalog_platform"] == platform
        assert versus["reference_minutes"] == minutes and versus["submission_id"] == submission
        assert versus["ratio"] == data["score_minutes"] / minutes
        assert versus["sentence"] == (f"{data['score_minutes'] / minutes:.2f}x the time of AMD's MI355X "
                                      f"submission {submission} ({minutes:g} min)")


def test_ruleset_510_gives_the_same_digits(capsys):
    rc, data, _ = score_json(capsys, AMD_LORA, "--ruleset", "5.1.0")
    assert rc == 0 and data["ruleset"] == "5.1.0" and round(data["score_minutes"], 4) == 10.1847


def test_system_option_picks_the_reference(capsys):
    rc, data, err = score_json(capsys, AMD_LORA, "--system", "MI350X_1x8x1")
    assert rc == 0 and err == ""
    assert data["platform"]["catalog_platform"] == "MI350X_1x8x1"
    assert data["versus_reference"]["submission_id"] == "6.0-0035"
    assert data["versus_reference"]["reference_minutes"] == 10.25
    assert "AMD's MI350X submission 6.0-0035" in data["versus_reference"]["sentence"]

    rc, data, err = score_json(capsys, AMD_LORA, "--system", "H100_1x8x1")
    assert rc == 0 and data["versus_reference"] is None  # still scored; the note goes to stderr
    assert "note:" in err and "H100_1x8x1" in err


def test_v60_sample_partial_set(capsys):
    rc, data, err = score_json(capsys, SAMPLES / "llama2_70b_lora", "--allow-partial")
    assert rc == 1 and data["valid"] is False
    assert data["platform"]["config_filename"] == "config_MI355X_1x8x1.sh"
    assert data["platform"]["catalog_platform"] == "MI355X_1x8x1"
    assert round(data["score_minutes"], 4) == 7.9159
    assert "not a valid score" in data["versus_reference"]["sentence"]
    assert "partial set: 1 of 10" in err


def test_human_output(capsys):
    assert cli.main(["score", str(AMD_LORA)]) == 0
    out = capsys.readouterr().out
    assert "result_9.txt" in out and "score 10.1847 min" in out and "6.0-0036" in out


def test_nine_files_exit_nonzero_with_the_reason_on_stderr(tmp_path):
    bench = tmp_path / "set"
    bench.mkdir()
    for i in range(9):
        shutil.copyfile(AMD_LORA / f"result_{i}.txt", bench / f"result_{i}.txt")
    exe = Path(sys.executable).with_name("mlperf-repro")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "mlperf_repro.cli"]
    proc = subprocess.run([*command, "score", str(bench), "--json"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert data["valid"] is False and data["olympic_minutes"] is not None
    assert "found 9 result file(s)" in proc.stderr and "exactly 10" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # nothing written to the cwd


def test_two_failed_runs_no_score(capsys, tmp_path):
    bench = tmp_path / "set"
    shutil.copytree(AMD_LORA, bench)
    for name in ("result_2.txt", "result_7.txt"):
        path = bench / name
        path.write_text(path.read_text().replace('"key": "lora_rank", "value": 16', '"key": "lora_rank", "value": 8'))
    rc, data, err = score_json(capsys, bench)
    assert rc == 1 and data["score_minutes"] is None and data["valid"] is False
    assert "2 runs dropped" in err
    assert data["versus_reference"]["ratio"] is None and "no score to compare" in data["versus_reference"]["sentence"]


def test_errors_are_one_line_and_exit_2(capsys, tmp_path):
    assert cli.main(["score", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert cli.main(["score", str(AMD_LORA), "--ruleset", "9.9.9"]) == 2
    err = capsys.readouterr().err
    assert "ruleset '9.9.9'" in err and "Traceback" not in err


def test_reference_follows_the_campaign_system_not_the_logs_label(capsys, tmp_path):
    """A campaign run on MI350X whose logs call themselves MI355X (as AMD's published v6.0 MI350X
    LoRA logs do: ``MI355X``, ``config_MI355X_1x8x1.sh``) is held against the MI350X reference,
    and the disagreement is said."""
    collected = tmp_path / "llama2_70b_lora" / "MI350X_1x8x1" / "20261205T000000Z" / "node1"
    shutil.copytree(AMD_LORA, collected)
    (collected / "campaign.json").write_text(json.dumps(
        {"benchmark": "llama2_70b_lora", "system": "MI350X_1x8x1", "nexp": 10}))
    rc, data, err = score_json(capsys, collected)
    assert rc == 0 and err == ""
    assert round(data["score_minutes"], 4) == 10.1847  # the score does not depend on the label
    platform = data["platform"]
    assert platform["catalog_platform"] == "MI350X_1x8x1"
    assert platform["identified_by"] == f"the campaign's system ({collected / 'campaign.json'})"
    assert platform["label_disagrees"] == (
        "the logs call themselves submission_platform 1xMI355X, but the campaign ran on "
        "MI350X_1x8x1: the score is held against MI350X_1x8x1's reference")
    assert data["versus_reference"]["reference_minutes"] == 10.25
    assert data["versus_reference"]["submission_id"] == "6.0-0035"

    # the same logs from an MI355X campaign: no disagreement, the MI355X reference
    (collected / "campaign.json").write_text(json.dumps(
        {"benchmark": "llama2_70b_lora", "system": "MI355X_1x8x1"}))
    rc, data, _ = score_json(capsys, collected)
    assert data["platform"]["catalog_platform"] == "MI355X_1x8x1"
    assert "label_disagrees" not in data["platform"]
    assert data["versus_reference"]["reference_minutes"] == 8.27
    # --system still wins over both
    rc, data, _ = score_json(capsys, collected, "--system", "MI350X_1x8x1")
    assert data["platform"]["identified_by"] == "--system MI350X_1x8x1"
