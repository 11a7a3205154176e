"""The project's shared files (mlperf_repro.project_files), as the roles receive them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro import project_files

ROOT = Path(__file__).resolve().parents[2]


def test_shared_files_resolve_inside_the_package():
    for name in ("templates/job.sh.j2", "node/campaign.py", "node/tunables.py", "smoke/train.py",
                 "smoke/run_and_time.sh"):
        path = Path(project_files.project_file(name))
        assert path.is_file() and path.is_relative_to(ROOT / "mlperf_repro"), name


@pytest.mark.parametrize("name, said", [
    ("/etc/passwd", "expected a path relative to the mlperf_repro package"),
    ("", "expected a path relative to the mlperf_repro package"),
    ("../pyproject.toml", "leaves the mlperf_repro package"),
    ("templates/../../site.yml", "leaves the mlperf_repro package"),
    ("templates/nothing.j2", "no such file in the mlperf_repro package"),
    ("templates", "no such file in the mlperf_repro package"),
])
def test_a_name_outside_the_package_or_missing_is_refused(name, said):
    with pytest.raises(project_files.ProjectFileError, match=said):
        project_files.project_file(name)


def test_the_filter_gives_roles_the_path_and_names_a_bad_one(tmp_path):
    playbook = tmp_path / "p.yml"
    playbook.write_text("""
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.debug:
        msg: "{{ 'templates/job.sh.j2' | mlperf_project_file }}"
    - ansible.builtin.debug:
        msg: "{{ 'templates/missing.j2' | mlperf_project_file }}"
""")
    env = dict(os.environ, ANSIBLE_FILTER_PLUGINS=str(ROOT / "filter_plugins"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), str(playbook)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    out = proc.stdout + proc.stderr
    assert json.dumps(str(ROOT / "mlperf_repro" / "templates" / "job.sh.j2")) in out, out
    assert proc.returncode != 0
    assert "mlperf_project_file: 'templates/missing.j2': no such file in the mlperf_repro package" in out, out
