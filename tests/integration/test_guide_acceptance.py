"""Acceptance on the guide's literal values: LoRA and Llama 3.1 8B on MI355X and MI350X, single node.

Each test is one ``ansible-playbook site.yml`` end to end (preflight to report) on an SSH test
host (tests/infra/netns.py), with an inventory holding exactly the guide's strings
(tests/inventories/guide/<name>/group_vars/all/guide.yml: DATADIR, LOGDIR inside DATADIR, MODEL
for the 8B, NEXP 10; CONT is the catalog's image, the guide's name). What runs is AMD's world as
far as a machine without MI3xx has it:

- the images are tests/infra/amd_image.py's stand-ins, tagged as AMD's, with AMD's config files
  at /workspace/code, run_with_docker.sh, prepare_data_and_model.sh (from the stand-in bucket)
  and a run_and_time.sh that replays AMD's published v5.1 MI355X set (its times moved to now,
  waits compressed through a site value, MLPERF_REPLAY_MAX_SECONDS);
- podman stands in for docker on the host (tests/infra/docker_wrapper.py), with fake /dev/kfd,
  /dev/dri nodes;
- the guide's paths are used literally: the host has its own mount namespace, and a directory of
  this test is bind-mounted at ``/data`` in it (never in the machine's: where the machine has no
  /data, an empty directory is made there as the mount point, and nothing is written in it);
- the stand-in bucket is nginx on this machine's loopback; the host reaches it at the same URL
  through an SSH reverse tunnel (so the bucket's .uri bodies hold for both).

Each test ends in the collected set's score, which must equal the replayed set's published score
exactly, and in score.json/report holding the vendor comparison (the image's config against the
catalog, by name; AMD's run_with_docker.sh against the native launch). For MI350X the reference is
MI350X's (LoRA 10.25, 6.0-0035) although the replayed logs call themselves MI355X, and the report
says so (platform.label_disagrees).

The Llama 3.1 8B tests take the guide's DATADIR (``.../data``) literally, with the model in MODEL
(mlperf_modeldir, the guide's ``/data/mlperf_llama31_8b/model/``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from mlperf_repro.catalog import load_catalog
from mlperf_repro.node import vendor_files
from mlperf_repro.scoring import score_directory
from tests.infra import amd_image, docker_wrapper, fake_devices, netns
from tests.infra.docker_wrapper import PodmanDocker
from tests.infra.fake_devices import FakeGpuDevices
from tests.infra.netns import NetnsHosts
from tests.integration.nginx_bucket import NginxBucket, find_nginx
from tests.infra.ansible_output import changed_tasks  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
INVENTORIES = ROOT / "tests" / "inventories" / "guide"
HOST = "node1"
HF_TOKEN = "hf_CANARY_guide_acceptance_0c1d2e3f"  # a token-shaped canary: never in any output
REASON = (amd_image.skip_reason() or fake_devices.skip_reason()
          or (", ".join(docker_wrapper.missing_commands()) or None)
          or (("not installed: " + ", ".join(netns.missing_commands())) if netns.missing_commands() else None)
          or (None if find_nginx() else "nginx is not installed"))
pytestmark = [pytest.mark.integration, pytest.mark.slow,
              pytest.mark.skipif(REASON is not None, reason=REASON or "")]

#: The guide's values (its text, ../shared/reference/amd-mlperf-training-v6.0-reproduction.md).
GUIDE = {
    "llama2_70b_lora": {"DATADIR": "/data/mlperf_llama2", "LOGDIR": "/data/mlperf_llama2/results",
                        "CONT": "rocm/amd-mlperf:llama2_70b_training_6.0"},
    "llama31_8b": {"DATADIR": "/data/mlperf_llama31_8b/data", "MODEL": "/data/mlperf_llama31_8b/model/",
                   "LOGDIR": "/data/mlperf_llama31_8b/results",
                   "CONT": "rocm/amd-mlperf:llama31_8b_training_6.0"},
}
#: The catalog's references (AMD's v6.0 results), by system.
REFERENCE = {("llama2_70b_lora", "MI355X_1x8x1"): (8.27, "6.0-0036"),
             ("llama2_70b_lora", "MI350X_1x8x1"): (10.25, "6.0-0035")}

def _say(message):
    print(f"[guide-acceptance] {message}", flush=True)


# ---------------------------------------------------------------------------------------------
# The module's one host, one bucket, one image store
class Lab:
    def __init__(self, base: Path):
        self.base = base
        self.hosts = None
        self.bucket = None
        self.node_docker = None
        self.tunnel = None
        self.machine_data = None  # (is a mount point, entries) of the machine's own /data

    def data(self) -> Path:
        """What the host sees at /data (this directory, bind-mounted there privately)."""
        return self.base / "host-data"

    def host_path(self, guide_path: str) -> Path:
        """Where a path under the host's /data is on this machine."""
        rel = Path(guide_path).relative_to("/data")
        return self.data() / rel

    def hsh(self, command: str) -> subprocess.CompletedProcess:
        return self.hosts.exec(HOST, ["sh", "-c", command], timeout=60)


