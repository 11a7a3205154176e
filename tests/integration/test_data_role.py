"""The data stage end to end: playbooks/data.yml on inventory/local against a real nginx bucket.

What runs for real: ansible-playbook, the data and shared_storage roles, the native downloader
against nginx on loopback (its access log says what went over the wire), the manifests, the step
markers, renames and deletions; and the container steps' command lines, through a container
runtime: tests/infra's podman-backed ``docker`` with its test image (a Debian image, not AMD's:
those cannot be pulled here), into which fake versions of the image's tools are mounted
(``python`` = to_webdataset.py, ``energon`` that asks its questions on stdin and refuses wrong
answers, ``pip``, and ``scripts/prepare_data_and_model.sh`` that needs HF_TOKEN and prints it,
so redaction is tested). When this machine cannot run containers, a stand-in runtime runs the
same command lines' ``bash -c`` scripts on the machine itself, container paths mapped to their
host directories. A recorder in front of either logs every call (argv, environment names).
The catalog's own flux1 and llama2_70b_lora recipes are used, their URLs pointed at the bucket.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nginx_bucket import nginx_bucket  # noqa: E402,F401
from tests.infra.ansible_output import changed_tasks  # noqa: E402

pytestmark = pytest.mark.integration
HF = "hf_CANARY_data_5e884898da28047151d0e56f8dc6292773603d0d"
IMAGE = "localhost/mlperf-fake-image:test"


# ---------------------------------------------------------------------------------------------
# helpers
def playbook(*args, extra=None, env=None, check=True, timeout=300):
    argv = [str(BIN / "ansible-playbook"), *args]
    if extra:
        argv += ["-e", json.dumps(extra)]
    full_env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1",
                    ANSIBLE_FORCE_COLOR="0")
    for name in ("HF_TOKEN", "CF_ACCESS_CLIENT_ID", "CF_ACCESS_CLIENT_SECRET"):
        full_env.pop(name, None)
    full_env.update(env or {})
    proc = subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}")
    return proc


def recap(stdout, host="local"):
    m = re.search(r"^%s\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                  % re.escape(host), stdout, re.M)
    assert m, stdout[-3000:]
    return {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}



def tree(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file())


def write_catalog(path, dataset, image=IMAGE):
    """The packaged catalog with the smoke benchmark's dataset replaced by ``dataset``."""
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    data["benchmarks"]["smoke"]["dataset"] = dataset
    data["benchmarks"]["smoke"]["image"] = image
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def real_recipe(benchmark):
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    return copy.deepcopy(data["benchmarks"][benchmark]["dataset"])


def sandbox(tmp_path, catalog, **more):
    return dict({"mlperf_local_root": str(tmp_path / "root"),
                 "mlperf_results_dir": str(tmp_path / "results"),
                 "validate_catalog_path": str(catalog)}, **more)


def file_gets(bucket, since):
    return [r for r in bucket.requests(since) if r.uri.startswith("/datasets/") and r.method == "GET"]


# ---------------------------------------------------------------------------------------------
# the container runtime: a recording shim in front of podman (tests/infra) or of the stand-in
RECORDER = r"""#!{python}
# Records a runtime call (argv, the names of its environment, a hash of HF_TOKEN), then execs
# the real backend with the same argv and environment.
import hashlib, json, os, sys
record = {{"argv": sys.argv[1:], "env_names": sorted(os.environ)}}
if os.environ.get("HF_TOKEN"):
    record["hf_token_sha256"] = hashlib.sha256(os.environ["HF_TOKEN"].encode()).hexdigest()
with open({log!r}, "a") as f:
    f.write(json.dumps(record) + "\n")
os.execv({backend!r}, [{backend!r}] + sys.argv[1:])
"""

