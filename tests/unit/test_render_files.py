"""mlperf_files: a directory holding given text files, in one call; idempotent, check mode, diffs."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro.node import render_files
from tests.infra.node_alias import module_env

ROOT = Path(__file__).resolve().parents[2]

FILES = [
    {"name": "train.py", "content": "print('hi')\n", "mode": "0644"},
    {"name": "run.sh", "content": "#!/bin/bash\necho ünïcode\n", "mode": "0755"},
]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_creates_the_directory_and_files_then_changes_nothing(tmp_path):
    target = tmp_path / "a" / "code"
    first = render_files.ensure(str(target), FILES)
    assert first["changed"] and mode_of(target) == 0o755
    assert (target / "train.py").read_text() == "print('hi')\n" and mode_of(target / "train.py") == 0o644
    assert (target / "run.sh").read_text(encoding="utf-8").endswith("ünïcode\n")
    assert mode_of(target / "run.sh") == 0o755
    mtimes = {p.name: p.stat().st_mtime_ns for p in target.iterdir()}
    again = render_files.ensure(str(target), FILES)
    assert not again["changed"] and again["diff"] == []
    assert {p.name: p.stat().st_mtime_ns for p in target.iterdir()} == mtimes  # not rewritten
    assert sorted(p.name for p in target.iterdir()) == ["run.sh", "train.py"]  # no temp file left


def test_rewrites_only_what_differs_content_or_mode(tmp_path):
    render_files.ensure(str(tmp_path), FILES)
    (tmp_path / "train.py").write_text("edited\n")
    os.chmod(tmp_path / "run.sh", 0o600)
    before = (tmp_path / "run.sh").stat().st_ino
    result = render_files.ensure(str(tmp_path), FILES)
    by_name = {Path(f["path"]).name: f for f in result["files"]}
    assert by_name["train.py"]["content_changed"] and not by_name["train.py"]["mode_changed"]
    assert by_name["run.sh"]["mode_changed"] and not by_name["run.sh"]["content_changed"]
    assert (tmp_path / "train.py").read_text() == "print('hi')\n"
    assert mode_of(tmp_path / "run.sh") == 0o755 and (tmp_path / "run.sh").stat().st_ino == before
    headers = [d["after_header"] for d in result["diff"]]
    assert headers == [str(tmp_path / "train.py"), str(tmp_path / "run.sh")]
    assert result["diff"][0]["before"] == "edited\n" and result["diff"][0]["after"] == "print('hi')\n"
    assert result["diff"][1]["before"]["mode"] == "0600" and result["diff"][1]["after"]["mode"] == "0755"


def test_check_mode_reports_and_writes_nothing(tmp_path):
    target = tmp_path / "code"
    result = render_files.ensure(str(target), FILES, check=True)
    assert result["changed"] and not target.exists()
    assert result["diff"][0]["after"] == {"path": str(target), "state": "directory"}
    assert [d["after_header"] for d in result["diff"][1:]] == [str(target / "train.py"), str(target / "run.sh")]
    render_files.ensure(str(target), FILES)
    os.chmod(target, 0o700)
    dry = render_files.ensure(str(target), FILES, check=True)
    assert dry["changed"] and mode_of(target) == 0o700 and len(dry["diff"]) == 1


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", ".."])
def test_refuses_names_with_a_directory_part(tmp_path, name):
    with pytest.raises(render_files.FilesError, match="plain file name"):
        render_files.ensure(str(tmp_path), [{"name": name, "content": "", "mode": "0644"}])


def test_refuses_a_bad_mode_and_a_file_in_place_of_the_directory(tmp_path):
    with pytest.raises(render_files.FilesError, match="octal"):
        render_files.ensure(str(tmp_path), [{"name": "a", "content": "", "mode": "rw-r--r--"}])
    (tmp_path / "f").write_text("")
    with pytest.raises(render_files.FilesError, match="not a directory"):
        render_files.ensure(str(tmp_path / "f"), FILES)


def test_a_symlink_in_place_of_a_file_is_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").symlink_to(outside)
    render_files.ensure(str(code), FILES)
    assert outside.read_text() == "keep\n"
    assert not (code / "train.py").is_symlink() and (code / "train.py").read_text() == "print('hi')\n"


def test_the_module_runs_and_does_not_echo_the_contents(tmp_path):
    args = {"ANSIBLE_MODULE_ARGS": {"directory": str(tmp_path / "code"), "files": FILES,
                                    "_ansible_diff": True}}
    proc = subprocess.run([sys.executable, str(ROOT / "library" / "mlperf_files.py")],
                          input=json.dumps(args), capture_output=True, text=True,
                          env=module_env())
    out = json.loads(proc.stdout)
    assert out["changed"] and not out.get("failed"), out
    assert "print('hi')" not in json.dumps(out["invocation"])
    assert out["invocation"]["module_args"]["files"][0]["content"] == "<12 characters>"
    assert len(out["diff"]) == 3
    again = json.loads(subprocess.run([sys.executable, str(ROOT / "library" / "mlperf_files.py")],
                                      input=json.dumps(args), capture_output=True, text=True,
                                      env=module_env()).stdout)
    assert not again["changed"] and again["diff"] == []