def _tunnel(hosts, port):
    """ssh -R: the host's 127.0.0.1:port is this machine's (where nginx listens)."""
    proc = subprocess.Popen(
        ["ssh", *hosts.ssh_options(), "-N", "-o", "ExitOnForwardFailure=yes",
         "-R", f"127.0.0.1:{port}:127.0.0.1:{port}", f"root@{hosts.hosts[HOST].ip}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        start_new_session=True)
    deadline = time.monotonic() + 20
    probe = f"exec 3<>/dev/tcp/127.0.0.1/{port}"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the tunnel to {HOST} ended: {proc.stderr.read().decode()[-500:]}")
        if hosts.exec(HOST, ["bash", "-c", probe], timeout=10).returncode == 0:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the tunnel to {HOST}:{port} never answered")


@pytest.fixture(scope="module")
def lab():
    started = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="mlperf-guide-", dir="/tmp"))
    os.chmod(base, 0o755)  # the host's sshd and podman traverse it
    lab = Lab(base)
    devices = FakeGpuDevices()
    try:
        try:
            for benchmark in GUIDE:
                store = amd_image.load_image(benchmark, log=_say)
        except Exception as exc:  # noqa: BLE001 - any failure to build is a reason to skip
            pytest.skip(f"the stand-in images cannot be built here: {exc}")
        _say(f"images ready in {time.monotonic() - started:.1f} s")
        devices.up()  # before the host's mount namespace is made: it sees them
        if not os.path.isdir("/data"):
            # the mount point only; it stays (an empty directory): removing it while another
            # namespace mounts on it would detach that mount
            os.mkdir("/data", 0o755)
        machine_data = lab.machine_data = (os.path.ismount("/data"), sorted(os.listdir("/data")))
        lab.data().mkdir(mode=0o755)
        lab.bucket = NginxBucket(base / "bucket").start()
        for benchmark in GUIDE:
            amd_image.stage_bucket(lab.bucket, benchmark)
        lab.node_docker = PodmanDocker.for_host(base / "node-podman", store).setup()
        lab.hosts = NetnsHosts(base / "netns", [HOST]).up()
        mount = lab.hosts.exec(HOST, ["mount", "--bind", str(lab.data()), "/data"])
        assert mount.returncode == 0, mount.stderr
        # the machine's /data is untouched: the bind mount is the host's alone
        assert (os.path.ismount("/data"), sorted(os.listdir("/data"))) == machine_data
        lab.node_docker.install_on_host(lab.hosts, HOST)
        lab.tunnel = _tunnel(lab.hosts, lab.bucket.port)
        _say(f"lab ready in {time.monotonic() - started:.1f} s")
        yield lab
    finally:
        if lab.tunnel is not None:
            lab.tunnel.kill()
            lab.tunnel.wait()
        if lab.hosts is not None:
            try:
                if lab.node_docker is not None:
                    lab.node_docker.teardown_on_host(lab.hosts, HOST)
            finally:
                lab.hosts.down()
        if lab.node_docker is not None:
            lab.node_docker.teardown()
        if lab.bucket is not None:
            lab.bucket.stop()
        devices.down()
        if not os.environ.get("MLPERF_TEST_KEEP"):  # for a look after a failure
            shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# The inventory: the guide's file as it is, plus the test host
