"""Stand-in images with AMD's layout, one per benchmark, built from the cached test base.

    VARIANTS[benchmark]                 # Variant: tag, systems, replayed set, published score
    code_files(benchmark)               # [(path under /workspace/code, file here)]
    write_code(benchmark, dest)         # that /workspace/code as a directory here (no container)
    image_tarball(benchmark)            # the image's rootfs tarball, built once and cached
    load_image(benchmark)               # imported once into the cached image store (image.py's)
    bucket_datasets(benchmark)          # {name: {path: bytes}} the stand-in bucket must hold
    stage_bucket(bucket, benchmark)     # add them to a tests/integration/nginx_bucket.NginxBucket

Each image is tagged as AMD's (``rocm/amd-mlperf:llama2_70b_training_6.0``,
``rocm/amd-mlperf:llama31_8b_training_6.0``, ``rocm/amd-mlperf:flux1_training_6.0``) and holds,
at ``/workspace/code`` (its working directory), what AMD's holds there for the guide's steps
(tests/infra/amd_layout/README.md says where each file comes from):

- ``config_<SYSTEM>.sh`` for each system of the variant, with AMD's published values;
- ``run_with_docker.sh`` (and for flux1 ``run_with_docker_slurm.sh``, ``job.sh``): our scripts,
  with the container options of AMD's, so ``vendor_files.parse_docker_run`` reads them as it
  reads AMD's;
- ``runtime_tunables.sh``: a stand-in that changes nothing on the host;
- ``scripts/prepare_data_and_model.sh``: builds the data tree of catalog.yml's
  ``expected_files`` from the stand-in bucket (``stage_bucket``), with ``scripts/r2_fetch.py``;
  flux1 also has ``scripts/to_webdataset.py`` and ``/usr/local/bin/energon`` stand-ins;
- ``run_and_time.sh`` + ``scripts/replay_mllog.py``: replays a real published result log,
  ``replay/result_<N>.txt`` (copied at build time from tests/data/mlperf-logs, with its
  provenance in ``replay/README.md``), with its timestamps moved to now, the relative times
  exact (so the score is the published one) and the waits compressed.

Besides: the base's python3 (also as ``python``: AMD's scripts run ``docker exec ... python -c``)
and the controller's ``mlperf_logging`` and PyYAML (pure Python) packages, for the cache-clear
event and the compliance checker AMD's scripts run in the container.

The base rootfs is tests/infra/image.py's (debootstrap, cached once for every image); an image
tarball is the base plus these files (about a second), cached as ``amd-<benchmark>-<key>.tar``
under image.cache_dir(), and imported into image.image_store() with the key as a label, so a
store that holds this exact image is not imported into again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import tarfile
import time
from pathlib import Path

from . import image

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = Path(__file__).resolve().parent / "amd_layout"
LOGS = ROOT / "tests" / "data" / "mlperf-logs"
RECIPE = 1  # bump when the image recipe changes in a way its inputs do not show
CODE_DIR = "workspace/code"
#: Directories the base rootfs has: no entries are written for them.
BASE_DIRS = {"usr", "usr/lib", "usr/lib/python3", image.SITE_PACKAGES, "usr/bin", "usr/local",
             "usr/local/bin"}


@dataclasses.dataclass(frozen=True)
class Variant:
    benchmark: str
    tag: str
    systems: tuple  # the config_<SYSTEM>.sh files the image holds
    replay: Path  # the published set run_and_time.sh replays (result_*.txt)
    replay_source: str  # where that set comes from (repository, path, commit)
    score_minutes: float  # its published score (tests/data/mlperf-logs/README.md), 4 digits


VARIANTS = {
    "llama2_70b_lora": Variant(
        "llama2_70b_lora", "rocm/amd-mlperf:llama2_70b_training_6.0",
        ("MI355X_1x8x1", "MI350X_1x8x1"),
        LOGS / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama2_70b_lora",
        "mlcommons/training_results_v5.1 @ 441d65f4, "
        "AMD/results/MI355X_EPYC_9575F_pytorch/llama2_70b_lora", 10.1847),
    "llama31_8b": Variant(
        "llama31_8b", "rocm/amd-mlperf:llama31_8b_training_6.0",
        ("MI355X_1x8x1", "MI350X_1x8x1"),
        LOGS / "v5.1" / "AMD" / "results" / "MI355X_EPYC_9575F_pytorch" / "llama31_8b",
        "mlcommons/training_results_v5.1 @ 441d65f4, "
        "AMD/results/MI355X_EPYC_9575F_pytorch/llama31_8b", 99.7085),
    "flux1": Variant(
        "flux1", "rocm/amd-mlperf:flux1_training_6.0", ("MI325X_08x08x32",),
        LOGS / "v5.1" / "NVIDIA" / "results" / "theia_ngpu16_ngc25.09_nemo" / "flux1",
        "mlcommons/training_results_v5.1 @ 441d65f4, "
        "NVIDIA/results/theia_ngpu16_ngc25.09_nemo/flux1 (AMD's v6.0 flux1 logs are not public "
        "in full)", 146.2601),
}


def variant(benchmark: str) -> Variant:
    try:
        return VARIANTS[benchmark]
    except KeyError:
        raise ValueError("no stand-in image for benchmark %r (have %s)"
                         % (benchmark, ", ".join(sorted(VARIANTS)))) from None


def _tree(top: Path) -> list[tuple[str, Path]]:
    return [(str(p.relative_to(top)), p) for p in sorted(top.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts]


def replay_readme(benchmark: str) -> str:
    v = variant(benchmark)
    return (f"# Published result logs replayed by run_and_time.sh\n\n"
            f"Source: {v.replay_source}; copied unchanged into mlperf-repro's "
            f"tests/data/mlperf-logs ({v.replay.relative_to(LOGS)}), see its README.md.\n"
            f"Published score of the set: {v.score_minutes} min (mlperf-logging 4.1.68, "
            f"ruleset 6.0.0). scripts/replay_mllog.py says how a file is chosen and replayed.\n")


def code_files(benchmark: str) -> list[tuple[str, Path | str]]:
    """(path under /workspace/code, file here or text) of everything the image holds there."""
    v = variant(benchmark)
    files = dict(_tree(LAYOUT / "common" / "code"))
    files.update(_tree(LAYOUT / benchmark / "code"))
    for system in v.systems:
        if f"config_{system}.sh" not in files:
            raise FileNotFoundError(f"{LAYOUT / benchmark / 'code'}: no config_{system}.sh")
    for path in sorted(v.replay.glob("result_*.txt")):
        files[f"replay/{path.name}"] = path
    files["replay/README.md"] = replay_readme(benchmark)
    return sorted(files.items())


def write_code(benchmark: str, dest: Path) -> Path:
    """/workspace/code of the image, written into ``dest`` (for running it without a container)."""
    dest = Path(dest)
    for rel, src in code_files(benchmark):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(src, str):
            target.write_text(src)
        else:
            shutil.copyfile(src, target)
            if os.access(src, os.X_OK):
                target.chmod(0o755)
    return dest


def _added_files(benchmark: str) -> list[tuple[str, Path | str]]:
    """(path in the image, file here or text) of everything laid over the base."""
    import mlperf_logging
    import yaml
    files = [(f"{CODE_DIR}/{rel}", src) for rel, src in code_files(benchmark)]
    for package in (Path(mlperf_logging.__file__).resolve().parent,
                    Path(yaml.__file__).resolve().parent):
        for path in sorted(package.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".so"):
                files.append((f"{image.SITE_PACKAGES}/{package.name}/{path.relative_to(package)}", path))
    bin_dir = LAYOUT / benchmark / "bin"
    if bin_dir.is_dir():
        files += [(f"usr/local/bin/{rel}", src) for rel, src in _tree(bin_dir)]
    return files


#: Symbolic links laid over the base: (path in the image, target).
LINKS = (("usr/bin/python", "python3"),)


def image_key(benchmark: str) -> str:
    digest = hashlib.sha256(("%s\0%s\0%d" % (image._base_key(), benchmark, RECIPE)).encode())
    for arcname, src in _added_files(benchmark):
        data = src.encode() if isinstance(src, str) else src.read_bytes()
        digest.update(b"\0" + arcname.encode() + b"\0" + data)
        digest.update(b"x" if not isinstance(src, str) and os.access(src, os.X_OK) else b"-")
    for path, target in LINKS:
        digest.update(("\0%s->%s" % (path, target)).encode())
    return digest.hexdigest()[:16]


def skip_reason(cache: Path | None = None) -> str | None:
    """Why the images cannot be built or loaded here, or None (image.py's reasons, and PyYAML)."""
    reason = image.skip_reason(cache)
    if reason:
        return reason
    import importlib.util
    if importlib.util.find_spec("yaml") is None:
        return "PyYAML is not importable here (it is copied into the image)"
    return None


def _mode(arcname: str, src) -> int:
    if isinstance(src, str):
        return 0o644
    if os.access(src, os.X_OK) or arcname.endswith(".sh") and "/config_" not in arcname:
        return 0o755
    return 0o644


def image_tarball(benchmark: str, cache: Path | None = None, log=None) -> Path:
    """The image's rootfs tarball: the cached base plus the files above (cached by content)."""
    cache = cache or image.cache_dir()
    key = image_key(benchmark)
    target = cache / f"amd-{benchmark}-{key}.tar"
    with image._locked(cache):
        if target.exists():
            return target
        base = image.build_base(cache, log)
        started = time.monotonic()
        partial = cache / f".amd-{benchmark}-{key}.{os.getpid()}.tar"
        shutil.copyfile(base, partial)
        try:
            with tarfile.open(partial, "a", format=tarfile.GNU_FORMAT) as tar:
                dirs = set(BASE_DIRS)
                for arcname, src in _added_files(benchmark):
                    parts = arcname.split("/")[:-1]
                    for i in range(1, len(parts) + 1):
                        directory = "/".join(parts[:i])
                        if directory in dirs:
                            continue
                        dirs.add(directory)
                        info = tarfile.TarInfo("./" + directory)
                        info.type, info.mode = tarfile.DIRTYPE, 0o755
                        tar.addfile(image._root_owned(info))
                    data = src.encode() if isinstance(src, str) else src.read_bytes()
                    info = image._root_owned(tarfile.TarInfo("./" + arcname))
                    info.size, info.mode = len(data), _mode(arcname, src)
                    tar.addfile(info, io.BytesIO(data))
                for path, link in LINKS:
                    info = image._root_owned(tarfile.TarInfo("./" + path))
                    info.type, info.linkname, info.mode = tarfile.SYMTYPE, link, 0o777
                    tar.addfile(info)
            os.replace(partial, target)
        finally:
            if partial.exists():
                partial.unlink()
        for old in cache.glob(f"amd-{benchmark}-*.tar"):
            if old != target:
                old.unlink()
        image._say(log, f"built {target.name} in {time.monotonic() - started:.1f} s")
    return target


def load_image(benchmark: str, store=None, log=None):
    """Make sure ``store`` (default image.image_store()) holds this exact image; return it."""
    cache = image.cache_dir()
    store = store or image.image_store(cache)
    tag = variant(benchmark).tag
    key = image_key(benchmark)
    with image._locked(cache):
        store.setup()
        if store.image_label(tag, image.LABEL) == key:
            return store
    tar = image_tarball(benchmark, cache, log=log)
    with image._locked(cache):
        if store.image_label(tag, image.LABEL) != key:
            started = time.monotonic()
            store.run("import", "--quiet", "--change", f"LABEL {image.LABEL}={key}",
                      "--change", "WORKDIR /workspace/code", "--change", 'CMD ["/bin/bash"]',
                      "--change", f"ENV PATH={image.PATH_ENV}", str(tar), tag, timeout=600)
            store.run("image", "prune", "--force", check=False)  # the previous image, if any
            image._say(log, f"imported {tag} in {time.monotonic() - started:.1f} s")
    return store


# ---------------------------------------------------------------------------------------------
# The stand-in bucket's datasets

def _blob(name: str, size: int) -> bytes:
    """Deterministic bytes standing in for a large file."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def bucket_datasets(benchmark: str) -> dict[str, dict[str, bytes]]:
    """{dataset name: {relative path: bytes}}: what scripts/prepare_data_and_model.sh (and the
    toolkit's own r2 downloads, for llama31_8b and flux1) fetch, named as MLCommons names the
    real datasets where it does (llama31_8b, flux1: the guide's .uri names)."""
    variant(benchmark)
    if benchmark == "llama2_70b_lora":
        ck = "iter_0000000"
        return {
            "llama2-70b-lora-govreport-packed": {
                "train.npy": _blob("train.npy", 4096),
                "validation.npy": _blob("validation.npy", 1024),
                "packed_metadata.jsonl": b'{"max_samples_per_bin": 1, "dataset_max_seqlen": 8192}\n',
            },
            "llama2-70b-hf-megatron-checkpoint": {
                "latest_checkpointed_iteration.txt": b"0\n",
                "latest_train_state.pt": _blob("latest_train_state.pt", 256),
                f"{ck}/__0_0.distcp": _blob("__0_0.distcp", 8192),
                f"{ck}/__0_1.distcp": _blob("__0_1.distcp", 8192),
                f"{ck}/common.pt": _blob("common.pt", 512),
                f"{ck}/.metadata": _blob(".metadata", 128),
                f"{ck}/metadata.json": b'{"sharded_backend": "torch_dist"}\n',
                f"{ck}/run_config.yaml": b"model: llama2_70b\n",
                f"{ck}/modelopt_run_config.yaml": b"{}\n",
                f"{ck}/train_state.pt": _blob("train_state.pt", 256),
                f"{ck}/tokenizer/tokenizer.model": _blob("tokenizer.model", 1024),
                f"{ck}/tokenizer/tokenizer_config.json": b'{"model_max_length": 4096}\n',
                f"{ck}/tokenizer/special_tokens_map.json": b'{"bos_token": "<s>"}\n',
            },
        }
    if benchmark == "llama31_8b":
        return {
            "llama-3-1-8b-preprocessed-c4-dataset": {
                f"{stem}.{ext}": _blob(f"{stem}.{ext}", 4096 if ext == "bin" else 512)
                for stem in ("c4-train.en_6_text_document",
                             "c4-validation-91205-samples.en_text_document")
                for ext in ("bin", "idx")},
            "llama-3-1-8b-tokenizer": {
                "tokenizer.json": b'{"version": "1.0"}\n',
                "tokenizer_config.json": b'{"model_max_length": 131072}\n',
                "special_tokens_map.json": b'{"bos_token": "<|begin_of_text|>"}\n',
            },
        }
    return {
        "flux-1-cc12m-preprocessed": {f"{i:05d}.npz": _blob(f"cc12m-{i}", 2048) for i in range(4)},
        "flux-1-coco-preprocessed": {f"{i:05d}.npz": _blob(f"coco-{i}", 1024) for i in range(2)},
        "flux-1-empty-encodings": {"empty_encodings.npz": _blob("empty", 512)},
    }


def stage_bucket(bucket, benchmark: str) -> dict:
    """Add ``benchmark``'s datasets to a started NginxBucket; {name: its Dataset}."""
    return {name: bucket.add_dataset(name, files)
            for name, files in bucket_datasets(benchmark).items()}