STAND_IN = r"""#!{python}
# `docker run` stand-in (no container runtime here): parses the command line as docker does and
# runs `bash -c SCRIPT` on this machine, container paths mapped to their host directories.
import os, re, subprocess, sys
argv = sys.argv[1:]
if not argv or argv[0] != "run":
    sys.exit("stand-in runtime: only `run` is supported, got %r" % argv[:1])
with_value = {{"--volume", "-v", "--workdir", "-w", "--env", "-e", "--device", "--security-opt",
              "--name", "--user", "-u"}}
mounts, env, workdir, i = {{"/workspace/code/scripts": {scripts!r}}}, {{}}, "/", 1
while i < len(argv) and argv[i].startswith("-"):
    opt, val = argv[i], None
    if "=" in opt and opt.startswith("--"):
        opt, val = opt.split("=", 1)
    elif opt in with_value:
        i += 1
        val = argv[i]
    if opt in ("--volume", "-v"):
        host, ctr = val.split(":")[:2]
        mounts[ctr] = host
    elif opt in ("--workdir", "-w"):
        workdir = val
    elif opt in ("--env", "-e"):
        if "=" in val:
            k, v = val.split("=", 1)
            env[k] = v
        elif val in os.environ:
            env[val] = os.environ[val]
    i += 1
image, command = argv[i], argv[i + 1:]
if command[:2] != ["bash", "-c"] or len(command) != 3:
    sys.exit("stand-in runtime: expected IMAGE bash -c SCRIPT, got %r" % command)

def to_host(text):
    for ctr in sorted(mounts, key=len, reverse=True):
        text = re.sub(r"(?<![\w./-])%s(?![\w.-])" % re.escape(ctr), mounts[ctr], text)
    return text

env.update(PATH={tools!r} + ":/usr/bin:/bin", HOME="/root")
for ctr, host in mounts.items():
    env["FAKE_MOUNT_" + re.sub(r"\W", "_", ctr)] = host
sys.exit(subprocess.call(["bash", "-c", to_host(command[2])],
                         cwd=to_host(workdir if workdir != "/workspace/code" else
                                     "/workspace/code/scripts/.."), env=env))
"""

# The image's tools, faked (in the container they are mounted at /usr/local/bin and
# /workspace/code/scripts; the stand-in puts them first on PATH).
FAKE_PYTHON = r"""#!/usr/bin/python3
# `python /workspace/code/scripts/to_webdataset.py --input_path IN --output_path OUT` stand-in.
import argparse, os, sys, tarfile
ap = argparse.ArgumentParser()
ap.add_argument("script")
ap.add_argument("--input_path", required=True)
ap.add_argument("--output_path", required=True)
ap.add_argument("--num_workers", type=int, default=1)
a = ap.parse_args()
assert a.script.endswith("to_webdataset.py"), a.script
os.makedirs(a.output_path, exist_ok=True)
names = sorted(n for n in os.listdir(a.input_path) if not n.startswith(".") and not n.endswith(".md5"))
with tarfile.open(os.path.join(a.output_path, "shard-000000.tar"), "w") as t:
    for n in names:
        t.add(os.path.join(a.input_path, n), arcname=n)
print("converted %d files of %s into %s" % (len(names), a.input_path, a.output_path))
"""

FAKE_ENERGON = r"""#!/usr/bin/python3
# `energon prepare ... ./` stand-in: asks its questions on stdin, as the real one does.
import json, os, sys
assert sys.argv[1] == "prepare", sys.argv
meta = os.path.join(os.getcwd(), ".nv-meta")
def ask(question):
    line = sys.stdin.readline()
    if not line:
        sys.exit("energon: no answer to %r (stdin closed)" % question)
    print(question, "->", line.strip())
    return line.strip()
if os.path.exists(os.path.join(meta, ".info.yaml")):
    if ask("It seems the dataset had already been prepared. Continue?") != "y":
        sys.exit(0)
tars = [os.path.join(r, f) for r, _, fs in os.walk(".") for f in fs if f.endswith(".tar")]
if not tars:
    sys.exit("energon: no tar files")
os.makedirs(meta, exist_ok=True)
with open(os.path.join(meta, ".info.yaml"), "w") as f:
    f.write("shard_counts: {}\n")
if ask("Found duplicate keys. Continue?") != "y":
    sys.exit("energon: aborted at duplicate keys")
if ask("Do you want to create a dataset.yaml interactively?") != "y":
    sys.exit("energon: dataset.yaml not created")
if ask("Please enter a number to choose a class") != "11":
    sys.exit("energon: wrong class")
with open(os.path.join(meta, "dataset.yaml"), "w") as f:
    f.write("__module__: megatron.energon\n__class__: CrudeWebdataset\n")
with open(os.path.join(meta, "split.yaml"), "w") as f:
    f.write(json.dumps(sys.argv[2:]) + "\n")
print("Done")
"""

FAKE_PREPARE = r"""#!/bin/bash
# The llama2 image's scripts/prepare_data_and_model.sh, faked: needs HF_TOKEN, and is careless
# enough to print it (the role must keep it out of every log anyway).
set -euo pipefail
[ -n "${HF_TOKEN:-}" ] || { echo "HF_TOKEN is not set" >&2; exit 3; }
echo "logging in to Hugging Face with HF_TOKEN=$HF_TOKEN"
d="${FAKE_MOUNT__data:-/data}/data"
ck="$d/megatron_checkpoints/Llama-2-70b-hf"
mkdir -p "$ck/iter_0000000/tokenizer"
for f in train.npy validation.npy packed_metadata.jsonl; do echo "$f" > "$d/$f"; done
echo 0 > "$ck/latest_checkpointed_iteration.txt"
for f in __0_0.distcp __0_1.distcp common.pt tokenizer/tokenizer.model; do echo "$f" > "$ck/iter_0000000/$f"; done
echo "prepared in $(pwd)"
"""


