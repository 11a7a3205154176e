"""The NVIDIA platform's launch paths (issue 16, item 5).

1. The docker path, for real: the smoke benchmark's payload in a container started by the run
   stage with the NVIDIA platform's container options for the runtime, read from
   mlperf_repro/platforms.yml (nothing in the test passes them). The runtime is podman (rootful,
   tests/infra/docker_wrapper.py's configuration), so the option is the Container Toolkit's CDI
   device ``--device=nvidia.com/gpu=all``; there is no NVIDIA GPU here, so a stand-in CDI
   specification (tests/infra/cdi_standin.py) resolves it to /dev/null device nodes, and its
   hook records which containers podman gave the devices. Docker's ``--gpus=all`` is rendered
   and shown by the plan, not exercised (this machine has no Docker engine).
2. NVIDIA's Slurm path: ``run.sub`` rendered for Flux.1 on four B200 nodes
   (mlperf_repro/node/pyxis_job.py), checked by the real test cluster's ``sbatch --test-only``
   (tests/infra/slurm.py: four nodes with eight GPUs each): the #SBATCH header (partition, nodes,
   tasks and GPUs per node, exclusive, time). Pyxis and enroot are not Debian packages, so the
   ``--container-*`` options cannot be checked by Slurm here: they sit on the srun lines (which
   sbatch does not parse) and are compared with the catalog and the platform as data, and bash
   checks the script's syntax. Nothing of the job runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import load_catalog
from mlperf_repro.node.campaign import container_run_argv
from mlperf_repro.node.pyxis_job import PYXIS_DEFAULTS, job_script, srun_lines
from mlperf_repro.platforms import load_platforms
from tests.infra import cdi_standin, image
from tests.infra import cluster as cluster_infra
from tests.infra.cdi_standin import CdiStandIn
from tests.infra.docker_wrapper import PodmanDocker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SYSTEM = "GPU_1x1x3"   # the smoke benchmark in a container, on the nvidia platform
NEXP = 2
CONTAINER = "mlperf_smoke"


def write_catalog(path: Path) -> Path:
    image.write_test_catalog(path, system="CPU_1x1x2")
    data = yaml.safe_load(path.read_text())
    data["benchmarks"]["smoke"]["platforms"][SYSTEM] = {
        "gpu": "any",
        "platform": "nvidia",
        "launch": "docker",
        "provenance": "tests/integration/test_nvidia_launch.py: the smoke payload on the nvidia platform",
        # no PyTorch in the test image and no GPU here: the payload's numpy backend
        "env": {"DGXSYSTEM": SYSTEM, "MLLOG_SUBMISSION_PLATFORM": "GPU", "SMOKE_DEVICE": "cpu",
                "PYTHON": "python3"},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(name="base")
def fixture_base():
    path = Path(tempfile.mkdtemp(prefix="mlperf-nvidia-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def test_docker_path_runs_the_smoke_payload_with_the_nvidia_platforms_options(base):
    reason = image.skip_reason() or cdi_standin.skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        store = image.load_image(log=print)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a reason to skip
        pytest.skip(f"the test image {image.IMAGE} cannot be built here: {exc}")
    podman = PodmanDocker(base / "podman", additional_image_stores=[store.graphroot]).setup()
    # the run stage calls `podman`: this store's (runc, cgroupfs, its own storage)
    (podman.bin / "podman").symlink_to(podman.docker)
    catalog = write_catalog(base / "catalog.yml")
    root = base / "root"
    (root / "data").mkdir(parents=True)
    extra = {"mlperf_system": SYSTEM, "mlperf_container_runtime": "podman",
             "validate_catalog_path": str(catalog), "mlperf_local_root": str(root),
             "mlperf_results_dir": str(base / "results"), "mlperf_nexp": NEXP,
             "mlperf_allow_partial": True, "campaign_clear_caches": False,
             "campaign_poll_seconds": 1}
    env = dict(os.environ, PATH=f"{podman.bin}:{BIN}:{os.environ['PATH']}",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local",
            "--tags", "render,run,collect,score", "-e", json.dumps(extra)]
    try:
        with CdiStandIn(base / "cdi-used") as cdi:
            started = time.monotonic()
            proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=500)
            print(f"ansible-playbook: rc {proc.returncode} in {time.monotonic() - started:.1f} s")
            assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
            given = cdi.containers()
        events = podman.events()
        leftover = podman.containers()
    finally:
        podman.teardown()

    # the platform's options for podman, from the definition, on the container the runs exec into
    options = load_platforms().get("nvidia").options_for("podman")
    assert "--device=nvidia.com/gpu=all" in options
    (campaign,) = sorted((root / "logs" / "smoke" / SYSTEM).iterdir())
    started_lines = [line.split("starting container: ", 1)[1]
                     for line in (campaign / "runner.out").read_text().splitlines()
                     if "starting container: " in line]
    assert len(started_lines) == 1, started_lines
    words = started_lines[0].split()
    assert words[:2] == ["podman", "run"]
    for option in ["--net=host", "--uts=host", "--ipc=host", *options]:
        assert option in words, (option, words)
    # podman gave the stand-in GPU devices to exactly one container: the campaign's (render's
    # `podman create` for copying the code out has no device option)
    assert len(given) == 1, given
    created = [who for kind, status, who in events if kind == "container" and status == "create"]
    assert CONTAINER in created
    assert leftover == []
    # every run of the payload succeeded inside that container, and was scored
    state = json.loads((campaign / "state.json").read_text())
    assert state["status"] == "complete"
    assert [r["status"] for r in state["runs"]] == ["success"] * NEXP
    for k in range(NEXP):
        text = (campaign / f"result_{k}.txt").read_text()
        assert '"file": "/workspace/code/train.py"' in text
        assert '"key": "submission_platform", "value": "GPU"' in text
    collected = base / "results" / "smoke" / SYSTEM / campaign.name / "local"
    score = json.loads((collected / "score.json").read_text())
    assert len(score["runs"]) == NEXP and score["score_minutes"] > 0


def test_docker_gets_the_container_toolkits_gpus_option():
    # rendered, not exercised: the `docker run` the campaign would start with runtime docker
    spec = load_catalog().resolve("llama2_70b_lora", "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1")
    options = ["--net=host", "--uts=host", "--ipc=host",
               *spec["platform_spec"]["container_options"]["docker"]]
    argv = container_run_argv({"runtime": "docker", "container_name": spec["container_name"],
                               "container_flags": options, "image": spec["image"],
                               "mounts": [{"host": "/d/gov_report", "container": "/data"}]})
    assert "--gpus=all" in argv and "--device=nvidia.com/gpu=all" not in argv
    assert argv[-3:] == ["mlperf-nvidia:llama2_70b_lora-pyt", "sleep", "infinity"]


# ---------------------------------------------------------------------------------------------
@pytest.fixture(name="slurm", scope="module")
def fixture_slurm():
    reason = cluster_infra.skip_reason()
    if reason:
        pytest.skip(reason)
    test_cluster = cluster_infra.SlurmTestCluster(nodes=4, nexp=1)
    # a B200 node runs a task per GPU: eight tasks need eight CPUs (the test nodes have four)
    test_cluster.slurm.cpus = 16
    test_cluster.up()
    yield test_cluster
    test_cluster.down()
    test_cluster.remove()


def render_flux(tmp_path, **overrides):
    spec = load_catalog().resolve("flux1", "DGXB200_04x08x32")
    shared = tmp_path / "shared"
    values = dict(code_dir=str(shared / "code" / "flux1"), datadir=str(shared / "data"),
                  logdir=str(shared / "logs" / "c1"), nexp=10, job_name="flux1_mlperf",
                  time_limit="60:00:00", output=str(shared / "logs" / "c1" / "slurm-%j.out"),
                  partition="batch")
    values.update(overrides)
    path = tmp_path / "run.sub"
    path.write_text(job_script(spec, **values))
    return spec, values, path


def test_pyxis_job_passes_sbatch_test_only_on_the_real_cluster(slurm, tmp_path):
    spec, values, path = render_flux(tmp_path)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    proc = slurm.slurm.command("sbatch", "--test-only", str(path))
    # Slurm itself read the header: four exclusive nodes of eight tasks and eight GPUs
    assert proc.returncode == 0, proc.stderr
    assert "to start at" in proc.stderr and "on nodes node[1-4]" in proc.stderr, proc.stderr
    assert "in partition batch" in proc.stderr
    assert slurm.slurm.jobs() == []  # --test-only submits nothing

    # the Pyxis options, as data: the catalog's image, container, mounts and work directory
    setup, run = srun_lines(path.read_text())
    assert "--container-image=mlperf-nvidia:flux1-pyt" in setup and setup[-1] == "true"
    mounts = [w for w in run if w.startswith("--container-mounts=")]
    assert mounts == ["--container-mounts=" + ",".join([
        f"{values['datadir']}/energon:/dataset/energon", f"{values['logdir']}:/results",
        f"{values['code_dir']}:/workspace/flux"])]
    assert "--container-workdir=/workspace/flux" in run and "--ntasks-per-node=8" in run
    assert all(option in run for option in PYXIS_DEFAULTS)
    assert run[-2:] == ["slurm2pytorch", "./run_and_time.sh"]
    # and the platform chose this launcher
    assert spec["platform_spec"]["slurm_container"] == "pyxis" and spec["launch"] == "slurm"


@pytest.mark.parametrize("overrides,words", [
    ({"partition": "nope"}, "invalid partition"),
    ({"time_limit": "never"}, "Invalid --time specification"),
    # why the container options are not #SBATCH lines: sbatch without Pyxis refuses them
    ({"extra_sbatch": ("--container-image=mlperf-nvidia:flux1-pyt",)}, "unrecognized option"),
])
def test_sbatch_test_only_refuses_a_job_the_cluster_cannot_run(slurm, tmp_path, overrides, words):
    _, _, path = render_flux(tmp_path, **overrides)
    proc = slurm.slurm.command("sbatch", "--test-only", str(path))
    assert proc.returncode != 0 and words.lower() in proc.stderr.lower(), proc.stderr


def test_a_value_in_the_job_is_data(tmp_path):
    # a site path holding shell stays one word: nothing in it runs when the job is read
    spec, _, path = render_flux(tmp_path, datadir="/data/$(touch /tmp/pwned-nvidia);x")
    text = path.read_text()
    assert "export DATADIR='/data/$(touch /tmp/pwned-nvidia);x'" in text
    out = subprocess.run(["bash", "-c", 'eval "$(grep "^export DATADIR=" "$1")"; printf %s "$DATADIR"',
                          "bash", str(path)], capture_output=True, text=True)
    assert out.stdout == "/data/$(touch /tmp/pwned-nvidia);x" and not Path("/tmp/pwned-nvidia").exists()
    assert spec["image"] in text
