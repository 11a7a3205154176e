"""Preflight probes and the one-table report, driven with real paths and recorded command output."""

import hashlib
import re
import shutil
from pathlib import Path

from mlperf_repro.node import preflight
from mlperf_repro.preflight_report import shared_marker_problems, shared_mount_problems
from filter_plugins.mlperf import mlperf_preflight_table


def test_full_disk_is_a_problem_naming_path_and_sizes(tmp_path):
    facts, problems = preflight.probe([{"label": "DATADIR", "path": str(tmp_path / "data"),
                                        "need_gb": 10 ** 7}])
    assert len(problems) == 1
    assert "DATADIR" in problems[0] and str(tmp_path) in problems[0] and "needs 10000000.0 GiB" in problems[0]
    # the free space reported is the space where DATADIR will be created (its parent), in GiB:
    # the record's whole GiB and the message's figure agree with each other and with the disk
    disk = facts["disks"][0]
    said = re.search(r"has ([0-9.]+) GiB free", problems[0])
    assert said, problems[0]
    assert abs(float(said.group(1)) - disk["free_gb"]) <= 0.5
    assert abs(disk["free_gb"] - shutil.disk_usage(tmp_path).free / 1024 ** 3) <= 1
    assert disk["need_gb"] == 10 ** 7


def test_enough_disk_and_present_commands_are_fine(tmp_path):
    facts, problems = preflight.probe([{"label": "LOGDIR", "path": str(tmp_path), "need_gb": 0.001}],
                                      commands=["bash"])
    assert problems == []
    assert facts["commands"]["bash"] == shutil.which("bash")


def test_missing_command_and_runtime_are_named():
    _, problems = preflight.probe([], commands=["cpupower-not-here"], runtime="docker",
                                  run=lambda argv: (127, "", "not found"))
    if shutil.which("docker") is None:
        assert "docker is not installed (container runtime docker)" in problems
    assert "command 'cpupower-not-here' not found on PATH" in problems


def test_other_running_containers_are_a_problem_unless_allowed(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    run = lambda argv: (0, "jupyter\nmlperf_old\n", "")  # noqa: E731 - `docker ps --format {{.Names}}`
    facts, problems = preflight.container_runtime_check("docker", run)
    assert facts["running"] == ["jupyter", "mlperf_old"]
    assert "stop every container" in problems[0] and "jupyter, mlperf_old" in problems[0]
    _, problems = preflight.container_runtime_check("docker", run, allow_running=True)
    assert problems == []


def test_unusable_runtime_reports_its_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    run = lambda argv: (1, "", "permission denied while trying to connect to the Docker daemon socket")  # noqa: E731
    facts, problems = preflight.container_runtime_check("docker", run)
    assert facts["usable"] is False and "cannot list containers" in problems[0]


def test_mount_of_finds_the_longest_prefix(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\nnas:/export /data nfs4 rw 0 0\n")
    (tmp_path / "data").mkdir()
    entry = preflight.mount_of("/data/mlperf/x", str(mounts))
    assert entry["fstype"] in ("nfs4", "ext4", "overlay", "")  # /data may not exist here
    entry = preflight.mount_of("/", str(mounts))
    assert entry == {"source": "/dev/sda1", "mountpoint": "/", "fstype": "ext4"}


def _row(host, source, mnt, fstype):
    return {"host": host, "node": {"disks": [{"label": "DATADIR", "path": "/data/x", "source": source,
                                              "mountpoint": mnt, "fstype": fstype}]}}


def test_shared_storage_must_be_the_same_network_filesystem_everywhere():
    good = [_row(f"n{i}", "nas:/export", "/data", "nfs4") for i in range(3)]
    assert shared_mount_problems(good) == []
    local = good[:2] + [_row("n2", "/dev/nvme0n1", "/", "ext4")]
    problems = shared_mount_problems(local)
    hosts = {p["host"] for p in problems}
    assert hosts == {"n0", "n1", "n2"}
    assert any("n2" == p["host"] and "not a shared filesystem" in p["problem"] for p in problems)


def test_table_lists_every_problem_with_its_node():
    table = mlperf_preflight_table([
        {"host": "mi355x-node1", "problems": ["expected 8 GPUs, found 7", "ROCm 6.4.0 is older than 7.2.2"]},
        {"host": "n2", "problems": []},
        {"host": "controller", "problems": ["DATADIR full"]},
    ])
    lines = table.splitlines()
    assert lines[0].split() == ["host", "problem"]
    assert len(lines) == 5
    assert lines[2].startswith("mi355x-node1  expected 8 GPUs")
    assert mlperf_preflight_table([{"host": "a", "problems": []}]) == "no problems"


# -- paths that cannot hold what a run writes, whatever the free space --------------------------

def test_a_file_where_a_directory_must_be_is_named(tmp_path):
    (tmp_path / "logs").write_text("not a directory")
    _, problems = preflight.probe([{"label": "LOGDIR", "path": str(tmp_path / "logs"), "need_gb": 1},
                                   {"label": "DATADIR", "path": str(tmp_path / "logs" / "data"), "need_gb": 1}])
    assert problems == [f"LOGDIR: {tmp_path}/logs is a file, not a directory",
                        f"DATADIR: {tmp_path}/logs/data cannot be created: {tmp_path}/logs is a file, "
                        "not a directory"]


def _mount_tmpfs(path, options):
    import subprocess
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "mlperf-test", str(path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        import pytest
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")


def test_read_only_filesystem_is_said_as_such_not_as_no_space(tmp_path):
    import subprocess
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        facts, problems = preflight.probe([{"label": "LOGDIR", "path": str(ro / "logs"), "need_gb": 1}])
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert problems == [f"LOGDIR: {ro}/logs is on a read-only filesystem (mlperf-test mounted "
                        f"read-only at {ro})"]
    assert not any("GiB free" in p for p in problems)
    assert facts["disks"][0]["mountpoint"] == str(ro)


def test_a_directory_the_user_cannot_write_is_named(request):
    import os
    import subprocess
    import sys
    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root to run the probe as another user")
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="mlperf-preflight-"))  # pytest's tmp_path is 0700 root
    os.chmod(base, 0o755)
    request.addfinalizer(lambda: shutil.rmtree(base))
    code = ("import json, sys; sys.path.insert(0, %r); from mlperf_repro.node import preflight; "
            "print(json.dumps(preflight.probe([{'label': 'results', 'path': %r, 'need_gb': 0}])[1]))"
            % (os.getcwd(), str(base / "results")))
    # the system's Python: the venv may sit under /root, which nobody cannot enter
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True,
                          user="nobody", cwd="/")
    import json
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [f"results: {base}/results cannot be created: {base} is not "
                                       "writable by nobody"]
    _, problems = preflight.probe([{"label": "results", "path": str(base / "results"), "need_gb": 0}])
    assert problems == []  # root can