def _podman():
    """tests/infra's podman-backed `docker` and its test image, or (None, why not).
    MLPERF_DATA_TEST_STAND_IN=1 forces the stand-in."""
    if os.environ.get("MLPERF_DATA_TEST_STAND_IN"):
        return None, "MLPERF_DATA_TEST_STAND_IN is set"
    try:
        from tests.infra import docker_wrapper, image
    except ImportError as e:
        return None, "tests/infra is not available (%s)" % e
    reason = image.skip_reason()
    if reason:
        return None, reason
    try:
        store = image.load_image()
    except Exception as e:  # noqa: BLE001 - no image, no real runtime: the stand-in is used
        return None, "the test image could not be built or loaded: %s" % e
    return (docker_wrapper, image, store), None


@pytest.fixture
def runtime(tmp_path):
    """The runtime the data steps use: podman through tests/infra's `docker` wrapper, running the
    real command lines in a real container (the smoke test image, with the fake tools above
    mounted in), or the stand-in when this machine cannot run containers. Either way a recorder
    in front logs every call: ``runtime.calls()``."""
    import tempfile
    base = tmp_path / "runtime"
    tools, scripts = base / "tools", base / "scripts"
    for d in (tools, scripts):
        d.mkdir(parents=True)
    for path, text in ((tools / "python", FAKE_PYTHON), (tools / "energon", FAKE_ENERGON),
                       (tools / "pip", '#!/bin/sh\necho "pip $*"\n'),
                       (scripts / "prepare_data_and_model.sh", FAKE_PREPARE)):
        path.write_text(text)
        path.chmod(0o755)
    os.chmod(tmp_path, 0o755)  # the container's root reads the mounted tools
    log = base / "calls.jsonl"
    real, why = _podman()
    docker = None
    if real:
        docker_wrapper, image, store = real
        docker = docker_wrapper.PodmanDocker(
            tempfile.mkdtemp(prefix="mlperf-data-docker-", dir="/tmp"),
            additional_image_stores=[store.graphroot]).setup()
        backend, image_name = str(docker.docker), image.IMAGE
        mounts = ["--volume", f"{tools}:/usr/local/bin:ro",
                  "--volume", f"{scripts}:/workspace/code/scripts:ro"]
    else:
        backend, image_name, mounts = str(base / "stand-in"), IMAGE, []
        (base / "stand-in").write_text(STAND_IN.format(python=sys.executable, scripts=str(scripts),
                                                       tools=str(tools)))
        (base / "stand-in").chmod(0o755)
    recorder = base / "docker"
    recorder.write_text(RECORDER.format(python=sys.executable, log=str(log), backend=backend))
    recorder.chmod(0o755)

    class Runtime:
        path = str(recorder)
        mode = "podman" if real else "stand-in"
        reason = why
        image = image_name
        # The role's own flags, plus (podman) the fake tools mounted into the image.
        extra = {"data_container_command": str(recorder),
                 "data_container_flags": ["--network=host", "--ipc=host"] + mounts}
        if real:  # no /dev/kfd, /dev/dri here
            extra["data_container_script_flags"] = ["--uts=host", "--security-opt",
                                                    "seccomp=unconfined"]

        @staticmethod
        def calls():
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    try:
        yield Runtime()
    finally:
        if docker is not None:
            docker.teardown()


# ---------------------------------------------------------------------------------------------
# r2 (llama31_8b's recipe from the catalog): the guide's DATADIR and MODEL as written
@pytest.fixture(scope="module")
def r2_datasets(nginx_bucket):
    data = nginx_bucket.add_dataset("role-c4", {
        "c4-train.en_6_text_document.bin": os.urandom(300_000),
        "c4-train.en_6_text_document.idx": os.urandom(4_000),
        "c4-validation-91205-samples.en_text_document.bin": os.urandom(30_000),
        "c4-validation-91205-samples.en_text_document.idx": os.urandom(400),
        "LICENSE.txt": b"license\n"})
    tok = nginx_bucket.add_dataset("role-tokenizer", {
        "tokenizer.json": b'{"model": {}}\n', "config.json": b"{}\n",
        "original/tokenizer.model": os.urandom(20_000)})
    return data, tok


def r2_recipe(data, tok):
    """The catalog's llama31_8b recipe as it is, its two URLs pointed at the bucket."""
    recipe = real_recipe("llama31_8b")
    assert [d["dest"] for d in recipe["downloads"]] == [".", "{MODEL}"]
    recipe["downloads"][0]["uri"], recipe["downloads"][1]["uri"] = data.uri, tok.uri
    return recipe