def stand_in_catalog(lab, benchmark):
    """The packaged catalog, unchanged but for the llama31_8b downloads' .uri URLs, which point
    at the stand-in bucket (the catalog's are MLCommons' https bucket; a site mirror the same)."""
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    for download in data["benchmarks"][benchmark]["dataset"].get("downloads") or []:
        name = download["uri"].rsplit("/", 1)[1]
        download["uri"] = f"{lab.bucket.base}/metadata/{name}"
    path = lab.base / f"catalog-{benchmark}.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def inventory(lab, name) -> tuple[Path, dict]:
    guide = yaml.safe_load((INVENTORIES / name / "group_vars" / "all" / "guide.yml").read_text())
    target = lab.base / "inventories" / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(INVENTORIES / name, target)
    (target / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
        "mlperf_nodes": {"hosts": {HOST: {"ansible_host": lab.hosts.hosts[HOST].ip}}},
        "mlperf_staging": {"hosts": {HOST: {}}},
    }}}))
    test_host = dict(lab.hosts.ansible_vars())
    test_host.update({
        "mlperf_results_dir": str(lab.base / "results" / name),
        # a site value, sourced after the image's config: the replay's waits compressed
        "mlperf_site_env": {"MLPERF_REPLAY_MAX_SECONDS": "0"},
        "validate_catalog_path": str(stand_in_catalog(lab, guide["mlperf_benchmark"])),
        # the test host has no GPU, no ROCm and not the guide's 270 GB: preflight reports those
        # (asserted below) without stopping the chain; every other problem is asserted absent
        "preflight_check_gpus": False,
        "preflight_fail_on_problems": False,
        "tunables_mode": "off",  # host-wide settings: not on a shared test machine
        "campaign_clear_caches": False,  # vm.drop_caches is machine-wide
        "campaign_poll_seconds": 1,
        "data_script_min_free_gb": 0,
    })
    (target / "group_vars" / "all" / "test_host.yml").write_text(yaml.safe_dump(test_host))
    return target, guide


def playbook(inventory_dir, *args, check=True):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", HF_TOKEN=HF_TOKEN)
    for name in ("CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET"):
        env.pop(name, None)
    argv = [str(BIN / "ansible-playbook"), "site.yml", "-i", str(inventory_dir), *args]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    proc.seconds = time.monotonic() - started
    _say(f"site.yml -i {inventory_dir.name}: rc {proc.returncode} in {proc.seconds:.1f} s")
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-10000:]}\n{proc.stderr[-3000:]}")
    assert HF_TOKEN not in proc.stdout + proc.stderr
    return proc



def campaign_sets(results: Path, benchmark, system):
    top = results / benchmark / system
    return sorted(top.iterdir()) if top.is_dir() else []


