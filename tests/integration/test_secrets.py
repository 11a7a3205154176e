"""A canary secret never reaches the console, logs, results or reports.

HF_TOKEN and CF_ACCESS_CLIENT_SECRET come from the environment here (vault works the same way).
The only file allowed to hold a secret is the campaign's env.json on the node, mode 0600.
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
HF = "hf_CANARY_d41d8cd98f00b204e980"
CF = "cfsecret_CANARY_9800998ecf8427e"
pytestmark = pytest.mark.integration


def test_canary_secrets_appear_nowhere_but_env_json(tmp_path):
    sandbox = {"mlperf_local_root": str(tmp_path / "root"), "mlperf_results_dir": str(tmp_path / "results"),
               "mlperf_nexp": 2, "mlperf_allow_partial": True}
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local", "-v",
            "-e", json.dumps(sandbox)]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", HF_TOKEN=HF,
               CF_ACCESS_CLIENT_ID="canary-id", CF_ACCESS_CLIENT_SECRET=CF, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    console = proc.stdout + proc.stderr
    assert HF not in console and CF not in console

    holders = []
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if HF.encode() in data or CF.encode() in data:
                holders.append(path)
    # The token did reach the runs (so the test is not vacuous) ...
    assert holders, "HF_TOKEN never reached the campaign environment"
    # ... but only through the campaign's env.json, readable by its owner alone.
    for path in holders:
        assert path.name == "env.json", path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    campaign_dirs = [p.parent for p in holders]
    for campaign in campaign_dirs:
        mode = stat.S_IMODE(campaign.stat().st_mode)
        assert not mode & stat.S_IWOTH, f"{campaign} is world-writable ({oct(mode)})"
    results = list((tmp_path / "results").rglob("*"))
    assert any(p.name == "score.json" for p in results)