def guide_dirs(tmp_path):
    """The guide's literal layout under a tmp root: DATADIR=/data/mlperf_llama31_8b/data,
    MODEL=/data/mlperf_llama31_8b/model/ (the guide's `-d data` and `-d model`)."""
    top = tmp_path / "data" / "mlperf_llama31_8b"
    return top, top / "data", top / "model"


def test_r2_downloads_once_then_rechecks_offline_and_deep_verify_rehashes(
        nginx_bucket, r2_datasets, tmp_path):
    """The guide's values as written (MODEL with its trailing slash): the dataset lands in DATADIR
    itself, the tokenizer in MODEL; nothing goes to DATADIR/data."""
    data, tok = r2_datasets
    top, datadir, modeldir = guide_dirs(tmp_path)
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", r2_recipe(data, tok)),
                    mlperf_datadir=str(datadir), mlperf_modeldir=f"{modeldir}/")

    first = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    assert recap(first.stdout)["changed"] > 0
    for rel, blob in data.files.items():
        assert (datadir / rel).read_bytes() == blob
    for rel, blob in tok.files.items():
        assert (modeldir / rel).read_bytes() == blob
    assert not (datadir / "data").exists() and not (datadir / "model").exists()
    assert sorted(p.name for p in top.iterdir()) == ["data", "model"]
    assert "layout: complete (4 expected paths)" in first.stdout

    # The re-run: changed=0, and not one request to the bucket (the manifest is checked offline).
    mark = nginx_bucket.mark()
    second = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    assert recap(second.stdout)["changed"] == 0, changed_tasks(second.stdout)
    assert nginx_bucket.requests(mark) == []
    assert "role-c4: 5/5 files verified" in second.stdout
    assert "role-tokenizer: 3/3 files verified" in second.stdout

    # A file altered behind the manifest's back, same size and mtime: the quick check cannot
    # see it; --tags deep_verify re-hashes everything and fetches exactly that file again.
    victim = datadir / "c4-train.en_6_text_document.idx"
    st = victim.stat()
    victim.write_bytes(b"\0" * st.st_size)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    mark = nginx_bucket.mark()
    deep = playbook("playbooks/data.yml", "-i", "inventory/local", "--tags", "deep_verify",
                    extra=extra)
    assert victim.read_bytes() == data.files["c4-train.en_6_text_document.idx"]
    assert [g.uri for g in file_gets(nginx_bucket, mark)] == \
        [data.url_path("c4-train.en_6_text_document.idx")]
    assert recap(deep.stdout)["changed"] > 0


def test_r2_adopts_a_tokenizer_staged_under_the_guides_name(nginx_bucket, r2_datasets, tmp_path):
    """The guide's `mv llama3_1_8b_tokenizer model`, in DATADIR's parent: a tokenizer staged under
    the old name (as MLCommons' README does with -d llama3_1_8b_tokenizer) becomes MODEL (by
    default `model` beside DATADIR), and is verified by hashing instead of downloading again."""
    data, tok = r2_datasets
    top, datadir, modeldir = guide_dirs(tmp_path)
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", r2_recipe(data, tok)),
                    mlperf_datadir=str(datadir))
    old = top / "llama3_1_8b_tokenizer"
    for rel, blob in tok.files.items():
        (old / rel).parent.mkdir(parents=True, exist_ok=True)
        (old / rel).write_bytes(blob)
    mark = nginx_bucket.mark()
    run = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    assert not old.exists()
    assert (modeldir / "tokenizer.json").read_bytes() == tok.files["tokenizer.json"]
    fetched = {g.uri for g in file_gets(nginx_bucket, mark)}
    assert not any(u.startswith(tok.url_path("")) for u in fetched), fetched
    assert "role-tokenizer: 3/3 files verified" in run.stdout
    assert (datadir / "c4-train.en_6_text_document.bin").read_bytes() == \
        data.files["c4-train.en_6_text_document.bin"]