# ---------------------------------------------------------------------------------------------
def check_acceptance(lab, name, benchmark, system):
    """site.yml end to end with the guide's inventory; what every configuration must show."""
    started = time.monotonic()
    inv, guide = inventory(lab, name)
    values = GUIDE[benchmark]
    # the inventory holds exactly the guide's strings
    assert guide["mlperf_datadir"] == values["DATADIR"] and guide["mlperf_logdir"] == values["LOGDIR"]
    assert guide["mlperf_nexp"] == 10
    if "MODEL" in values:
        assert guide["mlperf_modeldir"] == values["MODEL"]
    variant = amd_image.variant(benchmark)
    assert variant.tag == values["CONT"]
    if benchmark == "llama2_70b_lora":  # the stand-in script finds the bucket there
        staged = lab.host_path(values["DATADIR"])
        staged.mkdir(parents=True, exist_ok=True)
        (staged / ".mlperf-standin-bucket").write_text(lab.bucket.base + "\n")

    proc = playbook(inv)
    # nothing reached the machine's own /data (the controller's tasks run outside the host)
    assert (os.path.ismount("/data"), sorted(os.listdir("/data"))) == lab.machine_data
    results = Path(lab.base / "results" / name)
    (campaign,) = campaign_sets(results, benchmark, system)

    # preflight: nothing but what a test host lacks (no path problem with the guide's layout)
    preflight = json.loads((results / "preflight.json").read_text())
    (row,) = [r for r in preflight["nodes"] if r["host"] == HOST]
    lacks = r"(ROCm 7\.2\.2 or later required|DATADIR: .* has .* GiB free, .* needs )"
    unexpected = [p for p in row["problems"] if not re.match(lacks, p)]
    assert unexpected == [], row["problems"]

    # data: staged where the guide puts it, on the host's /data
    catalog = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    if benchmark == "llama2_70b_lora":
        top = lab.host_path(values["DATADIR"])
        for rel in catalog["benchmarks"][benchmark]["dataset"]["expected_files"]:
            assert (top / rel).is_file(), rel
    else:  # DATADIR is the guide's .../data itself; the tokenizer in MODEL
        data = lab.host_path(values["DATADIR"])
        for stem in ("c4-train.en_6_text_document", "c4-validation-91205-samples.en_text_document"):
            for ext in ("bin", "idx"):
                assert (data / f"{stem}.{ext}").is_file(), f"{data}/{stem}.{ext}"
        assert not (data / "data").exists(), "the dataset went into DATADIR/data (.../data/data)"
        assert (lab.host_path(values["MODEL"]) / "tokenizer.json").is_file()
        assert not (data / "model").exists()

    # run: ten runs on the host, their logs in the guide's LOGDIR
    logs = lab.host_path(values["LOGDIR"]) / benchmark / system / campaign.name
    state = json.loads((logs / "state.json").read_text())
    assert state["status"] == "complete", state
    assert [r["status"] for r in state["runs"]] == ["success"] * 10
    spec = json.loads((logs / "campaign.json").read_text())
    assert spec["image"] == values["CONT"]
    mounts = {m["container"]: m["host"].rstrip("/") for m in spec["mounts"]}
    assert mounts["/results"] == str(Path(values["LOGDIR"]) / benchmark / system / campaign.name)
    if benchmark == "llama2_70b_lora":
        assert mounts["/data"] == values["DATADIR"] + "/data"
    else:
        assert mounts["/data"] == values["DATADIR"].rstrip("/")
        assert mounts["/model"] == values["MODEL"].rstrip("/")
    # the image's own config was sourced, the site's values after it
    assert spec["config_file"].endswith(f"/config_{system}.sh")
    code_config = lab.hsh(f"cat {spec['config_file']}")
    assert code_config.returncode == 0
    image_config = dict(amd_image.code_files(benchmark))[f"config_{system}.sh"].read_text()
    assert code_config.stdout == image_config  # the vendor's file, as the image has it
    # ... and the site's value in its own file, sourced after it
    site = lab.hsh(f"cat {spec['site_config_file']}")
    assert "MLPERF_REPLAY_MAX_SECONDS" in site.stdout and "MLPERF_REPLAY" not in image_config
    for k in range(10):
        text = (logs / f"result_{k}.txt").read_text()
        assert '"key": "run_stop"' in text and '"key": "cache_clear"' in text

    # collect + score: the replayed set's published score, exactly
    collected = campaign / HOST
    assert sorted(p.name for p in collected.glob("result_*.txt")) == [f"result_{k}.txt" for k in range(10)]
    score = json.loads((collected / "score.json").read_text())
    published = score_directory(variant.replay, ruleset="6.0.0")
    assert score["valid"], score.get("reasons")
    assert score["score_minutes"] == published.score_minutes
    assert round(score["score_minutes"], 4) == variant.score_minutes
    # the reference is the campaign's system's, whatever the logs call themselves
    platform = score["platform"]
    assert platform["catalog_platform"] == system
    versus = score["versus_reference"]
    expected = catalog["benchmarks"][benchmark]["platforms"][system]["reference"]
    assert (versus["reference_minutes"], versus["submission_id"]) == (
        expected["score_minutes"], expected["submission_id"]), versus
    assert versus["system"] == system
    if (benchmark, system) in REFERENCE:  # the guide's published numbers, said outright
        assert (versus["reference_minutes"], versus["submission_id"]) == REFERENCE[(benchmark, system)]
    if system.startswith("MI350X"):  # the replayed logs are MI355X's
        assert "MI355X" in platform["label_disagrees"] and system in platform["label_disagrees"]
    else:
        assert "label_disagrees" not in platform, platform

    # report: the vendor comparison, by name
    report = json.loads((campaign / "report.json").read_text())
    vendor = report["sets"][HOST]["vendor"]
    assert vendor["config_source"] == "image"
    assert vendor["config"].startswith(f"config_{system}.sh from the image")
    # every variable the image's file and the catalog do not share, by name (read here from
    # the image's file and the catalog, independently of render's comparison)
    image_vars = set(vendor_files.parse_config_sh(image_config)["variables"])
    catalog_vars = set(load_catalog().resolve(benchmark, system)["catalog_env"])
    differences = vendor["config_differences"]
    assert sorted(d["name"] for d in differences["added"]) == sorted(image_vars - catalog_vars)
    assert sorted(d["name"] for d in differences["removed"]) == sorted(catalog_vars - image_vars)
    assert {d["name"] for d in differences["changed"]} <= image_vars & catalog_vars
    if benchmark == "llama2_70b_lora":  # AMD's file sets NEXP=1 and names itself with a command
        assert [d["name"] for d in differences["added"]] == ["NEXP"]
        assert [d["name"] for d in differences["changed"]] == ["MLLOG_CONFIG_FILENAME"]
    assert vendor["launch_script"] == "run_with_docker.sh"
    md = (campaign / "report.md").read_text()
    assert f"- config: config_{system}.sh from the image" in md
    assert "- launch: the native runner against AMD's run_with_docker.sh" in md
    for item in vendor["launch"]:  # every launch difference is named in the report
        assert f"- launch: {item}" in md
    for kind in ("added", "changed", "removed"):
        for d in differences[kind]:
            assert d["name"] in vendor["config"]
    if system.startswith("MI350X"):
        assert f"- label: {platform['label_disagrees']}" in md
    assert md.count("| result_") == 10
    assert f"{benchmark}: score " in proc.stdout
    _say(f"{name}: score {score['score_minutes']} in {time.monotonic() - started:.1f} s")
    return proc, inv, score, vendor


