"""The run stage with the guide's DATADIR and an explicit LOGDIR mode, through ansible-playbook.

inventory/local (the smoke benchmark, real runs) with DATADIR laid out as the guide writes
llama31_8b's (`<root>/data/mlperf_llama31_8b/data`), no mlperf_modeldir, and
mlperf_logdir_mode "2750", under umask 000: the campaign directory gets exactly that mode, and
MODEL and MODELDIR reach the runs' environment as `model` beside DATADIR (the guide's MODEL).
"""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


def playbook(extra, *args):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local", *args,
            "-e", json.dumps(extra)]
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=lambda: os.umask(0))


def test_campaign_directory_mode_and_the_guides_model_reach_the_run(tmp_path):
    top = tmp_path / "data" / "mlperf_llama31_8b"
    extra = {"mlperf_local_root": str(tmp_path / "root"),
             "mlperf_results_dir": str(tmp_path / "results"),
             "mlperf_datadir": f"{top}/data/", "mlperf_logdir": str(top / "results"),
             "mlperf_logdir_mode": "2750", "mlperf_nexp": 1, "mlperf_allow_partial": True}
    proc = playbook(extra, "--tags", "render,run")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    (state,) = (top / "results").rglob("state.json")
    campaign = state.parent
    assert stat.S_IMODE(campaign.stat().st_mode) == 0o2750
    assert json.loads(state.read_text())["status"] == "complete"
    env = json.loads((campaign / "env.json").read_text())
    assert env["DATADIR"] == f"{top}/data/"
    assert env["MODEL"] == env["MODELDIR"] == str(top / "model")

    # a world-writable mode is refused in validate, naming why, before anything is created
    refused = playbook(dict(extra, mlperf_logdir_mode="0777", mlperf_logdir=str(tmp_path / "l2")),
                       "--tags", "run")
    assert refused.returncode != 0
    assert "mlperf_logdir_mode 0777 makes every campaign directory world-writable" in \
        " ".join(refused.stdout.split())
    assert not (tmp_path / "l2").exists()