def test_r2_refuses_the_old_layout_before_downloading_anything(nginx_bucket, r2_datasets, tmp_path):
    """A site staged with the toolkit's earlier meaning (mlperf_datadir the guide's parent, the
    dataset in <datadir>/data, the tokenizer in <datadir>/model) keeping its old mlperf_datadir:
    the data stage stops before it creates, moves or downloads anything, naming mlperf_datadir and
    the path to set; with that path set, nothing is downloaded again."""
    data, tok = r2_datasets
    top, datadir, modeldir = guide_dirs(tmp_path)
    recipe = r2_recipe(data, tok)
    catalog = write_catalog(tmp_path / "catalog.yml", recipe)
    # stage it as the toolkit did before: DATADIR=<top>, files in <top>/data and <top>/model
    first = playbook("playbooks/data.yml", "-i", "inventory/local", extra=sandbox(
        tmp_path, catalog, mlperf_datadir=str(datadir), mlperf_modeldir=str(modeldir)))
    assert recap(first.stdout)["failed"] == 0
    (datadir / ".mlperf-data").rename(top / ".mlperf-data")  # the old stage's records
    before = tree(top)

    mark = nginx_bucket.mark()
    old = playbook("playbooks/data.yml", "-i", "inventory/local", check=False,
                   extra=sandbox(tmp_path, catalog, mlperf_datadir=str(top)))
    assert old.returncode != 0
    assert nginx_bucket.requests(mark) == []
    assert tree(top) == before and not (top / "c4-train.en_6_text_document.bin").exists()
    message = " ".join(old.stdout.split())
    assert f"Set mlperf_datadir: {datadir} in the inventory" in message, old.stdout[-3000:]
    assert f"mlperf_datadir is {top}," in message
    assert "Nothing was downloaded, moved or deleted." in message

    # The path it names, as the guide writes it: adopted as it is, nothing fetched.
    mark = nginx_bucket.mark()
    good = playbook("playbooks/data.yml", "-i", "inventory/local",
                    extra=sandbox(tmp_path, catalog, mlperf_datadir=str(datadir)))
    assert file_gets(nginx_bucket, mark) == []
    assert "role-c4: 5/5 files verified" in good.stdout
    assert "role-tokenizer: 3/3 files verified" in good.stdout


# ---------------------------------------------------------------------------------------------
# r2_then_convert (flux1's recipe from the catalog)
def flux_recipe(bucket):
    recipe = real_recipe("flux1")
    contents = {
        "cc12m_preprocessed": {"data-00000-of-00002.arrow": os.urandom(30_000),
                               "data-00001-of-00002.arrow": os.urandom(30_000),
                               "state.json": b"{}\n"},
        "coco_preprocessed": {"data-00000-of-00001.arrow": os.urandom(10_000),
                              "dataset_info.json": b"{}\n"},
        "empty_encodings": {"t5_empty.npy": os.urandom(512), "clip_empty.npy": os.urandom(256)},
    }
    for d in recipe["downloads"]:
        name = Path(d["uri"]).name[:-len(".uri")] + "-" + os.urandom(3).hex()
        d["uri"] = bucket.add_dataset(name, contents[d["dest"]]).uri
    recipe["expected_files"] = recipe["expected_files"] + ["energon/.nv-meta/dataset.yaml"]
    return recipe, contents


def test_flux_downloads_converts_prepares_once_then_skips_everything(nginx_bucket, runtime,
                                                                       tmp_path):
    recipe, contents = flux_recipe(nginx_bucket)
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", recipe, runtime.image),
                    **runtime.extra)
    datadir = tmp_path / "root" / "data"

    # --check: plans the downloads (HEAD requests only), renders the container commands without
    # running one, writes nothing.
    mark = nginx_bucket.mark()
    planned = playbook("playbooks/data.yml", "-i", "inventory/local", "--check", "-v", extra=extra)
    assert runtime.calls() == []
    assert "Download from the MLCommons bucket" in " ".join(changed_tasks(planned.stdout))
    assert "to_webdataset.py --input_path /dataset/cc12m_preprocessed" in planned.stdout
    assert "| energon prepare --split-parts" in planned.stdout
    assert not (tmp_path / "root").exists()
    assert file_gets(nginx_bucket, mark) == []

    # An earlier energon prepare was interrupted after indexing (.nv-meta/.info.yaml, no
    # dataset.yaml): energon will first ask whether to continue.
    (datadir / "energon" / ".nv-meta").mkdir(parents=True)
    (datadir / "energon" / ".nv-meta" / ".info.yaml").write_text("shard_counts: {}\n")

    first = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    calls = runtime.calls()
    assert len(calls) == 4, [c["argv"] for c in calls]  # train, val, energon prepare, copy
    for call in calls:
        argv = call["argv"]
        assert argv[:2] == ["run", "--rm"] and "--network=host" in argv and "--ipc=host" in argv
        assert f"{datadir}:/dataset" in argv
        assert argv[-4:-1] == [runtime.image, "bash", "-c"]
    scripts = [c["argv"][-1] for c in calls]
    assert scripts[0] == ("pip install datasets && python /workspace/code/scripts/to_webdataset.py "
                          "--input_path /dataset/cc12m_preprocessed --output_path "
                          "/dataset/energon/train --num_workers 8")
    assert "--input_path /dataset/coco_preprocessed --output_path /dataset/energon/val" in scripts[1]
    assert "printf '%s\\n' y y 11; } | energon prepare --split-parts 'train:train/.*' " \
           "--split-parts 'val:val/.*' ./" in scripts[2]
    assert (datadir / "energon" / ".nv-meta" / "dataset.yaml").exists()
    log = (datadir / ".mlperf-data" / "energon-prepare.log").read_text()
    assert "already been prepared. Continue? -> y" in log
    assert "create a dataset.yaml interactively? -> y" in log and "choose a class -> 11" in log
    for rel in ("t5_empty.npy", "clip_empty.npy"):
        assert (datadir / "energon" / "empty_encodings" / rel).read_bytes() == \
            contents["empty_encodings"][rel]
    for split in ("train", "val"):
        assert (datadir / "energon" / split / "shard-000000.tar").exists()
    markers = sorted(p.name for p in (datadir / ".mlperf-data").glob("*.json")
                     if not p.name.endswith(".progress.json"))
    assert markers == ["convert-1.json", "convert-2.json", "copy-energon-empty_encodings.json",
                       "energon-prepare.json"]
    assert "layout: complete (4 expected paths)" in first.stdout

    assert (datadir / "cc12m_preprocessed" / "state.json").exists()  # kept by default

    # Only when asked: the intermediates go once the conversion is complete ...
    extra_delete = dict(extra, data_delete_intermediates=True)
    deleted = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra_delete)
    assert changed_tasks(deleted.stdout) == {
        "data : Delete the conversion's inputs, as data_delete_intermediates asks"}
    assert not (datadir / "cc12m_preprocessed").exists()
    assert not (datadir / "coco_preprocessed").exists()
    assert (datadir / "empty_encodings" / "t5_empty.npy").exists()
    # ... and a later run neither fetches them again nor runs a container: changed=0.
    mark = nginx_bucket.mark()
    after = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra_delete)
    assert recap(after.stdout)["changed"] == 0, changed_tasks(after.stdout)
    assert nginx_bucket.requests(mark) == [] and len(runtime.calls()) == 4
    assert "conversion input, no longer needed" in after.stdout
    assert "layout: complete (4 expected paths)" in after.stdout


