"""Issue 14 item 1, Flux: the guide's 8-node MI325X run, as the guide writes it, through site.yml.

The inventory is inventory/mi325x's, filled with the values the reproduction guide gives
(../shared/reference/amd-mlperf-training-v6.0-reproduction.md, "Run Training (Slurm, 8-node
MI325X)"): DATADIR /data/mlperf_flux1/data, LOGDIR /data/mlperf_flux1/results (inside it), the
guide's CONT (the catalog's image), DGXSYSTEM MI325X_08x08x32, NEXP 10, a partition, 8 nodes.

The cluster is real: slurmctld, one slurmd on each of 8 hosts and a submit host, each host a
network namespace with its own sshd (tests/infra/cluster.py). On every compute host podman
stands in for docker (tests/infra/docker_wrapper.py: it clamps AMD's --ulimit values to what
root may set here), the stand-in image rocm/amd-mlperf:flux1_training_6.0 (tests/infra/
amd_image.py) holds AMD's layout, and /dev/kfd, /dev/dri and /dev/infiniband are fake device
nodes. ``/data`` of every host is one directory of the test (a bind mount in each host's own
mount namespace: the machine's /data is not touched), so the guide's paths are shared storage.

The dataset is prepared first as the guide prepares it, by hand in a container of the image
(its scripts/prepare_data_and_model.sh against the stand-in nginx bucket: prepare_dataset). Then
site.yml runs once, with the stages render, run, collect, score and report (preflight, provision
and tunables need real GPUs and drivers; the data stage's flux recipe would fetch from the
catalog's MLCommons addresses, which no test host can reach): render copies /workspace/code out
of the image on node1 into shared storage and keeps the image's config_MI325X_08x08x32.sh; run
submits the rendered job.sh, whose ``srun bash run_with_docker_slurm.sh`` starts AMD's launcher
(the stand-in, literal) on the 8 nodes: one container per node, ten runs, each
run_and_time.sh replaying one log of the published Flux set (tests/data/mlperf-logs/v5.1/
NVIDIA/.../flux1) with its times moved to now. collect, score and report follow; the score is
the published set's, exactly, and the report holds the comparisons with AMD's: its MI325X
submission's score and the image's config against the catalog.

Test-host facts handled here, each where it is done: the hosts have no default route (AMD's
launcher takes its NCCL interface from it: an on-link one is added); podman, unlike Docker,
does not create a missing bind-mount source (AMD's launcher mounts <code>/../../utilities: it
is made, as Docker would).

AMD's per-run cache drop (``sysctl vm.drop_caches=3`` on the host) would drop the page cache of
the whole machine 80 times: in each compute host's mount namespace a plain file is bound over
/proc/sys/vm/drop_caches, so the launcher writes "3" there and the machine keeps its cache.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.scoring import score_directory
from tests.infra import amd_image, docker_wrapper
from tests.infra.cluster import SlurmTestCluster, skip_reason
from tests.infra.docker_wrapper import PodmanDocker
from tests.infra.fake_devices import DEVICES, FakeGpuDevices
from tests.integration.nginx_bucket import NginxBucket, find_nginx

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
GUIDE = {  # the guide's job.sh values for the 8-node MI325X submission
    "CONT": "rocm/amd-mlperf:flux1_training_6.0",
    "DATADIR": "/data/mlperf_flux1/data",
    "LOGDIR": "/data/mlperf_flux1/results",
    "DGXSYSTEM": "MI325X_08x08x32",
    "NEXP": 10,
    "NODES": 8,
}
PUBLISHED_SCORE = 146.2601  # the replayed set's published score (tests/data/mlperf-logs/README.md)


def _reason():
    reason = skip_reason()
    if reason is None and docker_wrapper.missing_commands():
        reason = "not installed: %s" % ", ".join(docker_wrapper.missing_commands())
    if reason is None:
        reason = amd_image.skip_reason()
    if reason is None and not find_nginx():
        reason = "nginx is not installed (the stand-in bucket the dataset comes from)"
    if reason is None and not os.path.isdir("/data") and os.path.lexists("/data"):
        reason = "/data exists and is not a directory (the guide's paths are mounted there)"
    return reason


REASON = _reason()
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def guide_inventory(cluster: SlurmTestCluster, directory: Path) -> Path:
    """inventory/mi325x with every FILL_IN set to the guide's value (or the test cluster's)."""
    group_vars = yaml.safe_load((ROOT / "inventory" / "mi325x" / "group_vars" / "all.yml").read_text())
    group_vars.update(cluster.hosts.ansible_vars())  # ansible_user (FILL_IN there): root
    group_vars.update({
        "mlperf_datadir": GUIDE["DATADIR"],
        "mlperf_logdir": GUIDE["LOGDIR"],
        "mlperf_workdir": "/data/mlperf_flux1/work",
        "mlperf_results_dir": str(cluster.results),
        "mlperf_slurm_partition": cluster.slurm.partition,
        "mlperf_site_env": {"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0",
                            "NCCL_IB_HCA": "rdma0,rdma1,rdma2,rdma3,rdma4,rdma5,rdma6,rdma7"},
        # no GPU, no driver, no persistence of sysctls on test hosts: those stages are not run
        "mlperf_provision": False,
        "tunables_mode": "off",
        "slurm_job_poll_seconds": 1,
    })
    assert GUIDE["NEXP"] == group_vars["mlperf_nexp"] and group_vars["mlperf_system"] == GUIDE["DGXSYSTEM"]
    assert "FILL_IN" not in yaml.safe_dump(group_vars)
    ip = {name: {"ansible_host": h.ip} for name, h in cluster.hosts.hosts.items()}
    hosts = {"all": {"children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
        "mlperf_nodes": {"hosts": {n: ip[n] for n in cluster.compute}},
        "mlperf_submit": {"hosts": {cluster.submit: ip[cluster.submit]}},
        "mlperf_staging": {"hosts": {cluster.compute[0]: {}}},
    }}}
    (directory / "group_vars").mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(hosts, sort_keys=False))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(group_vars, sort_keys=False))
    return directory


def host_exec(cluster, name, script):
    proc = cluster.hosts.exec(name, ["sh", "-c", script])
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: {script}: {proc.stderr}")


def prepare_dataset(cluster, datadir: Path, store) -> None:
    """The guide's "Prepare Dataset - Flux.1", by hand as the guide does it: in a container of
    the image with DATADIR as /dataset, its scripts/prepare_data_and_model.sh (the three r2
    downloads, to_webdataset.py, energon prepare, the empty encodings) against the stand-in
    bucket. On this machine, not in a test host: the bucket listens on this machine's loopback
    only, and the catalog's .uri addresses name the MLCommons host (the data stage's own flux
    recipe against the bucket is tests/integration/test_data_role.py's)."""
    datadir.mkdir(parents=True)
    docker = PodmanDocker.for_host(cluster.base / "podman" / "prepare", store).setup()
    bucket = NginxBucket(cluster.base / "bucket")
    bucket.start()
    try:
        amd_image.stage_bucket(bucket, "flux1")
        docker.run("run", "--rm", "--network=host", "--ipc=host", "--volume", f"{datadir}:/dataset",
                   "--env", f"MLPERF_STANDIN_BUCKET={bucket.base}", GUIDE["CONT"],
                   "bash", "/workspace/code/scripts/prepare_data_and_model.sh", timeout=120)
    finally:
        bucket.stop()
        docker.teardown()
    catalog = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    for rel in catalog["benchmarks"]["flux1"]["dataset"]["expected_files"]:
        assert (datadir / rel).is_dir(), rel
    assert (datadir / "energon" / ".nv-meta" / "dataset.yaml").is_file()


