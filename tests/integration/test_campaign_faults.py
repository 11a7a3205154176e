"""The campaign runner under faults, driven through the real mlperf_campaign module.

Every campaign here is started, inspected and resumed by ``ansible-playbook`` running the module
on inventory/local; the runner is the real detached process, killed for real with SIGKILL. The
runs replay a real smoke-benchmark log (mlperf_repro/smoke), can hold at a chosen run until the
test releases them, and detect any moment at which two runs of a campaign run at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node import campaign

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUNNER = ROOT / "mlperf_repro" / "node" / "campaign.py"
SECRET = "hf_CANARY_7c0ffee5ec2e7a1b"
ROOT_SEED = 42
pytestmark = pytest.mark.integration

# A run: k is its index (from SEED). It refuses to run beside another run of the campaign
# (records an overlap), may hold until released, then prints a real smoke log.
RUN_AND_TIME = r"""#!/bin/bash
set -eu
k=$(( (SEED - 42) / 1000 ))
if ! mkdir "$ST/active" 2>/dev/null; then echo "$k beside $(cat "$ST/active/k")" >> "$ST/overlap"; fi
echo "$k" > "$ST/active/k"
trap 'rm -rf "$ST/active"' EXIT
echo "$k" >> "$ST/starts"
echo $$ > "$ST/pid_$k"
head -n 5 "$LOG"
if [ "${HOLD_AT:-x}" = "$k" ]; then
    touch "$ST/holding_$k"
    while [ ! -e "$ST/release_$k" ]; do sleep 0.1; done
