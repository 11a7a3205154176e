"""The single-node docker launch path for real: rootful podman behind a ``docker`` command.

What runs is the project's own chain (render, run, collect, score of site.yml) with container
runtime ``docker``, on a test platform ``CPU_1x1x2`` of the smoke benchmark whose image
``rocm/amd-mlperf:smoke_training_6.0`` is built here without a registry (tests/infra/image.py:
debootstrap'd Debian + numpy + mlperf_logging + the smoke benchmark at /workspace/code; cached
across runs). The ``docker`` is tests/infra/docker_wrapper.py's (podman with runc, ulimits root
can grant here, a store private to this module), and /dev/kfd, /dev/dri are fake device nodes
(tests/infra/fake_devices.py), so AMD's ``--device /dev/kfd --device /dev/dri`` are accepted.

- on this machine (inventory/local): the code is copied out of the image (docker create/cp/rm),
  NEXP runs exec'd in one long-lived container, the logs collected and scored, nothing left;
- the same over SSH on a network-namespace host, with podman storage of its own under /tmp;
- a 10-run campaign whose runner is killed during run 4, resumed by ``--tags run``;
- preflight refuses a node where another container runs, unless told to allow it.

Skipped, with the reason, unless root with podman, runc and debootstrap (or a cached image).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node.campaign import planned_commands
from mlperf_repro.scoring import score_directory
from tests.infra import fake_devices, image, netns
from tests.infra.docker_wrapper import PodmanDocker
from tests.infra.fake_devices import FakeGpuDevices
from tests.infra.netns import NetnsHosts

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SYSTEM = image.SYSTEM
REASON = image.skip_reason() or fake_devices.skip_reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

NEXP = 3
CONTAINER = "mlperf_smoke"  # the smoke benchmark's container_name in the catalog
# AMD's single-node `docker run` flags (the campaign role's defaults); none of them is a ulimit
# (AMD's multi-node --ulimit memlock=-1 / nofile=1048576 cannot be granted on this machine).
FLAGS = ["--net=host", "--uts=host", "--ipc=host", "--device=/dev/dri", "--device=/dev/kfd",
         "--security-opt=seccomp=unconfined"]


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base():
    path = Path(tempfile.mkdtemp(prefix="mlperf-docker-", dir="/tmp"))
    os.chmod(path, 0o755)  # the netns hosts' sshd and podman traverse it
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def images():
    started = time.monotonic()
    try:
        store = image.load_image(log=print)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a reason to skip
        pytest.skip(f"the test image {image.IMAGE} cannot be built here: {exc}")
    print(f"test image ready in {time.monotonic() - started:.1f} s")
    return store


@pytest.fixture(scope="module")
def devices():
    with FakeGpuDevices() as fake:
        yield fake


@pytest.fixture(scope="module")
def docker(base, images, devices):
    wrapper = PodmanDocker(base / "docker", additional_image_stores=[images.graphroot]).setup()
    yield wrapper
    wrapper.teardown()


@pytest.fixture(scope="module")
def catalog(base):
    return image.write_test_catalog(base / "catalog.yml")


def site_vars(base, name, catalog, **more):
    """Extra vars of one sandboxed campaign of the docker platform (own root, own results)."""
    root = base / name
    (root / "root" / "data").mkdir(parents=True)  # DATADIR, bind-mounted (podman needs it)
    return {
        "mlperf_system": SYSTEM,
        "mlperf_container_runtime": "docker",
        "validate_catalog_path": str(catalog),
        "mlperf_local_root": str(root / "root"),
        "mlperf_results_dir": str(root / "results"),
        "campaign_container_flags": FLAGS,
        # AMD drops the page cache before each run; vm.* sysctls are machine-wide: not in tests
        "campaign_clear_caches": False,
        "campaign_poll_seconds": 1,
        **more,
    }


def playbook_argv(docker, *args, inventory="inventory/local", extra=None):
    env = docker.env(dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}"))
    env.update(ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    return argv, env


def playbook(docker, *args, inventory="inventory/local", extra=None, check=True):
    argv, env = playbook_argv(docker, *args, inventory=inventory, extra=extra)
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    proc.seconds = time.monotonic() - started
    print(f"ansible-playbook {' '.join(args)}: rc {proc.returncode} in {proc.seconds:.1f} s")
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}")
    return proc


def task_status(stdout, task, host="local"):
    current = None
    for line in stdout.splitlines():
        header = re.match(r"^TASK \[(.+?)\] \*+", line)
        if header:
            current = header.group(1)
        elif current == task:
            match = re.match(r"^(ok|changed|skipping|failed|fatal): \[%s\]" % re.escape(host), line)
            if match:
                return match.group(1)
    return None


def only_campaign(extra):
    root = Path(extra["mlperf_local_root"]) / "logs" / "smoke" / SYSTEM
    (campaign,) = sorted(root.iterdir())
    return campaign


def container_events(events, name=CONTAINER):
    return [status for kind, status, who in events if kind == "container" and who == name]


def one_container_lifetime(events, nexp):
    """Container ``events``: created and started once, ``nexp`` execs, then died and removed.

    (podman sometimes reports an exec session's end twice, so exec_died is not counted.)
    """
    execs = [i for i, e in enumerate(events) if e == "exec"]
    return (events[:3] == ["create", "init", "start"] and len(execs) == nexp
            and events.count("create") == events.count("start") == events.count("remove") == 1
            and "died" in events and execs[-1] < events.index("died") and events[-1] == "remove")


def check_run_logs(campaign, nexp):
    """Every run's log: the benchmark's own output only, run inside the container, one seed each."""
    state = json.loads((campaign / "state.json").read_text())
    assert state["status"] == "complete", state
    assert [r["status"] for r in state["runs"]] == ["success"] * nexp, state["runs"]
    seeds = []
    for k in range(nexp):
        text = (campaign / f"result_{k}.txt").read_text()
        # nothing of podman's (podman-docker's "Emulate Docker CLI" notice, warnings) in the log
        assert text.startswith("STARTING TIMING RUN AT "), text[:300]
        assert "Emulate Docker CLI" not in text and "WARN[" not in text and "level=" not in text
        assert '"file": "/workspace/code/train.py"' in text  # ran from the image's code path
        assert '"key": "submission_platform", "value": "CPU"' in text  # config exported in
        assert f'"value": "config_{SYSTEM}.sh"' in text
        assert '"status": "success"' in text and re.search(r"^RESULT,SMOKE,", text, re.M)
        seeds.append(int(re.search(r'"key": "seed", "value": (\d+)', text).group(1)))
        assert seeds[-1] == state["runs"][k]["seed"]
    assert len(set(seeds)) == nexp, seeds
    return state


# ---------------------------------------------------------------------------------------------
def test_docker_campaign_on_this_machine(docker, base, catalog):
    extra = site_vars(base, "local", catalog, mlperf_nexp=NEXP, mlperf_allow_partial=True)
    proc = playbook(docker, "--tags", "render,run,collect,score", extra=extra)

    # render: the code came out of the image (docker create / cp / rm), beside the rendered config
    code = Path(extra["mlperf_local_root"]) / "work" / "code" / "smoke"
    assert (code / ".copied-from-image").exists()
    for name in ("train.py", "run_and_time.sh"):
        assert (code / name).read_bytes() == (ROOT / "mlperf_repro" / "smoke" / name).read_bytes()
    assert f'export DGXSYSTEM="{SYSTEM}"' in (code / f"config_{SYSTEM}.sh").read_text()

    # run: NEXP runs, each a `docker exec` into one long-lived container started once
    campaign = only_campaign(extra)
    check_run_logs(campaign, NEXP)
    spec = json.loads((campaign / "campaign.json").read_text())
    started = [line.split("starting container: ", 1)[1]
               for line in (campaign / "runner.out").read_text().splitlines()
               if "starting container: " in line]
    assert started == [planned_commands(spec, str(campaign))[1]]  # the command check mode shows
    for flag in FLAGS + ["--rm", "--init", "--detach", f"{campaign}:/results"]:
        assert flag in started[0]
    assert started[0].endswith(f"{image.IMAGE} sleep infinity")
    events = docker.events()
    assert one_container_lifetime(container_events(events), NEXP), repr(container_events(events))
    others = [(s, n) for k, s, n in events if k == "container" and n != CONTAINER]
    assert [s for s, _ in others] == ["create", "remove"], events  # render's create / cp / rm
    assert docker.containers() == []  # nothing left behind

    # collect + score: the logs back on the controller, scored (a partial set of NEXP runs)
    collected = Path(extra["mlperf_results_dir"]) / "smoke" / SYSTEM / campaign.name / "local"
    assert sorted(p.name for p in collected.glob("result_*.txt")) == [
        f"result_{k}.txt" for k in range(NEXP)]
    score = json.loads((collected / "score.json").read_text())
    assert len(score["runs"]) == NEXP and all(r["status"] == "success" for r in score["runs"])
    assert score["score_minutes"] > 0
    assert "smoke: score " in proc.stdout and f"partial set: {NEXP} of 10 runs" in proc.stdout


def test_docker_campaign_over_ssh_on_a_netns_host(docker, images, base, catalog):
    missing = netns.missing_commands()
    if missing:
        pytest.skip("not installed: %s (apt-get install -y --no-install-recommends "
                    "openssh-server iproute2)" % ", ".join(missing))
    # podman on the host: storage of its own under /tmp (the host's /var/lib is an overlay, and
    # overlay-on-overlay fails), the cached image store shared read-only; /usr/local/bin/docker
    # written into the host's own /usr/local overlay
    node_docker = PodmanDocker.for_host(base / "node1-podman", images).setup()
    controller_events = len(docker.events())
    hosts = NetnsHosts(base / "netns", ["node1"]).up()
    try:
        node_docker.install_on_host(hosts, "node1")
        which = hosts.ssh("node1", "command -v docker && docker ps --all --format '{{.Names}}'")
        assert which.returncode == 0, which.stderr
        assert which.stdout.split() == ["/usr/local/bin/docker"], which.stdout

        extra = site_vars(base, "node1", catalog, mlperf_nexp=2, mlperf_allow_partial=True)
        inventory = base / "netns" / "inventory"
        (inventory / "group_vars").mkdir(parents=True)
        (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
            "mlperf_controller": {"hosts": {"localhost": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
            "mlperf_nodes": {"hosts": {"node1": {"ansible_host": hosts.hosts["node1"].ip}}},
            "mlperf_staging": {"hosts": {"node1": {}}},
        }}}))
        group_vars = yaml.safe_load((ROOT / "inventory" / "local" / "group_vars" / "all.yml").read_text())
        group_vars.update(hosts.ansible_vars())
        group_vars.update(extra)
        group_vars.pop("mlperf_local_root")
        local_root = extra["mlperf_local_root"]
        group_vars.update(mlperf_datadir=f"{local_root}/data", mlperf_logdir=f"{local_root}/logs",
                          mlperf_workdir=f"{local_root}/work")
        (inventory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars))

        proc = playbook(docker, "--tags", "render,run,collect,score", inventory=inventory)
        assert task_status(proc.stdout, "campaign : Start the campaign, or re-attach to an unfinished one",
                           host="node1") == "changed"
        campaign = only_campaign(extra)
        check_run_logs(campaign, 2)
        # the containers ran in node1's podman (over SSH), none in this machine's
        node_events = node_docker.events()
        assert one_container_lifetime(container_events(node_events), 2), node_events
        assert len(docker.events()) == controller_events
        assert hosts.exec("node1", [str(node_docker.docker), "ps", "-a", "-q"]).stdout.split() == []
        collected = Path(extra["mlperf_results_dir"]) / "smoke" / SYSTEM / campaign.name / "node1"
        score = json.loads((collected / "score.json").read_text())
        assert [r["status"] for r in score["runs"]] == ["success", "success"]
    finally:
        try:
            node_docker.teardown_on_host(hosts, "node1")  # its mounts are in node1's namespace
        finally:
            hosts.down()
            node_docker.teardown()


def kill_runner_during_run_4(extra, playbook_proc, timeout=480):
    """kill -9 the detached runner while run 4 (index 3) is running, its log half written."""
    root = Path(extra["mlperf_local_root"]) / "logs" / "smoke" / SYSTEM
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "run 4 was never seen running"
        assert playbook_proc.poll() in (None, 0), "the playbook that starts the campaign failed"
        states = sorted(root.glob("*/state.json")) if root.is_dir() else []
        state = json.loads(states[0].read_text()) if states else None
        if state and len(state["runs"]) == 10:
            statuses = [r["status"] for r in state["runs"]]
            log = states[0].parent / "result_3.txt"
            if statuses[3] == "running" and log.exists() and b'"key": "run_start"' in log.read_bytes():
                break
            assert statuses[4] == "pending", f"run 5 started before run 4 was caught: {statuses}"
        time.sleep(0.05)
    assert statuses[:3] == ["success"] * 3
    os.kill(state["runner_pid"], signal.SIGKILL)


def test_campaign_killed_during_run_4_of_10_resumes_to_ten_runs(docker, base, catalog):
    extra = site_vars(base, "resume", catalog, mlperf_nexp=10)
    # started in the background: the runs go on while Ansible finishes its play
    argv, env = playbook_argv(docker, "--tags", "render,run", extra=dict(extra, campaign_wait=False))
    with open(base / "resume" / "start.out", "w+") as out:
        start = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            kill_runner_during_run_4(extra, start)
        finally:
            rc = start.wait(timeout=300)
        out.seek(0)
        assert rc == 0, out.read()[-6000:]
    campaign = only_campaign(extra)
    assert docker.containers(running_only=True) == [CONTAINER]  # left running by the dead runner

    # --tags run again: the newest unfinished campaign is resumed at its first unfinished run
    proc = playbook(docker, "--tags", "run", extra=extra)
    assert task_status(proc.stdout, "campaign : Start the campaign, or re-attach to an unfinished one") == "changed"
    assert sorted(only_campaign(extra).parent.iterdir()) == [campaign]  # resumed, not a new one
    state = check_run_logs(campaign, 10)  # 10 distinct run logs, 10 distinct seeds
    # Run 4 outlived its runner (`docker exec` in its own session): the resumed runner adopted it
    # (or found it ended) and recorded its result from its log; it never started it again.
    assert state["runs"][3]["status"] == "success"
    assert not list(campaign.glob("result_*.txt.interrupted-*"))
    runner = (campaign / "runner.out").read_text()
    assert runner.count("run 4/10: seed") == 1
    assert "run 4/10: success (adopted)" in runner or "run 4/10: success (ended while" in runner
    assert runner.count("starting container: ") == 2  # the resumed runner replaced the container
    assert "run 5/10: seed" in runner.split("starting container: ")[2]  # ... after run 4 ended
    assert "run 3/10: seed" not in runner.split("starting container: ")[2]  # finished: not re-run
    assert docker.containers() == []

    # a whole set: scored as MLCommons scores ten runs (the .interrupted-1 log is not one of them)
    score = score_directory(campaign, quality_target=0.85)
    assert score.valid, score.reasons
    assert len(score.runs) == 10 and score.score_minutes == score.olympic_minutes > 0


def test_preflight_refuses_a_node_running_another_container(docker, base, catalog):
    extra = site_vars(base, "preflight", catalog)
    docker.run("run", "--rm", "--init", "--detach", "--net=host", "--name", "someone_elses_job",
               image.IMAGE, "sleep", "infinity")
    try:
        refused = playbook(docker, "--tags", "preflight", extra=extra, check=False)
        assert refused.returncode != 0
        assert "other containers are running (someone_elses_job)" in refused.stdout
        allowed = playbook(docker, "--tags", "preflight",
                           extra=dict(extra, preflight_allow_running_containers=True))
        assert "other containers are running" not in allowed.stdout
        summary = json.loads((Path(extra["mlperf_results_dir"]) / "preflight.json").read_text())
        (node,) = [row for row in summary["nodes"] if row["host"] == "local"]
        assert node["node"]["container"]["running"] == ["someone_elses_job"]
        assert node["problems"] == []
    finally:
        docker.run("rm", "--force", "--time", "0", "someone_elses_job", check=False)
    assert docker.containers() == []


def run_runner(docker, directory, env=None):
    """The detached runner, run in the foreground (no Ansible) with the wrapper's docker."""
    return subprocess.run([sys.executable, str(ROOT / "mlperf_repro" / "node" / "campaign.py"),
                           "run", str(directory)], env=docker.env(env), capture_output=True,
                          text=True, timeout=120)


def test_runner_passes_every_config_variable_and_reports_a_container_that_cannot_start(docker, base):
    from mlperf_repro.node.campaign import prepare
    code = base / "runner" / "code"
    code.mkdir(parents=True)
    (code / "run_and_time.sh").write_text(
        'echo "SAME=${SAME_AS_RUNNER:-unset} OWN=${OWN:-unset} LOGDIR=${LOGDIR:-unset} SEED=$SEED"\n'
        'echo "PATH=$PATH"\n'
        'echo \':::MLLOG {"key": "run_stop", "metadata": {"status": "success"}}\'\n')
    (code / "config_X.sh").write_text("export SAME_AS_RUNNER=yes\nOWN=1\n")

    def campaign(name, flags):
        spec = {"nexp": 1, "code_dir": str(code), "config_file": str(code / "config_X.sh"),
                "runtime": "docker", "image": image.IMAGE, "container_name": f"mlperf_{name}",
                "container_flags": flags, "campaign_id": name, "root_seed": 7,
                "mounts": [{"host": str(code), "container": "/workspace/code"}]}
        directory = base / "runner" / name
        prepare(str(directory), spec, {"LOGDIR": str(directory)})
        return directory

    # AMD passes every variable the config exports (`--env NAME`), whatever the value of NAME in
    # the launcher's own environment; the launcher's PATH stays out of the container
    good = campaign("envcheck", ["--net=host"])
    run_runner(docker, good, dict(os.environ, SAME_AS_RUNNER="yes"))
    state = json.loads((good / "state.json").read_text())
    assert state["status"] == "complete" and state["runs"][0]["status"] == "success", state
    log = (good / "result_0.txt").read_text()
    assert f"SAME=yes OWN=1 LOGDIR={good} SEED=7" in log, log
    assert str(docker.bin) not in log and str(BIN) not in log

    # a container that cannot start: the campaign fails with the runtime's own reason
    bad = campaign("nodevice", ["--net=host", "--device=/dev/mlperf-test-missing"])
    run_runner(docker, bad)
    state = json.loads((bad / "state.json").read_text())
    assert state["status"] == "failed" and "/dev/mlperf-test-missing" in state["error"], state
    assert [r["status"] for r in state["runs"]] == ["pending"]  # nothing ran: resumable later
    assert docker.containers() == []
