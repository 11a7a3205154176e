"""The node helpers every writer and log reader shares (mlperf_repro/node/fileio.py and
mllog_line.py): one atomic writer, one free-space probe, one ``:::MLLOG`` line reader. Each is
checked through the places that use it, so a reader or writer that goes its own way again fails
here."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mlperf_repro import mllog
from mlperf_repro.node import campaign, fileio, mllog_line, slurm_job

ROOT = Path(__file__).resolve().parents[2]


def record(key, value=None, **metadata):
    return {"namespace": "", "time_ms": 1, "event_type": "POINT_IN_TIME", "key": key,
            "value": value, "metadata": metadata}


# Three spellings of the same records: json.dumps' spacing, compact JSON, and a rank prefix with
# a CRLF ending and text another process wrote after the object.
SPELLINGS = {
    "spaced": lambda r: ":::MLLOG " + json.dumps(r),
    "compact": lambda r: ":::MLLOG " + json.dumps(r, separators=(",", ":")),
    "prefixed": lambda r: "0: [1,0]<stdout>::: :::MLLOG " + json.dumps(r, separators=(", ", ":")),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_reader_finds_the_same_run_stop_whatever_the_json_spacing(tmp_path, spelling):
    line = SPELLINGS[spelling]
    lines = [line(record("cache_clear", True)), line(record("init_start")),
             line(record("seed", 1234)), "noise :::MLLOG-less line",
             line(record("run_start")), line(record("run_stop", status="aborted"))]
    log = tmp_path / "result_0.txt"
    log.write_text("\r\n".join(lines) + "\r\n")
    # the detached runner's verdict
    assert campaign.run_outcome(str(log), 0) == "aborted"
    # the Slurm splitter: one run, its status and seed
    data = log.read_bytes()
    [chunk] = slurm_job.split_runs(data)
    assert slurm_job.describe_run(chunk.splitlines()) == {"status": "aborted", "seed": 1234}
    assert slurm_job.progress(str(log)) == {"runs_begun": 1, "runs_ended": 1}
    # the scoring reader
    summary = mllog.summarize_run(log)
    assert (summary.run_stop_count, summary.run_stop_status) == (1, "aborted")


def test_the_runner_ignores_text_after_the_object_and_takes_the_last_token(tmp_path):
    log = tmp_path / "result_0.txt"
    stop = json.dumps(record("run_stop", status="success"), separators=(",", ":"))
    log.write_text("x :::MLLOG {broken :::MLLOG " + stop + "Traceback (most recent call last)\n")
    assert campaign.run_outcome(str(log), 0) == "success"
    assert campaign.run_outcome(str(log), 3) == "failed"
    log.write_text(":::MLLOG " + stop[:-5] + "\n")  # cut mid-record: no run_stop read
    assert campaign.run_outcome(str(log), 0) == "crashed"


def test_line_reader_edge_cases():
    assert mllog_line.record(b"plain text") is None
    assert mllog_line.record(":::MLLOG [1, 2]") is None  # not an object
    assert mllog_line.key(':::MLLOG {"key": 7}') is None  # a key that is not a string
    assert mllog_line.key(b'a :::MLLOG {"key":"seed"}') == "seed"
    assert mllog_line.metadata({"metadata": "x"}) == {}
    # scoring stays strict: trailing text makes the line a problem it reports, with its number
    problems = []
    events = list(mllog.iter_events_from_lines(
        [':::MLLOG {"time_ms": 1, "key": "k", "value": 1, "metadata": {}} tail'], "f", problems))
    assert events == [] and problems[0].line == 1 and "invalid JSON" in problems[0].message


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writer_sets_the_mode_whatever_the_umask_and_leaves_nothing_behind(tmp_path, umask):
    old = os.umask(umask)
    try:
        target = tmp_path / "state.json"
        target.write_text("old")
        fileio.write_json(str(target), {"a": 1}, 0o640)
        assert json.loads(target.read_text()) == {"a": 1}
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
        fileio.write_atomic(str(target), b"bytes", 0o604)
        assert target.read_bytes() == b"bytes" and stat.S_IMODE(target.stat().st_mode) == 0o604
        with pytest.raises(OSError) as err:  # the directory is gone: the error names the file
            fileio.write_atomic(str(tmp_path / "gone" / "f"), "x", 0o644)
        assert str(tmp_path / "gone" / "f") in fileio.os_error_text(err.value)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    finally:
        os.umask(old)


def test_free_space_is_measured_where_the_path_would_be_created(tmp_path):
    deep = tmp_path / "not" / "yet" / "there"
    assert fileio.existing_ancestor(str(deep)) == str(tmp_path)
    assert fileio.free_bytes(str(deep)) == fileio.free_bytes(str(tmp_path)) > 0
    assert campaign.free_bytes(str(deep)) == fileio.free_bytes(str(tmp_path))


def test_the_detached_runner_imports_its_helpers_from_beside_it(tmp_path):
    """On a node the runner is a copy with fileio.py, mllog_line.py and tunables.py beside it
    (roles/campaign), where neither Ansible's module_utils nor this package is importable."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("fileio.py", "mllog_line.py", "tunables.py"):
        (bindir / name).write_bytes((ROOT / "mlperf_repro" / "node" / name).read_bytes())
    (bindir / "mlperf_campaign.py").write_bytes((ROOT / "mlperf_repro/node/campaign.py").read_bytes())
    log = tmp_path / "result_0.txt"
    log.write_text(':::MLLOG {"key":"run_stop","metadata":{"status":"success"}}\n')
    probe = ("import sys; sys.modules.pop('mlperf_repro', None); "
             "import mlperf_campaign as c; print(c.run_outcome(sys.argv[1], 0), c.fileio.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", probe, str(log)], cwd=bindir,
                         capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(bindir)})
    assert out.returncode == 0, out.stderr
    status, where = out.stdout.split()
    assert status == "success" and where == str(bindir / "fileio.py")
    # and the role installs exactly those files beside it
    role = (ROOT / "roles" / "campaign" / "tasks" / "main.yml").read_text() + (
        ROOT / "roles" / "campaign" / "defaults" / "main.yml").read_text()
    for name in ("fileio.py", "mllog_line.py", "tunables.py"):
        assert "/%s" % name in role or "'node/%s'" % name in role, name