def test_lora_mi355x_with_the_guides_values_and_a_second_run(lab):
    proc, inv, score, vendor = check_acceptance(lab, "lora_mi355x", "llama2_70b_lora", "MI355X_1x8x1")
    assert "hf_" not in json.dumps(vendor)
    # a second site.yml changes nothing but the new campaign: no download, no render
    mark = lab.bucket.mark()
    second = playbook(inv)
    allowed = {
        "campaign : Start the campaign, or re-attach to an unfinished one",
        "collect : Create the set's directory on the controller",
        "collect : Bring the files back",
        "collect : Bring the rendered config back",
        "collect : Mark the campaign collected (the next run stage starts a new campaign)",
        "score : Score each set",
        "report : Write the report",
    }
    assert changed_tasks(second.stdout) <= allowed, changed_tasks(second.stdout) - allowed
    assert [r for r in lab.bucket.requests(mark) if "/datasets/" in r.uri] == []
    first, new = campaign_sets(lab.base / "results" / "lora_mi355x", "llama2_70b_lora", "MI355X_1x8x1")
    again = json.loads((new / HOST / "score.json").read_text())
    assert again["score_minutes"] == score["score_minutes"]


def test_lora_mi350x_with_the_guides_values(lab):
    check_acceptance(lab, "lora_mi350x", "llama2_70b_lora", "MI350X_1x8x1")


def test_llama31_8b_mi355x_with_the_guides_values(lab):
    check_acceptance(lab, "llama31_8b_mi355x", "llama31_8b", "MI355X_1x8x1")


def test_llama31_8b_mi350x_with_the_guides_values(lab):
    check_acceptance(lab, "llama31_8b_mi350x", "llama31_8b", "MI350X_1x8x1")