def test_preflight_summary_counts_as_changed_only_when_it_says_something_new():
    import json
    from mlperf_repro.preflight_report import summary_changed
    row = {"host": "n1", "node": {"disks": [{"label": "LOGDIR", "free_gb": 77, "need_gb": 1.0}]},
           "problems": []}
    summary = {"benchmark": "smoke", "system": "CPU_1x1x1", "nodes": [row]}
    text = json.dumps(summary)
    moved = json.loads(text)
    moved["nodes"][0]["node"]["disks"][0]["free_gb"] = 75
    assert not summary_changed(moved, text)
    worse = json.loads(text)
    worse["nodes"][0]["problems"] = ["LOGDIR: /x is a file, not a directory"]
    assert summary_changed(worse, text)
    assert summary_changed(summary, None) and summary_changed(summary, "{truncated")


def test_the_mount_table_is_read_once_for_both_questions(tmp_path):
    table = ("server:/export /mnt/shared nfs4 rw 0 0\n"
             "/dev/sda1 /mnt/with\\040space ext4 rw 0 0\n"
             "other:/x /mnt/shared nfs rw 0 0\n"
             "short line\n")
    assert preflight.mount_table(table)[1] == {"source": "/dev/sda1", "mountpoint": "/mnt/with space",
                                               "fstype": "ext4"}
    # the mount in effect at a mount point is the last one mounted there
    assert preflight.mount_at(table, "/mnt/shared/") == {"source": "other:/x", "mountpoint": "/mnt/shared",
                                                         "fstype": "nfs"}
    assert preflight.mount_at(table, "/mnt/with space")["source"] == "/dev/sda1"
    assert preflight.mount_at(table, "/mnt") is None
    # a path's mount (longest prefix, at its nearest existing directory) from the same parser
    mounts = tmp_path / "mounts"
    mounts.write_text(table + f"srv:/e {tmp_path} nfs rw 0 0\n")
    (tmp_path / "x").mkdir()
    assert preflight.mount_of(str(tmp_path / "x" / "not-yet"), str(mounts)) == {
        "source": "srv:/e", "mountpoint": str(tmp_path), "fstype": "nfs"}


def test_the_shared_storage_proof_names_each_host_and_path_that_failed():
    content = "mlperf-repro shared-storage check abc written by n1"
    good = hashlib.sha1(content.encode()).hexdigest()
    reads = {
        "n1": [{"item": "/data", "stat": {"exists": True, "checksum": good}}],
        "n2": [{"item": "/data", "stat": {"exists": False}},
               {"item": "/logs", "stat": {"exists": True, "checksum": "0" * 40}}],
        "n3": [],   # got no further
    }
    assert shared_marker_problems(reads, "n1", content) == [
        "n2: /data: the marker is not there: not the same filesystem as on n1 (not mounted, or a local directory)",
        "n2: /logs: the marker has other content than n1 wrote (another filesystem holding an old marker?)",
    ]
    assert shared_marker_problems({"n1": reads["n1"]}, "n1", content) == []