@pytest.fixture(scope="module")
def guide_cluster():
    store = amd_image.load_image("flux1")
    made_data = False
    if not os.path.exists("/data"):
        os.mkdir("/data", 0o755)  # an empty mount point; the hosts mount their /data on it
        made_data = True
    devices = FakeGpuDevices(DEVICES + ("/dev/infiniband/uverbs0",)).up()
    cluster = SlurmTestCluster(nodes=GUIDE["NODES"], nexp=GUIDE["NEXP"])
    dockers = {}
    try:
        cluster.up()
        data = cluster.base / "data-mount"
        data.mkdir()
        cluster.data_mount = data
        # AMD's launcher mounts <code>/../../utilities; Docker creates a missing bind-mount
        # source, podman refuses it ("statfs ...: no such file or directory"): made as Docker would
        (data / "mlperf_flux1" / "work" / "utilities").mkdir(parents=True)
        prepare_dataset(cluster, data / "mlperf_flux1" / "data", store)
        for name in cluster.hosts.hosts:
            host_exec(cluster, name, f"mount --bind {data} /data")
        for name in cluster.compute:
            # AMD's launcher takes NCCL_SOCKET_IFNAME from the default route; the test hosts
            # have none (nothing leaves the machine): an on-link one on eth0, no gateway
            host_exec(cluster, name, "ip route add default dev eth0")
            drop = cluster.base / f"drop_caches-{name}"
            drop.write_text("")
            host_exec(cluster, name, f"mount --bind {drop} /proc/sys/vm/drop_caches")
            docker = PodmanDocker.for_host(cluster.base / "podman" / name, store).setup()
            docker.install_on_host(cluster.hosts, name)
            dockers[name] = docker
        cluster.dockers = dockers
        cluster.guide_inventory = guide_inventory(cluster, cluster.base / "guide-inventory")
        yield cluster
    finally:
        for name, docker in dockers.items():
            docker.teardown_on_host(cluster.hosts, name)
        cluster.down()
        for docker in dockers.values():
            docker.teardown()
        cluster.remove()
        devices.down()
        if made_data:
            try:
                os.rmdir("/data")
            except OSError:
                pass


