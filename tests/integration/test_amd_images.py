"""A stand-in image with AMD's layout, run as the guide runs AMD's: podman as docker.

The llama2_70b_lora image (tests/infra/amd_image.py) is built from the cached test base, its
/workspace/code copied out as the guide does (docker create / docker cp), and the guide's steps
run literally with the guide's paths (LOGDIR inside DATADIR): ``source config_MI355X_1x8x1.sh;
export NEXP=10; bash run_with_docker.sh``. Its run_and_time.sh replays AMD's published v5.1
MI355X LoRA set inside the container; the ten result files the script tees into LOGDIR must
score exactly as the published set. Needs root, podman and runc (tests/infra/docker_wrapper.py),
and fake /dev/kfd and /dev/dri nodes (tests/infra/fake_devices.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from mlperf_repro.node import vendor_files
from mlperf_repro.scoring import score_directory
from tests.infra import amd_image, fake_devices
from tests.integration.nginx_bucket import nginx_bucket  # noqa: F401 - a fixture
from tests.infra.docker_wrapper import PodmanDocker
from tests.infra.fake_devices import FakeGpuDevices

REASON = amd_image.skip_reason() or fake_devices.skip_reason()
pytestmark = [pytest.mark.integration]
needs_podman = pytest.mark.skipif(REASON is not None, reason=REASON or "")
BENCHMARK = "llama2_70b_lora"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docker():
    try:
        store = amd_image.load_image(BENCHMARK, log=print)
    except Exception as exc:  # noqa: BLE001 - any failure to build is a reason to skip
        pytest.skip(f"the stand-in image for {BENCHMARK} cannot be built here: {exc}")
    base = Path(tempfile.mkdtemp(prefix="mlperf-amd-docker-", dir="/tmp"))
    os.chmod(base, 0o755)
    wrapper = PodmanDocker(base / "podman", additional_image_stores=[store.graphroot]).setup()
    try:
        yield wrapper
    finally:
        wrapper.teardown()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def devices():
    with FakeGpuDevices() as fake:
        yield fake


@needs_podman
@pytest.mark.slow
def test_the_guides_steps_replay_the_published_set(docker, devices, tmp_path):
    os.chmod(tmp_path, 0o755)
    tag = amd_image.variant(BENCHMARK).tag
    env = docker.env()
    # The guide: copy /workspace/code out of the image.
    cid = docker.run("create", tag).stdout.strip()
    docker.run("cp", f"{cid}:/workspace/code", str(tmp_path / "code"))
    docker.run("rm", cid)
    code = tmp_path / "code"
    assert (code / "config_MI355X_1x8x1.sh").exists() and (code / "replay" / "result_9.txt").exists()
    # What render reads from it: the config and the launch, as data.
    config = vendor_files.parse_config_sh((code / "config_MI355X_1x8x1.sh").read_text())
    assert config["unparsed"] == [] and config["variables"]["NEXP"]["value"] == "1"
    launch = vendor_files.parse_docker_run((code / "run_with_docker.sh").read_text())
    assert [m["container"] for m in launch["runs"][0]["volume"]] == ["/data", "/ckpt",
                                                                     "/workspace/code", "/results"]
    # A site's edit of the config it sources: compress the replay (the config's names are what
    # AMD's script passes into the container).
    with open(code / "config_MI355X_1x8x1.sh", "a") as handle:
        handle.write("export MLPERF_REPLAY_MAX_SECONDS=0.1\n")
    # The guide's paths: DATADIR with data/ in it, LOGDIR inside DATADIR.
    datadir = tmp_path / "mlperf_llama2"
    (datadir / "data").mkdir(parents=True)
    logdir = datadir / "results"
    env.update(DATADIR=str(datadir), LOGDIR=str(logdir), CONT=tag, HF_TOKEN="hf_not-a-real-token")
    proc = subprocess.run(["bash", "-c", "source config_MI355X_1x8x1.sh && export NEXP=10 && "
                                         "bash run_with_docker.sh"],
                          cwd=code, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = sorted(p.name for p in logdir.glob("result_*.txt"))
    assert results == [f"result_{i}.txt" for i in range(10)]
    for path in logdir.glob("result_*.txt"):  # each run went through the container's replay
        text = path.read_text()
        assert '"key": "cache_clear"' in text and '"key": "run_stop"' in text
    assert "hf_not-a-real-token" not in proc.stdout + proc.stderr  # passed by name only
    replayed = score_directory(logdir, ruleset="6.0.0")
    published = score_directory(amd_image.variant(BENCHMARK).replay, ruleset="6.0.0")
    assert replayed.valid and replayed.reasons == [], replayed.reasons
    assert round(replayed.score_minutes, 4) == amd_image.variant(BENCHMARK).score_minutes
    assert replayed.score_minutes == published.score_minutes
    assert docker.containers() == []  # the script's trap removed its container


@pytest.mark.parametrize("benchmark", sorted(amd_image.VARIANTS))
def test_prepare_script_builds_the_expected_tree_from_the_bucket(nginx_bucket, benchmark, tmp_path):
    """scripts/prepare_data_and_model.sh, run here (bash, python3; no container), fetches the
    stand-in bucket's datasets (R2 protocol, md5-checked) into catalog.yml's expected_files."""
    code = amd_image.write_code(benchmark, tmp_path / "code")
    datasets = amd_image.stage_bucket(nginx_bucket, benchmark)
    datadir = tmp_path / "datadir"
    datadir.mkdir()
    out = datadir / "data" if benchmark == "llama2_70b_lora" else datadir  # the container's mount
    path = os.environ["PATH"]
    if (amd_image.LAYOUT / benchmark / "bin").is_dir():
        path = f"{amd_image.LAYOUT / benchmark / 'bin'}:{path}"  # /usr/local/bin in the image
    env = {"PATH": path, "PREPARE_OUTPUT_DIR": str(out), "MLPERF_STANDIN_BUCKET": nginx_bucket.base,
           "HF_TOKEN": "hf_not-a-real-token", "no_proxy": "127.0.0.1"}
    proc = subprocess.run(["bash", str(code / "scripts" / "prepare_data_and_model.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hf_not-a-real-token" not in proc.stdout + proc.stderr
    catalog = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    expected = catalog["benchmarks"][benchmark]["dataset"]["expected_files"]
    # the guide's DATADIR: llama31_8b's is the `data` directory of the tree the script builds
    # (-d data, -d model from its parent); the others' is the tree itself
    guide_datadir = datadir / "data" if benchmark == "llama31_8b" else datadir
    missing = [rel for rel in expected if not (guide_datadir / rel).exists()]
    assert expected and missing == []
    if benchmark == "llama2_70b_lora":
        ck = datadir / "data" / "megatron_checkpoints" / "Llama-2-70b-hf" / "iter_0000000"
        assert (ck / "__0_1.distcp").read_bytes() == \
            datasets["llama2-70b-hf-megatron-checkpoint"].files["iter_0000000/__0_1.distcp"]
        # without HF_TOKEN it refuses, as for the gated model
        proc = subprocess.run(["bash", str(code / "scripts" / "prepare_data_and_model.sh")],
                              env=dict(env, HF_TOKEN=""), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3 and "HF_TOKEN is not set" in proc.stderr
    if benchmark == "flux1":
        assert (datadir / "energon" / ".nv-meta" / "dataset.yaml").exists()
    # a second run fetches nothing again (the files are there, md5 checked)
    mark = nginx_bucket.mark()
    proc = subprocess.run(["bash", str(code / "scripts" / "prepare_data_and_model.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [r for r in nginx_bucket.requests(mark) if "/datasets/" in r.uri] == []


@needs_podman
@pytest.mark.slow
def test_campaign_launcher_amd_runs_amds_script_once_per_run(docker, devices, tmp_path):
    """`campaign_launcher: amd`: the detached campaign runner runs the image's own
    run_with_docker.sh literally, once per run (NEXP=1, a LOGDIR of its own), after sourcing
    the image's config and the site's values; its output is the run's log. The ten logs score
    exactly as the published set, and the runner starts no container of its own."""
    import json
    import sys
    import time

    from mlperf_repro.node import campaign

    os.chmod(tmp_path, 0o755)
    variant = amd_image.variant(BENCHMARK)
    code = tmp_path / "code"
    cid = docker.run("create", variant.tag).stdout.strip()
    docker.run("cp", f"{cid}:/workspace/code", str(code))
    docker.run("rm", cid)
    # AMD's launcher passes the names the config exports into its container (its own
    # `compgen -e` of the config): the replay's settings go in the config, as a site edits it.
    # One ledger for the campaign (each run's /results is its own): run k replays result_k.
    with open(code / "config_MI355X_1x8x1.sh", "a") as handle:
        handle.write("export MLPERF_REPLAY_MAX_SECONDS=0.1\n"
                     "export MLPERF_REPLAY_LEDGER=/data/.mlperf-replay-ledger.json\n")
    # the site's values, sourced after the image's config (the render stage writes this file)
    (code / "site_env.sh").write_text("export NCCL_DEBUG='WARN'\n")
    datadir = tmp_path / "mlperf_llama2"
    (datadir / "data").mkdir(parents=True)
    logs = datadir / "results" / BENCHMARK / "MI355X_1x8x1"
    spec = {"nexp": 10, "code_dir": str(code), "config_file": str(code / "config_MI355X_1x8x1.sh"),
            "site_config_file": str(code / "site_env.sh"), "runtime": "docker", "launcher": "amd",
            "image": variant.tag, "container_name": "mlperf_llama2sft", "benchmark": BENCHMARK,
            "system": "MI355X_1x8x1", "clear_caches": False,
            "mounts": [{"host": "{DATADIR}/data", "container": "/data"}]}
    env = {"DATADIR": str(datadir), "CONT": variant.tag, "PATH": docker.env()["PATH"]}
    for key, value in docker.env().items():
        if key.startswith(("CONTAINERS_", "MLPERF_")):
            env[key] = value
    runner = ROOT / "mlperf_repro" / "node" / "campaign.py"
    action, campaign_dir, _, _ = campaign.ensure_started(
        str(logs), "c1", spec, str(runner), env=env, secret_env={"HF_TOKEN": "hf_not-a-real-token"},
        python=sys.executable)
    assert action == "started"
    deadline = time.monotonic() + 600
    while campaign.summarize(campaign_dir)["status"] in ("running", "starting"):
        assert time.monotonic() < deadline, Path(campaign_dir, "runner.out").read_text()[-3000:]
        time.sleep(0.5)
    state = campaign.summarize(campaign_dir)
    assert state["status"] == "complete", Path(campaign_dir, "runner.out").read_text()[-3000:]
    assert [r["status"] for r in state["runs"]] == ["success"] * 10
    # one literal call of AMD's script per run, each with its own LOGDIR holding the script's tee
    for k in range(10):
        own = Path(campaign.amd_run_logdir(campaign_dir, k))
        assert sorted(p.name for p in own.glob("result_*.txt")) == ["result_0.txt"], k
    runner_out = Path(campaign_dir, "runner.out").read_text()
    assert "starting container" not in runner_out  # AMD's script starts its own
    recorded = json.loads(Path(campaign_dir, "campaign.json").read_text())
    assert recorded["launcher"] == "amd" and recorded["vendor_launch"]["script"] == "run_with_docker.sh"
    replayed = score_directory(campaign_dir, ruleset="6.0.0")
    published = score_directory(variant.replay, ruleset="6.0.0")
    assert replayed.valid, replayed.reasons
    assert replayed.score_minutes == published.score_minutes
    for path in Path(campaign_dir).rglob("*"):
        if path.is_file() and path.name != "env.json":
            assert b"hf_not-a-real-token" not in path.read_bytes(), path
    assert docker.containers() == []
