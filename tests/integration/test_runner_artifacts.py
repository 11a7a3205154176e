"""`mlperf-repro run` (ansible-runner) keeps no secret in its artifacts; they are private and pruned.

A canary value for each kind of secret (HF_TOKEN, CF_ACCESS_CLIENT_SECRET, a name with TOKEN in
it, a secret extra variable, a vault password file) goes into a real run of site.yml on
inventory/local through the CLI; then every file under the state directory, the results and the
console output are searched for it. The secrets must still reach the playbook (the campaign's
env.json on the node, the one place allowed to hold them), or the test would prove nothing.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro import api

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.integration

HF = "hf_CANARY_artifacts_5f1b3c9a7e"
CF = "cfsecret_CANARY_artifacts_02d4c8"
OTHER = "other_CANARY_token_77aa31"
EXTRA = "extra_CANARY_hf_9b0e42d6"
VAULT = "vault_CANARY_password_3141"
CANARIES = (HF, CF, OTHER, EXTRA, VAULT)


def holders(*roots: Path) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                for canary in CANARIES:
                    if canary.encode() in data:
                        found.setdefault(canary, []).append(path)
    return found


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("artifacts")
    state = base / "state"
    vault = base / "vault-pass"
    vault.write_text(VAULT + "\n")
    vault.chmod(0o600)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", XDG_STATE_HOME=str(state),
               HF_TOKEN=HF, CF_ACCESS_CLIENT_ID="canary-id", CF_ACCESS_CLIENT_SECRET=CF,
               MY_SERVICE_TOKEN=OTHER)
    env.pop(api.KEEP_ARTIFACTS_VARIABLE, None)
    argv = [str(BIN / "mlperf-repro"), "run", "--plain",
            "-e", f"mlperf_local_root={base}/root", "-e", f"mlperf_results_dir={base}/results",
            "-e", "mlperf_nexp=2", "-e", "mlperf_allow_partial=true",
            # a secret inside a variable whose own name says nothing
            "-e", json.dumps({"campaign_extra_env": {"MY_API_TOKEN": EXTRA}}),
            "--vault-password-file", str(vault)]
    proc = subprocess.run(argv, cwd=base, env=env, capture_output=True, text=True, timeout=600)
    return proc, base, state


def test_no_secret_in_any_artifact_results_or_console(cli_run):
    proc, base, state = cli_run
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    console = proc.stdout + proc.stderr
    assert not [c for c in CANARIES if c in console]
    runs = state / "mlperf-repro" / "runs"
    (run_dir,) = runs.iterdir()
    artifacts = run_dir / "artifacts" / run_dir.name
    # The artifacts a user relies on are there (so the search below searched something) ...
    for name in ("command", "stdout", "stderr", "status", "rc"):
        assert (artifacts / name).is_file(), name
    assert len(list((artifacts / "job_events").iterdir())) > 100
    assert (run_dir / "env" / "extravars").is_file()
    command = json.loads((artifacts / "command").read_text())
    assert "PATH" in command["env"] and "HF_TOKEN" not in command["env"]  # useful, minus the secrets
    extravars = json.loads((run_dir / "env" / "extravars").read_text())
    assert extravars["mlperf_nexp"] == 2  # plain variables are recorded as they were given
    assert extravars["campaign_extra_env"].startswith("{{ lookup('ansible.builtin.env', ")  # a reference
    found = holders(state, base / "results", base / "root")
    # ... no secret is in any of them, nor in the results ...
    leaked = {c: [str(p) for p in paths if p.name != "env.json"] for c, paths in found.items()}
    assert not any(leaked.values()), leaked
    # ... and the secrets did reach the playbook, from the environment (HF_TOKEN) and from -e:
    # the campaign's env.json holds both, mode 0600.
    assert set(found) == {HF, EXTRA}, found
    for path in found[HF] + found[EXTRA]:
        assert path.name == "env.json" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not list(run_dir.rglob("*.fifo"))


def test_artifacts_are_private(cli_run):
    proc, _, state = cli_run
    assert proc.returncode == 0
    runs = state / "mlperf-repro" / "runs"
    for directory in (state / "mlperf-repro", runs):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for path in runs.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
        else:
            assert mode & 0o077 == 0, (path, oct(mode))


def test_old_runs_are_pruned_and_others_left_alone(tmp_path):
    """--keep-artifacts N keeps the N newest runs (this one included); nothing else is touched."""
    runs = tmp_path / "runs"
    old = ["20200101T000000-aaaaaa", "20200102T000000-bbbbbb", "20200103T000000-cccccc"]
    for name in old:
        (runs / name / "artifacts").mkdir(parents=True)
    (runs / "notes").mkdir()
    (runs / "20200101T000000-zz").mkdir()  # not a run's name
    bad = subprocess.run([str(BIN / "mlperf-repro"), "run", "--private-data-dir", str(runs),
                          "--keep-artifacts", "-1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "keep_artifacts is -1" in bad.stderr
    proc = subprocess.run(
        [str(BIN / "mlperf-repro"), "run", "--plain", "--private-data-dir", str(runs), "--keep-artifacts", "2",
         "-e", f"mlperf_local_root={tmp_path}/root", "-e", f"mlperf_results_dir={tmp_path}/results",
         "-e", "mlperf_nexp=0"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout  # a failed run (bad mlperf_nexp) counts as a run too
    names = sorted(p.name for p in runs.iterdir())
    assert "20200103T000000-cccccc" in names and "notes" in names and "20200101T000000-zz" in names
    assert "20200101T000000-aaaaaa" not in names and "20200102T000000-bbbbbb" not in names
    assert len(names) == 4  # the newest old run, this run, and the two that are not runs
    # The setting by environment; 0 keeps every run.
    env = dict(os.environ, MLPERF_REPRO_KEEP_ARTIFACTS="0")
    again = subprocess.run(
        [str(BIN / "mlperf-repro"), "run", "--plain", "--private-data-dir", str(runs),
         "-e", f"mlperf_local_root={tmp_path}/root", "-e", "mlperf_nexp=0"],
        capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 1
    assert len(list(runs.iterdir())) == 5