fi
cat "$LOG"
"""


@pytest.fixture(scope="module")
def smoke_log(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "result.txt"
    env = dict(os.environ, SEED="7", SMOKE_DEVICE="cpu", DGXSYSTEM="CPU_1x1x1")
    with open(out, "w") as handle:
        subprocess.run([sys.executable, str(ROOT / "mlperf_repro/smoke/train.py")], env=env,
                       stdout=handle, check=True)
    return out


class Node:
    """A campaign root, a benchmark code directory and the module, on this machine."""

    def __init__(self, base: Path, smoke_log: Path, root: Path | None = None):
        self.base = base
        self.code = base / "code"
        self.code.mkdir()
        (self.code / "run_and_time.sh").write_text(RUN_AND_TIME)
        (self.code / "config_CPU_1x1x1.sh").write_text('export DGXSYSTEM="CPU_1x1x1"\n')
        self.st = base / "st"
        self.st.mkdir()
        self.node_root = root or base / "logs"  # <node_root>/<benchmark>/<system>/<campaign>
        self.root = self.node_root / "smoke" / "CPU_1x1x1"
        self.smoke_log = smoke_log
        self.consoles: list[str] = []
        self.calls = 0

    def module(self, check=True, **args) -> dict:
        """Run mlperf_campaign once through ansible-playbook; its result."""
        self.calls += 1
        play = [{"hosts": "local", "gather_facts": False,
                 "tasks": [{"name": "campaign", "mlperf_campaign": args}]}]
        path = self.base / f"play{self.calls}.yml"
        path.write_text(yaml.safe_dump(play))
        env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal")
        proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "inventory/local", str(path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        console = proc.stdout + proc.stderr
        path.unlink()  # it holds the secret: only the campaign's env.json may keep it
        self.consoles.append(console)
        match = re.search(r"^local \| (\S+) => (\{.*?^\})", proc.stdout, re.M | re.S)
        assert match, console
        result = json.loads(match.group(2))
        result["failed"] = match.group(1).startswith("FAILED")
        result["_console"] = console
        if check:
            assert proc.returncode == 0, console
        return result

    def start(self, nexp=3, campaign_id="c1", resume=True, check=True, root=None, **env):
        env = dict({"LOG": str(self.smoke_log), "ST": str(self.st)}, **env)
        spec = {"nexp": nexp, "code_dir": str(self.code), "runtime": "none",
                "config_file": str(self.code / "config_CPU_1x1x1.sh"), "root_seed": ROOT_SEED}
        return self.module(check=check, state="started", root=str(root or self.root),
                           node_root=str(self.node_root), campaign_id=campaign_id,
                           resume=resume, spec=spec, env=env, secret_env={"HF_TOKEN": SECRET},
                           runner_script=str(RUNNER), python=sys.executable)

    def status(self, directory) -> dict:
        return self.module(state="status", campaign_dir=str(directory))

    def wait_status(self, directory, until, limit=120) -> dict:
        """Poll the module until ``until(result)``; the safety bound only stops a hung test."""
        deadline = time.time() + limit
        while True:
            result = self.status(directory)
            if until(result) or time.time() > deadline:
                return result
            time.sleep(0.5)

    def starts(self) -> list[int]:
        path = self.st / "starts"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    def release(self, k):
        (self.st / f"release_{k}").touch()

    def release_all(self):
        for k in range(10):
            self.release(k)


@pytest.fixture
def make_node(tmp_path, smoke_log):
    nodes = []

    def make(root=None):
        nodes.append(Node(tmp_path, smoke_log, root))
        return nodes[-1]
    yield make
    for node in nodes:  # a failed test leaves no run holding forever
        node.release_all()


def wait_for(predicate, limit=60):
    deadline = time.time() + limit
    while not predicate():
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def alive(pid) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill9(pid):
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not alive(pid))


def assert_no_secret(node: Node, *trees: Path):
    for console in node.consoles:
        assert SECRET not in console
    for tree in trees:
        for path in tree.rglob("*"):
            if path.is_file() and SECRET.encode() in path.read_bytes():
                assert path.name == "env.json", path
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_orphaned_run_is_adopted_never_run_twice(tmp_path, make_node):
    node = make_node()
    started = node.start(nexp=3, HOLD_AT="1")
    assert started["action"] == "started"
    directory = Path(started["campaign_dir"])
    assert wait_for(lambda: (node.st / "holding_1").exists())
    state = json.loads((directory / "state.json").read_text())
    run_pid = int((node.st / "pid_1").read_text())

    kill9(state["runner_pid"])  # the detached runner dies; its run goes on, orphaned
    assert alive(run_pid)
    status = node.status(directory)
    assert status["status"] == "interrupted" and status["runner_alive"] is False
    assert status["orphans"] == [1]

    # No second campaign while the orphan runs on this node.
    other = node.start(campaign_id="c2", resume=False, check=False)
    assert other["failed"] and "two campaigns never run at once" in other["msg"]
    assert str(directory) in other["msg"]
    assert not (node.root / "c2").exists()
    elsewhere = node.start(campaign_id="c3", check=False, root=node.node_root / "other" / "SYS")
    assert elsewhere["failed"] and str(directory) in elsewhere["msg"]  # another benchmark: no
    assert not (node.node_root / "other" / "SYS" / "c3").exists()

    resumed = node.start(nexp=3)
    assert resumed["action"] == "resumed" and resumed["campaign_dir"] == str(directory)
    assert wait_for(lambda: json.loads((directory / "state.json").read_text())["runs"][1].get("adopted"))
    assert node.starts() == [0, 1]  # the orphan is waited for, not started again beside it
    assert alive(run_pid)
    node.release(1)
    done = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert done["status"] == "complete", done
    assert [r["status"] for r in done["runs"]] == ["success"] * 3
    assert done["runs"][1]["adopted"] is True
    assert node.starts() == [0, 1, 2]
    assert not (node.st / "overlap").exists(), (node.st / "overlap").read_text()
    assert not list(directory.glob("*.interrupted-*"))  # nothing was restarted
    assert_no_secret(node, tmp_path)


def test_orphan_of_a_stopped_campaign_is_stopped(tmp_path, make_node):
    node = make_node()
    directory = Path(node.start(nexp=2, HOLD_AT="0")["campaign_dir"])
    assert wait_for(lambda: (node.st / "holding_0").exists())
    run_pid = int((node.st / "pid_0").read_text())
    kill9(json.loads((directory / "state.json").read_text())["runner_pid"])
    stopped = node.module(state="stopped", campaign_dir=str(directory))
    assert stopped["changed"] and stopped["action"] == "stopped"
    assert wait_for(lambda: not alive(run_pid))
    node.release(0)
    resumed = node.start(nexp=2)
    assert resumed["action"] == "resumed"
    done = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert [r["status"] for r in done["runs"]] == ["success", "success"]
    assert node.starts() == [0, 0, 1]  # the stopped run ran again, after its orphan was gone
    assert (directory / "result_0.txt.interrupted-1").exists()
    assert not (node.st / "overlap").exists()


def test_a_recycled_pid_is_neither_adopted_nor_killed(tmp_path, make_node):
    """The recorded runner and run pids now belong to an unrelated process (as after a pid
    wrap-around), one whose command line even names the campaign."""
    node = make_node()
    directory = Path(node.start(nexp=2, HOLD_AT="0")["campaign_dir"])
    assert wait_for(lambda: (node.st / "holding_0").exists())
    state = json.loads((directory / "state.json").read_text())
    run_group = state["runs"][0]["process"]["pid"]
    kill9(state["runner_pid"])
    os.killpg(run_group, signal.SIGKILL)  # the node "rebooted": runner and run are gone
    assert wait_for(lambda: not campaign.group_members(state["runs"][0]["process"]))

    decoy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)",
                              str(RUNNER), "run", str(directory)], start_new_session=True)
    try:
        decoy_start = campaign.identity(decoy.pid)["start"]
        state["runner"]["pid"] = state["runner_pid"] = decoy.pid
        state["runner"]["start"] = decoy_start - 1   # an earlier process that had this pid
        state["runs"][0]["process"].update(pid=decoy.pid, start=decoy_start - 1)
        campaign.write_json(str(directory / "state.json"), state)

        status = node.status(directory)
        assert status["runner_alive"] is False and status["status"] == "interrupted"
        assert not status.get("orphans")
        node.release(0)
        resumed = node.start(nexp=2)
        assert resumed["action"] == "resumed"
        done = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
        assert [r["status"] for r in done["runs"]] == ["success", "success"]
        assert node.starts() == [0, 0, 1]  # run 0 started again: its old process was gone
        assert (directory / "result_0.txt.interrupted-1").exists()
        assert decoy.poll() is None  # the unrelated process was left alone
    finally:
        decoy.kill()
        decoy.wait()


@pytest.fixture
def small_fs(tmp_path):
    """A 3 MiB tmpfs (the campaign's filesystem, to be filled mid-campaign)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a tmpfs)")
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as exc:
            assert "No space left on device" in str(exc)
    return filler


def test_full_disk_mid_campaign_names_the_cause_and_the_path(tmp_path, make_node, small_fs):
    node = make_node(small_fs / "logs")
    directory = Path(node.start(nexp=3, HOLD_AT="1")["campaign_dir"])
    assert wait_for(lambda: (node.st / "holding_1").exists())
    filler = fill(small_fs)
    node.release(1)
    failed = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert failed["status"] == "failed", failed
    assert "No space left on device" in failed["error"] and str(directory) in failed["error"]
    assert [r["status"] for r in failed["runs"]] == ["success", "pending", "pending"]
    # No temporary file left behind, empty or not.
    leftovers = [p for p in small_fs.rglob("*") if ".tmp." in p.name or ".new-" in p.name]
    assert leftovers == []
    empty = [p for p in directory.rglob("*") if p.is_file() and p.stat().st_size == 0]
    assert empty == []

    # Resumed while still full: refused at once, naming the cause and the path.
    again = node.start(nexp=3)
    assert again["action"] == "resumed"
    still = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert still["status"] == "failed" and "No space left on device" in still["error"]
    assert str(directory) in still["error"]
    assert node.starts() == [0, 1]

    # Space again: the campaign finishes; run 1's partial log is kept.
    filler.unlink()
    node.start(nexp=3)
    done = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert [r["status"] for r in done["runs"]] == ["success"] * 3, done
    assert (directory / "result_1.txt.interrupted-1").exists()
    assert node.starts() == [0, 1, 1, 2]
    assert_no_secret(node, small_fs)


def test_huge_run_count_fails_with_a_clear_message(tmp_path, make_node):
    node = make_node()
    for nexp, said in ((10 ** 12, "got 1000000000000"), ("ten", 'got "ten"'), (True, "got true"),
                       (0, "got 0")):
        result = node.start(nexp=nexp, check=False)
        assert result["failed"]
        assert result["msg"].startswith("spec.nexp: expected a whole number of runs from 1 to 1000")
        assert said in result["msg"], result["msg"]
        assert "Module failed." not in result["_console"] and "Tagged" not in result["_console"]
    assert not node.root.exists() or not list(node.root.iterdir())  # nothing was created


def test_guide_layout_under_umask_000_through_the_playbook(tmp_path):
    """LOGDIR inside DATADIR (as the guide lays them out), a secret in the environment and a
    umask of 000: the run stage succeeds, the paths it returns are shown as they are, the secret
    shows nowhere, and nothing the campaign creates is world-writable."""
    datadir = tmp_path / "data" / "mlperf_smoke"
    logdir = datadir / "results"
    extra = {"mlperf_local_root": str(tmp_path / "root"), "mlperf_datadir": str(datadir),
             "mlperf_logdir": str(logdir), "mlperf_results_dir": str(tmp_path / "results"),
             "mlperf_nexp": 2, "mlperf_allow_partial": True,
             # data, even inside campaign_extra_env (masked, it would mask campaign_dir) ...
             "campaign_extra_env": {"RESULTS_ROOT": str(logdir), "WANDB_API_KEY": SECRET + "_wb"},
             # ... and secrets: their own variable, or a name that looks secret
             "campaign_secret_env": {"S3_CREDS": SECRET + "_s3"}}
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", HF_TOKEN=SECRET, ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local", "-v",
                           "-e", json.dumps(extra)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, preexec_fn=lambda: os.umask(0))
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-5000:]

    root = logdir / "smoke" / "CPU_1x1x1"
    (directory,) = [p for p in root.iterdir() if (p / "campaign.json").exists()]
    assert f'"campaign_dir": "{directory}"' in console  # returned unmasked
    results = "\n".join(line for line in console.splitlines() if not line.endswith("*"))  # not banners
    assert "********" not in results  # Ansible's mask of a no_log value
    assert SECRET not in console
    state = json.loads((directory / "state.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["success", "success"]

    holders = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert holders == [directory / "env.json"]  # the token reached the runs, and only there
    run_env = json.loads((directory / "env.json").read_text())
    assert (run_env["HF_TOKEN"], run_env["WANDB_API_KEY"], run_env["S3_CREDS"]) == (
        SECRET, SECRET + "_wb", SECRET + "_s3")
    assert run_env["RESULTS_ROOT"] == str(logdir) and run_env["DATADIR"] == str(datadir)
    assert stat.S_IMODE((directory / "env.json").stat().st_mode) == 0o600
    created = [logdir, *logdir.rglob("*"), tmp_path / "root" / "work" / "bin",
               *(tmp_path / "root" / "work" / "bin").rglob("*")]
    writable = [f"{p} {oct(stat.S_IMODE(p.lstat().st_mode))}" for p in created
                if stat.S_IMODE(p.lstat().st_mode) & stat.S_IWOTH]
    assert writable == []
    assert stat.S_IMODE(directory.stat().st_mode) == 0o2770


def test_two_starts_at_once_on_a_node_start_one_campaign(tmp_path, make_node):
    """Two playbooks start a campaign on the same node at the same moment (other campaign ids,
    resume off): one starts, the other is refused, and no two runs ever overlap."""
    node = make_node()
    spec = {"nexp": 2, "code_dir": str(node.code), "runtime": "none",
            "config_file": str(node.code / "config_CPU_1x1x1.sh"), "root_seed": ROOT_SEED}
    env = {"LOG": str(node.smoke_log), "ST": str(node.st), "HOLD_AT": "0"}
    procs = []
    for name in ("a", "b"):
        play = [{"hosts": "local", "gather_facts": False, "tasks": [{"mlperf_campaign": {
            "root": str(node.root), "node_root": str(node.node_root), "campaign_id": name,
            "resume": False, "spec": spec, "env": env, "runner_script": str(RUNNER),
            "python": sys.executable}}]}]
        (tmp_path / f"{name}.yml").write_text(yaml.safe_dump(play))
        procs.append(subprocess.Popen(
            [str(BIN / "ansible-playbook"), "-i", "inventory/local", str(tmp_path / f"{name}.yml")],
            cwd=ROOT, env=dict(os.environ, ANSIBLE_NOCOLOR="1"), stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0 and codes[1] != 0, outputs
    refused = outputs[[p.returncode for p in procs].index(codes[1])]
    assert "two campaigns never run at once" in refused
    (directory,) = [p for p in node.root.iterdir() if (p / "campaign.json").exists()]
    assert wait_for(lambda: (node.st / "holding_0").exists())
    node.release(0)
    done = node.wait_status(directory, lambda r: r["status"] not in ("pending", "running"))
    assert [r["status"] for r in done["runs"]] == ["success", "success"]
    assert node.starts() == [0, 1] and not (node.st / "overlap").exists()


def test_a_runner_that_died_on_a_full_disk_is_reported_with_the_cause(tmp_path, make_node,
                                                                        small_fs):
    """The disk filled so that the runner could not even record why it stopped."""
    node = make_node(small_fs / "logs")
    directory = Path(node.start(nexp=2, HOLD_AT="0")["campaign_dir"])
    assert wait_for(lambda: (node.st / "holding_0").exists())
    state = json.loads((directory / "state.json").read_text())
    kill9(state["runner_pid"])
    os.killpg(state["runs"][0]["process"]["pid"], signal.SIGKILL)
    fill(small_fs)
    status = node.status(directory)
    assert status["status"] == "interrupted"
    assert status["error"].startswith(f"No space left on device: {directory} ")
