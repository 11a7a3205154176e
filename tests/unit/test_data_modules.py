"""The data stage's two modules: mlperf_data_state (quick, offline re-check) and mlperf_data_step
(one container step, run once, recorded, secrets only by environment), over node/data_steps.py.

The modules are run as Ansible runs them: the file executed by Python with its arguments in a
JSON file; their result is the JSON they print.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.node_alias import module_env

from mlperf_repro.node import data_steps

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "library"
SECRET = "hf_UNIT_CANARY_0c4b9d2e71f84a55"


def run_module(name, args, tmp_path, check_mode=False):
    args = dict(args, _ansible_check_mode=check_mode)
    path = tmp_path / f"args-{os.urandom(4).hex()}.json"
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = module_env()
    proc = subprocess.run([sys.executable, str(LIBRARY / f"{name}.py"), str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    path.unlink()
    result = json.loads(proc.stdout)
    result["_raw"] = proc.stdout + proc.stderr
    return result


# ---------------------------------------------------------------------------------------------
# mlperf_data_state
def stage(dest: Path, name: str, files: dict, record=True):
    """A dataset as mlperf_dataset_fetch leaves it: files, <name>.md5, the manifest."""
    from mlperf_repro.node.r2_download import MANIFEST_FORMAT, MANIFEST_NAME
    dest.mkdir(parents=True)
    lines, recs = [], []
    for rel, data in files.items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
        md5 = hashlib.md5(data).hexdigest()
        lines.append(f"{md5}  ./{rel}\n")
        st = (dest / rel).stat()
        recs.append({"path": rel, "size": st.st_size, "md5": md5, "mtime_ns": st.st_mtime_ns,
                     "verified_at": "2025-01-01T00:00:00+00:00"})
    (dest / f"{name}.md5").write_text("".join(lines))
    if record:
        (dest / MANIFEST_NAME).write_text(json.dumps(
            {"format": MANIFEST_FORMAT, "datasets": {name: {"files": recs}}}))


def test_state_vouches_for_a_staged_dataset_without_hashing(tmp_path):
    state = data_steps
    stage(tmp_path / "d" / "data", "c4", {"a.bin": b"a" * 10, "sub/b.idx": b"b"})
    res = state.staged_state(str(tmp_path / "d"), [{"uri": "https://x.org/metadata/c4.uri", "dest": "data"}],
                      paths=["data", "model"], expected=["data/a.bin", "data/nope"])
    assert res["datasets"]["c4"]["complete"] is True
    assert res["downloads"][0]["name"] == "c4" and res["downloads"][0]["bytes"] == 11
    assert res["paths"] == {"data": {"exists": True, "is_dir": True},
                            "model": {"exists": False, "is_dir": False}}
    assert res["missing"] == ["data/nope"]
    assert res["free_bytes"] > 0


def test_state_names_what_the_manifest_cannot_vouch_for(tmp_path):
    state = data_steps
    dest = tmp_path / "data"
    stage(dest, "c4", {"a.bin": b"a" * 10, "b.bin": b"b" * 10, "c.bin": b"c"})
    st = (dest / "a.bin").stat()
    (dest / "a.bin").write_bytes(b"A" * 10)  # same size, new mtime
    (dest / "b.bin").unlink()
    with open(dest / "c4.md5", "a") as f:
        f.write("%s  ./new.bin\n" % ("0" * 32))
    res = state.dataset_state(str(dest), "c4")
    assert not res["complete"] and res["verified"] == 1 and res["files"] == 4
    text = " | ".join(res["problems"])
    assert "a.bin: modified since it was verified" in text
    assert "b.bin: missing" in text and "new.bin: not verified yet" in text
    assert st.st_size == 10
    assert not state.dataset_state(str(tmp_path / "nowhere"), "c4")["complete"]
    stage(tmp_path / "unrecorded", "c4", {"a.bin": b"a"}, record=False)
    assert "no manifest entry" in state.dataset_state(str(tmp_path / "unrecorded"), "c4")["problems"][0]


def test_state_checks_the_files_a_step_marker_recorded(tmp_path):
    state = data_steps
    out = tmp_path / "energon" / "train"
    out.mkdir(parents=True)
    (out / "shard-0.tar").write_bytes(b"t" * 100)
    st = (out / "shard-0.tar").stat()
    marker = tmp_path / "convert-1.json"
    marker.write_text(json.dumps({"files": [
        {"path": str(out / "shard-0.tar"), "size": 100, "mtime_ns": st.st_mtime_ns}]}))
    res = state.staged_state(str(tmp_path), markers=[str(marker), str(tmp_path / "none.json")])
    assert res["markers"][str(marker)] == {"exists": True, "files": 1, "problems": [],
                                           "problem_count": 0}
    assert res["markers"][str(tmp_path / "none.json")]["exists"] is False
    (out / "shard-0.tar").write_bytes(b"t" * 101)
    bad = state.marker_state(str(marker))
    assert bad["problem_count"] == 1 and "101 bytes, recorded 100" in bad["problems"][0]


def test_state_module_runs_as_ansible_runs_it(tmp_path):
    stage(tmp_path / "data", "c4", {"a.bin": b"a"})
    res = run_module("mlperf_data_state", {
        "data_dir": str(tmp_path), "datasets": [{"name": "c4", "dest": "data"}],
        "expected": ["data/a.bin"]}, tmp_path, check_mode=True)
    assert res["changed"] is False and res["datasets"]["c4"]["complete"] is True, res["_raw"]
    assert res["missing"] == []


# ---------------------------------------------------------------------------------------------
# mlperf_data_step
def step_args(tmp_path, script, **more):
    return dict({
        "name": "unit step",
        "argv": ["sh", "-c", script],
        "chdir": str(tmp_path),
        "marker": str(tmp_path / "meta" / "step.json"),
        "record": [str(tmp_path / "out")],
        "expect": [str(tmp_path / "out" / "f")],
        "log_file": str(tmp_path / "meta" / "step.log"),
        "secret_env": {"HF_TOKEN": SECRET},
    }, **more)


def secret_anywhere(tmp_path):
    return [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_step_runs_once_records_its_files_and_keeps_the_secret_out_of_everything(tmp_path):
    script = 'echo "token is $HF_TOKEN"; mkdir -p out; echo data > out/f'
    first = run_module("mlperf_data_step", step_args(tmp_path, script), tmp_path)
    assert first["changed"] is True and first["ran"] is True and first["rc"] == 0, first["_raw"]
    assert SECRET not in first["_raw"]
    assert "token is ********" in first["output_tail"]
    assert "token is ********" in (tmp_path / "meta" / "step.log").read_text()
    marker = json.loads((tmp_path / "meta" / "step.json").read_text())
    assert [f["path"] for f in marker["files"]] == [str(tmp_path / "out" / "f")]
    assert marker["argv"] == ["sh", "-c", script] and marker["adopted"] is False
    assert secret_anywhere(tmp_path) == []

    second = run_module("mlperf_data_step", step_args(tmp_path, "exit 99"), tmp_path)
    assert second["changed"] is False and second["done_by"] == "marker", second["_raw"]

    (tmp_path / "out" / "f").write_text("altered\n")
    altered = run_module("mlperf_data_step", step_args(tmp_path, "exit 99"), tmp_path)
    assert altered["failed"] and "changed since the step recorded them" in altered["msg"]
    assert (tmp_path / "out" / "f").read_text() == "altered\n"  # nothing re-run or deleted


def test_step_and_state_read_a_marker_the_same_way(tmp_path):
    """One marker check for both modules: the state check the role runs first and the step
    agree on a marker that is unreadable (cut by a full disk), and neither re-runs the step."""
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "step.json").write_text('{"format": "mlperf-repro/data-st')
    state = run_module("mlperf_data_state", {"data_dir": str(tmp_path),
                                             "markers": ["meta/step.json"]}, tmp_path)
    seen = state["markers"]["meta/step.json"]
    assert seen["exists"] is True and seen["problem_count"] == 1, state["_raw"]
    step = run_module("mlperf_data_step", step_args(tmp_path, "mkdir out; echo x > out/f"),
                      tmp_path)
    assert step["failed"] and step["ran"] is False and "unreadable" in step["msg"], step["_raw"]
    assert not (tmp_path / "out").exists()


def test_step_refuses_a_secret_on_the_command_line(tmp_path):
    res = run_module("mlperf_data_step", step_args(tmp_path, f"echo {SECRET}"), tmp_path)
    assert res["failed"] and "secret value is part of the command line" in res["msg"]
    assert SECRET not in res["_raw"]
    assert not (tmp_path / "meta").exists()


def test_step_in_check_mode_says_what_it_would_run_and_runs_nothing(tmp_path):
    res = run_module("mlperf_data_step", step_args(tmp_path, "mkdir out; echo x > out/f"),
                     tmp_path, check_mode=True)
    assert res["changed"] is True and res["ran"] is False, res["_raw"]
    assert res["cmd"] == "sh -c 'mkdir out; echo x > out/f'"
    assert not (tmp_path / "out").exists() and not (tmp_path / "meta").exists()


def test_step_failure_keeps_outputs_and_writes_no_marker(tmp_path):
    res = run_module("mlperf_data_step",
                     step_args(tmp_path, "mkdir -p out; echo half > out/part; echo boom >&2; exit 3"),
                     tmp_path)
    assert res["failed"] and res["rc"] == 3 and "exit status 3" in res["msg"], res["_raw"]
    assert "boom" in res["msg"]
    assert (tmp_path / "out" / "part").exists() and not (tmp_path / "meta" / "step.json").exists()
    missing = run_module("mlperf_data_step", step_args(tmp_path, "true"), tmp_path)
    assert missing["failed"] and "did not create" in missing["msg"]


def test_step_refuses_to_start_without_the_space_it_needs(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x").write_bytes(b"x" * 1000)
    res = run_module("mlperf_data_step", step_args(
        tmp_path, "mkdir -p out; echo x > out/f", space_for=[str(tmp_path / "in")],
        space_factor=1e15), tmp_path)
    assert res["failed"] and "needs about" in res["msg"] and "GiB free" in res["msg"], res["_raw"]
    assert not (tmp_path / "out").exists()


def test_step_adopts_outputs_made_by_hand(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "f").write_text("by hand\n")
    args = step_args(tmp_path, "exit 99", done_if_exist=[str(tmp_path / "out" / "f")])
    check = run_module("mlperf_data_step", args, tmp_path, check_mode=True)
    assert check["changed"] is False and check["done_by"] == "existing files", check["_raw"]
    res = run_module("mlperf_data_step", args, tmp_path)
    assert res["changed"] is True and res["ran"] is False and res["done_by"] == "existing files"
    marker = json.loads((tmp_path / "meta" / "step.json").read_text())
    assert marker["adopted"] is True and len(marker["files"]) == 1


@pytest.mark.parametrize("runtime", ["no-such-runtime-xyz"])
def test_step_names_a_missing_runtime(tmp_path, runtime):
    args = step_args(tmp_path, "true")
    args["argv"] = [runtime, "run", "image", "bash", "-c", "true"]
    res = run_module("mlperf_data_step", args, tmp_path)
    assert res["failed"] and "no-such-runtime-xyz is not installed" in res["msg"]