def test_flux_conversion_offline_installs_from_the_wheelhouse_only(nginx_bucket, runtime, tmp_path):
    """Air-gapped sites: the guide's `pip install datasets` from a wheelhouse on shared storage,
    mounted read-only; a wheelhouse that lacks a wheel, or a package that is not a name, is
    refused before any container runs."""
    recipe, _ = flux_recipe(nginx_bucket)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "pyarrow-17.0.0-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"")
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", recipe, runtime.image),
                    data_container_wheelhouse=str(wheelhouse), **runtime.extra)

    missing = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra, check=False)
    assert missing.returncode == 2
    assert (f"data_container_wheelhouse {wheelhouse} has no wheel for datasets: fill it on a "
            "machine that can reach PyPI with pip download datasets -d DIR") in missing.stdout
    assert runtime.calls() == []

    bad = playbook("playbooks/data.yml", "-i", "inventory/local", check=False,
                   extra=dict(extra, data_container_pip_packages=["datasets", "x; touch /tmp/pwned"]))
    assert bad.returncode == 2 and "data_container_pip_packages must be package names" in bad.stdout
    assert "x; touch /tmp/pwned" in bad.stdout and runtime.calls() == []

    (wheelhouse / "datasets-2.19.0-py3-none-any.whl").write_bytes(b"")
    playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    calls = runtime.calls()
    assert len(calls) == 4, [c["argv"] for c in calls]
    for call in calls:
        assert f"{wheelhouse}:/wheelhouse:ro" in call["argv"]
    converts = [c["argv"][-1] for c in calls if "to_webdataset.py" in c["argv"][-1]]
    assert len(converts) == 2
    assert all(c.startswith("pip install --no-index --find-links /wheelhouse datasets && python ")
               for c in converts), converts


def test_flux_conversion_needs_no_pip_with_a_prepared_image(nginx_bucket, runtime, tmp_path):
    recipe, _ = flux_recipe(nginx_bucket)
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", recipe, runtime.image),
                    data_container_pip_packages=[], **runtime.extra)
    playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    scripts = [c["argv"][-1] for c in runtime.calls()]
    assert scripts[0].startswith("python /workspace/code/scripts/to_webdataset.py "), scripts[0]
    assert not any("pip" in s for s in scripts)


