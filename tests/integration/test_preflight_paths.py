"""Preflight on inventory/local names paths that cannot be written, before any host changes.

A log directory that is a file, a read-only filesystem and a results directory that cannot be
created are each said as such (not as "0.0 GiB free"), the whole chain stops at preflight, and
nothing is created: no data, logs, work or results directory.
"""

import subprocess
from pathlib import Path

import pytest

from tests.integration.test_local_chain import playbook

pytestmark = pytest.mark.integration


@pytest.fixture
def read_only_dir(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "mlperf-ro", str(ro)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs (needs root): {proc.stderr.strip()}")
    yield ro
    subprocess.run(["umount", str(ro)], check=True)


def test_unwritable_paths_stop_the_chain_at_preflight_naming_each(tmp_path, read_only_dir):
    root = tmp_path / "root"
    root.mkdir()
    (root / "logs").write_text("a file where LOGDIR should be\n")
    (tmp_path / "results-file").write_text("a file where the results directory's parent should be\n")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    run = playbook("site.yml", "-i", "inventory/local", check=False, extra={
        "mlperf_local_root": str(root),
        "mlperf_datadir": str(read_only_dir / "data"),
        "mlperf_results_dir": str(tmp_path / "results-file" / "results")})
    assert run.returncode == 2, run.stdout[-3000:]
    out = run.stdout
    assert f"LOGDIR: {root}/logs is a file, not a directory" in out
    assert f"DATADIR: {read_only_dir}/data is on a read-only filesystem (mlperf-ro mounted " \
           f"read-only at {read_only_dir})" in out
    assert (f"results: {tmp_path}/results-file/results cannot be created: {tmp_path}/results-file "
            "is a file, not a directory") in out
    assert "GiB free" not in out
    assert "TASK [campaign" not in out and "TASK [render" not in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing was created


def test_a_value_naming_a_role_default_passes_validation(tmp_path):
    """An inventory value may name a variable a role defines later (the provision test's
    rocm_repo_url: ".../{{ rocm_version }}"): validation leaves it to that role."""
    from tests.integration.test_local_chain import BIN, ROOT
    import json
    import os
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local", "--tags", "preflight",
         "-e", json.dumps({"mlperf_local_root": str(tmp_path / "root"),
                           "mlperf_results_dir": str(tmp_path / "results"),
                           "rocm_repo_url": "https://repo.radeon.com/rocm/apt/{{ rocm_version }}"})],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "is undefined" not in proc.stdout