def site(cluster, *args):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", str(cluster.guide_inventory), *args]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    proc.seconds = time.monotonic() - started
    return proc


def test_flux_on_eight_mi325x_nodes_as_the_guide_writes_it(guide_cluster):
    cluster = guide_cluster
    on_host = cluster.data_mount  # the hosts' /data, seen from this machine
    proc = site(cluster, "--tags", "render,run,collect,score,report")
    print(f"site.yml (render, run, collect, score, report) on 8 nodes: {proc.seconds:.1f} s")
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-3000:]

    # render: AMD's code from the image on shared storage, the image's config as it is
    code = on_host / "mlperf_flux1" / "work" / "code" / "flux1"
    layout = amd_image.LAYOUT / "flux1" / "code"
    for name in ("config_MI325X_08x08x32.sh", "run_with_docker_slurm.sh", "config_common.sh"):
        assert (code / name).read_bytes() == (layout / name).read_bytes(), name

    # run: one job from the rendered job.sh, the guide's values in it
    (campaign,) = (on_host / "mlperf_flux1" / "results" / "flux1" / GUIDE["DGXSYSTEM"]).iterdir()
    job_sh = (campaign / "job.sh").read_text().splitlines()
    for line in (f"#SBATCH --nodes={GUIDE['NODES']}", "#SBATCH --gres=gpu:8",
                 "#SBATCH --ntasks-per-node=1", f"#SBATCH --partition={cluster.slurm.partition}",
                 f"export CONT={GUIDE['CONT']}", f"export DATADIR={GUIDE['DATADIR']}",
                 f"export LOGDIR={GUIDE['LOGDIR']}/flux1/{GUIDE['DGXSYSTEM']}/{campaign.name}",
                 f"export DGXSYSTEM={GUIDE['DGXSYSTEM']}", f"export NEXP={GUIDE['NEXP']}",
                 "srun bash run_with_docker_slurm.sh"):
        assert line in job_sh, line
    state = json.loads((campaign / "state.json").read_text())
    assert state["status"] == "complete" and state["job_state"] == "COMPLETED", state
    assert state["node_list"] == "node[1-8]"
    jobs = [j for j in cluster.slurm.jobs() if j["name"] == "flux1_mlperf"]
    assert len(jobs) == 1, jobs

    # AMD's launcher ran on every node, literally. srun interleaves the nodes' output and
    # forwards a long line in pieces: lines are not counted there; each node's own evidence is
    # its container events (its podman store) and its cache drop (its masked drop_caches).
    output = (campaign / state["output"]).read_text()
    for name, docker in cluster.dockers.items():
        events = [status for kind, status, cont in docker.events()
                  if kind == "container" and cont == "mlperf_flux1"]
        assert events.count("start") == 1 and "remove" in events, (name, events)  # its trap
        assert (cluster.base / f"drop_caches-{name}").read_text().strip() == "3"
    assert re.search(rf"^Beginning trial {GUIDE['NEXP']} of {GUIDE['NEXP']}$", output, re.M)
    assert "--ulimit memlock=-1:-1 --ulimit nofile=1048576:1048576" in output  # as AMD wrote it
    assert "--device /dev/infiniband" in output
    # the site's interfaces (site_env.sh, sourced by job.sh) reach the runs' containers, not
    # the ones AMD's config hard-codes for its own cluster (eno0)
    # (as `docker exec --env=NAME=value`; set -x also traces the config's own `export` lines)
    assert "--env=NCCL_SOCKET_IFNAME=eth0 " in output
    assert "--env=NCCL_SOCKET_IFNAME=eno0" not in output and "--env=GLOO_SOCKET_IFNAME=eno0" not in output
    ledger = json.loads((campaign / ".mlperf-replay-ledger.json").read_text())
    assert sorted(e["index"] for e in ledger["seeds"].values()) == list(range(GUIDE["NEXP"]))
    assert all(e["done"] for e in ledger["seeds"].values())  # ten seeds, ten distinct logs

    # ten runs cut out of the one output, each a distinct published log, replayed
    runs = sorted(campaign.glob("result_*.txt"))
    assert [r.name for r in runs] == [f"result_{k}.txt" for k in range(GUIDE["NEXP"])]
    assert [r["status"] for r in state["runs"]] == ["success"] * GUIDE["NEXP"]

    # collect, score: the published set's score, exactly; the report says it, with the vendor's
    collected = cluster.results / "flux1" / GUIDE["DGXSYSTEM"] / campaign.name
    assert {"job.sh", state["output"], "campaign.json", "state.json",
            f"config_{GUIDE['DGXSYSTEM']}.sh"} <= {p.name for p in (collected / "login").iterdir()}
    score = json.loads((collected / "login" / "score.json").read_text())
    published = score_directory(amd_image.variant("flux1").replay)  # the published files, as they are
    assert score["score_minutes"] == published.score_minutes, score  # exactly, not rounded
    assert round(score["score_minutes"], 4) == PUBLISHED_SCORE
    assert [r["minutes"] for r in score["runs"]] == [r.minutes for r in published.runs]
    assert all(r["status"] == "success" for r in score["runs"])
    assert f"flux1: score {PUBLISHED_SCORE} min" in proc.stdout
    report = (collected / "report.md").read_text()
    assert f"**{PUBLISHED_SCORE} min**" in report
    assert "- versus reference: " in report and "92.36" in report
    # the image's own config, compared with the catalog by name (render), said in the report
    assert "- config: config_MI325X_08x08x32.sh from the image: " in report
    assert "NOT the vendor's file" not in report