# ---------------------------------------------------------------------------------------------
# container_script (llama2_70b_lora's recipe from the catalog)
def test_llama2_script_gets_hf_token_by_environment_only(runtime, tmp_path):
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", real_recipe("llama2_70b_lora"),
                                            runtime.image),
                    data_script_min_free_gb=0, **runtime.extra)

    # Without a token: a clear failure before anything runs.
    missing = playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra, check=False)
    assert missing.returncode != 0
    assert "needs HF_TOKEN" in missing.stdout and runtime.calls() == []

    run = playbook("playbooks/data.yml", "-i", "inventory/local", "-vvv", extra=extra,
                   env={"HF_TOKEN": HF})
    (call,) = runtime.calls()
    argv = call["argv"]
    assert HF not in json.dumps(argv)
    assert "--env=HF_TOKEN" in argv and "HF_TOKEN" in call["env_names"]
    assert call["hf_token_sha256"] == hashlib.sha256(HF.encode()).hexdigest()  # it did arrive
    assert f"{tmp_path / 'root' / 'data'}:/data" in argv
    assert argv[argv.index("--workdir") + 1] == "/workspace/code"
    assert argv[-4:] == [runtime.image, "bash", "-c", "bash ./scripts/prepare_data_and_model.sh"]
    flags = ("--uts=host", "seccomp=unconfined") + (() if runtime.mode == "podman" else
                                                    ("/dev/kfd", "/dev/dri"))
    for flag in flags:
        assert flag in argv
    # The fake script printed the token: the console, the step log and every file hold none.
    console = run.stdout + run.stderr
    assert HF not in console
    log = tmp_path / "root" / "data" / ".mlperf-data" / "container-script.log"
    assert "HF_TOKEN=********" in log.read_text()
    assert "prepared in /workspace/code" in log.read_text() or runtime.mode == "stand-in"
    holders = [p for p in tmp_path.rglob("*") if p.is_file() and HF.encode() in p.read_bytes()]
    assert holders == []
    assert "layout: complete (8 expected paths)" in console


def test_llama2_staged_by_hand_is_adopted_without_a_token(runtime, tmp_path):
    extra = sandbox(tmp_path, write_catalog(tmp_path / "catalog.yml", real_recipe("llama2_70b_lora"),
                                            runtime.image), **runtime.extra)
    datadir = tmp_path / "root" / "data"
    for rel in real_recipe("llama2_70b_lora")["expected_files"]:
        (datadir / rel).parent.mkdir(parents=True, exist_ok=True)
        (datadir / rel).write_text(rel)
    playbook("playbooks/data.yml", "-i", "inventory/local", extra=extra)
    assert runtime.calls() == []
    marker = json.loads((datadir / ".mlperf-data" / "container-script.json").read_text())
    assert marker["adopted"] is True and len(marker["files"]) == 8


def test_llama2_guides_datadir_is_taken_as_written_and_one_level_too_deep_is_refused(runtime, tmp_path):
    """The guide's DATADIR=/data/mlperf_llama2 with its "Verify Data" tree under $DATADIR/data is
    the toolkit's meaning: adopted, no container run. The tree's own root (.../mlperf_llama2/data)
    given as DATADIR is refused before the 270 GB script runs, naming the path to set."""
    top = tmp_path / "data" / "mlperf_llama2"
    guide_tree = ["train.npy", "validation.npy", "packed_metadata.jsonl",
                  "megatron_checkpoints/Llama-2-70b-hf/latest_checkpointed_iteration.txt",
                  "megatron_checkpoints/Llama-2-70b-hf/iter_0000000/__0_0.distcp",
                  "megatron_checkpoints/Llama-2-70b-hf/iter_0000000/__0_1.distcp",
                  "megatron_checkpoints/Llama-2-70b-hf/iter_0000000/common.pt",
                  "megatron_checkpoints/Llama-2-70b-hf/iter_0000000/tokenizer/tokenizer.model"]
    for rel in guide_tree:  # /data/mlperf_llama2/data/... as the guide shows it
        (top / "data" / rel).parent.mkdir(parents=True, exist_ok=True)
        (top / "data" / rel).write_text(rel)
    catalog = write_catalog(tmp_path / "catalog.yml", real_recipe("llama2_70b_lora"), runtime.image)

    deep = playbook("playbooks/data.yml", "-i", "inventory/local", check=False, extra=sandbox(
        tmp_path, catalog, mlperf_datadir=str(top / "data"), data_hf_token=HF, **runtime.extra))
    assert deep.returncode != 0 and runtime.calls() == []
    message = " ".join(deep.stdout.split())
    assert f"Set mlperf_datadir: {top} in the inventory" in message, deep.stdout[-3000:]
    assert not (top / "data" / ".mlperf-data").exists()

    playbook("playbooks/data.yml", "-i", "inventory/local",
             extra=sandbox(tmp_path, catalog, mlperf_datadir=str(top), **runtime.extra))
    assert runtime.calls() == []
    marker = json.loads((top / ".mlperf-data" / "container-script.json").read_text())
    assert marker["adopted"] is True and len(marker["files"]) == len(guide_tree)


