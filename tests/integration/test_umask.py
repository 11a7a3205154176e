"""Modes independent of the umask (issue 13, class 8): under ``umask 000`` nothing a run creates
is world-writable - the results (collect, score, report), the rendered files, the runner's
artifacts and Ansible's fact cache - because every creator gives an explicit mode.

Both ways in are run for real on inventory/local: `mlperf-repro run` (ansible-runner) and
`ansible-playbook site.yml`, each started with umask 000.

The node's campaign directory is included: the detached runner gives its directory, state,
result logs and runner.out explicit modes too (env.json, which holds secrets, is 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration


def world_writable(root: Path) -> list[str]:
    found = []
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & stat.S_IWOTH:
            found.append(f"{oct(stat.S_IMODE(st.st_mode))} {path}")
    return found


def umask_000():
    os.umask(0)


def campaign_dir(root: Path) -> Path:
    (state,) = (root / "logs").rglob("state.json")
    return state.parent


def test_cli_run_under_umask_000_creates_nothing_world_writable(tmp_path):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", XDG_STATE_HOME=str(tmp_path / "state"))
    argv = [str(BIN / "mlperf-repro"), "run", "--plain", "-e", f"mlperf_local_root={tmp_path}/root",
            "-e", f"mlperf_results_dir={tmp_path}/results", "-e", "mlperf_nexp=2",
            "-e", "mlperf_allow_partial=true"]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=umask_000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    campaign = campaign_dir(tmp_path / "root")
    collected = list((tmp_path / "results").rglob("result_*.txt"))
    assert collected and list((tmp_path / "results").rglob("score.json"))
    assert list((tmp_path / "results").rglob("report.html"))
    assert list((tmp_path / "state").rglob("job_events"))
    assert world_writable(tmp_path) == []
    assert list(campaign.glob("result_*.txt")) and (campaign / "runner.out").exists()
    assert stat.S_IMODE((campaign / "env.json").stat().st_mode) == 0o600
    for path in (tmp_path / "state").rglob("*"):  # the runner's artifacts: private
        assert stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0, path


def test_playbook_under_umask_000_creates_nothing_world_writable(tmp_path):
    # A fact cache of its own, relative like ansible.cfg's (.cache/facts): the plugin creates it
    # from ansible-playbook's directory with the umask's mode; validate makes it private.
    cache = f".cache/test-umask-{secrets.token_hex(4)}"
    sandbox = {"mlperf_local_root": str(tmp_path / "root"), "mlperf_results_dir": str(tmp_path / "results"),
               "mlperf_nexp": 2, "mlperf_allow_partial": True}
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_CACHE_PLUGIN_CONNECTION=cache)
    try:
        proc = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local",
                               "-e", json.dumps(sandbox)], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600, preexec_fn=umask_000)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert (ROOT / cache).is_dir()
        assert stat.S_IMODE((ROOT / cache).stat().st_mode) == 0o700
        assert not stat.S_IMODE((ROOT / cache).parent.stat().st_mode) & stat.S_IWOTH
    finally:
        shutil.rmtree(ROOT / cache, ignore_errors=True)
    campaign = campaign_dir(tmp_path / "root")
    assert not stat.S_IMODE(campaign.stat().st_mode) & stat.S_IWOTH
    assert list((tmp_path / "results").rglob("report.md"))
    assert world_writable(tmp_path) == []