# ---------------------------------------------------------------------------------------------
# shared storage: two hosts, one filesystem or not
def test_shared_storage_refuses_a_mount_point_holding_another_filesystem(tmp_path):
    """An inventory NFS mount whose mount point already holds something else is reported, and
    nothing is mounted over it (here: / on this machine, which is not nas:/export)."""
    extra = {"mlperf_local_root": str(tmp_path / "root"),
             "mlperf_results_dir": str(tmp_path / "results"),
             "shared_storage_mounts": [{"src": "nas:/export/mlperf", "path": "/", "fstype": "nfs"}]}
    run = playbook("site.yml", "-i", "inventory/local", "--tags", "data", extra=extra, check=False)
    assert run.returncode != 0
    assert re.search(r"/ on local is mounted from \S+ \(\S+\), not nas:/export/mlperf", run.stdout), \
        run.stdout[-3000:]
    assert "Mount the shared filesystems" not in " ".join(changed_tasks(run.stdout))
    assert not (tmp_path / "root").exists()


def _infra():
    try:
        from tests.infra import netns
    except ImportError:
        return None, "tests/infra is not available"
    if os.geteuid() != 0:
        return None, "needs root (network namespaces)"
    missing = netns.missing_commands()
    if missing:
        return None, "not installed: " + ", ".join(missing)
    return netns, None


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    netns, reason = _infra()
    if reason:
        pytest.skip(reason)
    import tempfile
    base = Path(tempfile.mkdtemp(prefix="mlperf-shared-", dir="/tmp"))
    hosts = netns.NetnsHosts(base, ["node1", "node2"]).up()
    try:
        yield hosts, base
    finally:
        hosts.down()
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def shared_inventory(hosts, base, name, **group_vars):
    inv = base / name
    (inv / "group_vars").mkdir(parents=True)
    host_vars = {n: {"ansible_host": h.ip} for n, h in hosts.hosts.items()}
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {
        "mlperf_controller": {"hosts": {"localhost": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}"}}},
        "mlperf_nodes": {"hosts": host_vars},
        "mlperf_staging": {"hosts": {"node1": {}}},
    }}}))
    values = dict(hosts.ansible_vars(), mlperf_benchmark="smoke", mlperf_system="CPU_1x1x1",
                  mlperf_nexp=10, mlperf_container_runtime="none",
                  mlperf_results_dir=str(base / "results"), mlperf_shared_storage=True,
                  mlperf_site_env={}, mlperf_provision=False, tunables_mode="off",
                  shared_storage_become=False)
    values.update(group_vars)
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(values))
    return inv


def test_shared_storage_marker_proves_one_filesystem_and_mounts_it(two_hosts):
    hosts, base = two_hosts
    shared = base / "export"
    (shared / "data").mkdir(parents=True, exist_ok=True)
    # /opt is each host's own copy-on-write overlay: not shared, and the check says so (node1
    # wrote the marker; node2 cannot see it).
    local = shared_inventory(hosts, base, "inv-local", mlperf_datadir="/opt/mlperf-data",
                             mlperf_logdir=str(shared / "logs"), mlperf_workdir="/opt/work",
                             shared_storage_marker_retries=1)
    bad = playbook("playbooks/data.yml", "-i", str(local), "--tags", "data", check=False)
    assert bad.returncode != 0
    assert re.search(r"node2: /opt/mlperf-data: the marker is not there", bad.stdout), bad.stdout[-3000:]
    assert "node1: /opt/mlperf-data" not in bad.stdout
    assert "shared_storage : Stop when the hosts do not share the storage" in bad.stdout

    # Mounted from the inventory (a bind mount stands in for NFS, which this kernel lacks):
    # each host mounts the export over its private /opt path, and then the marker is shared.
    mounted = shared_inventory(
        hosts, base, "inv-mount", mlperf_datadir="/opt/mlperf-data", mlperf_logdir="/opt/mlperf-data",
        mlperf_workdir="/opt/work",
        shared_storage_mounts=[{"src": str(shared / "data"), "path": "/opt/mlperf-data",
                                "fstype": "none", "opts": "bind"}])
    first = playbook("playbooks/data.yml", "-i", str(mounted), "--tags", "data")
    assert "shared_storage : Mount the shared filesystems that are not mounted yet" in \
        changed_tasks(first.stdout)
    assert "every host of the play (2) reads the marker written by node1" in first.stdout
    assert not list(shared.rglob(".mlperf-shared-check-*"))  # the probe is gone
    for name in ("node1", "node2"):
        mounts = hosts.exec(name, ["cat", "/proc/mounts"]).stdout
        assert " /opt/mlperf-data " in mounts, (name, mounts)
    again = playbook("playbooks/data.yml", "-i", str(mounted), "--tags", "data")
    assert recap(again.stdout, "node1")["changed"] == 0
    assert recap(again.stdout, "node2")["changed"] == 0
