"""The test image ``rocm/amd-mlperf:smoke_training_6.0``, built without a registry and cached.

    reason = skip_reason()              # None when the image can be built (or is cached) here
    tar = image_tarball()               # the image's rootfs tarball, built once and cached
    store = load_image()                # imported once into the cached image store
    write_test_catalog(path)            # the catalog plus a docker platform that runs it

What is in it: Debian bookworm minbase (``debootstrap``, from the Debian mirror apt already
uses) with ``python3``, ``python3-numpy`` and OpenBLAS (``libopenblas0-pthread``: with the
reference BLAS that debootstrap picks otherwise, a smoke run takes 4 times as long); the
controller's ``mlperf_logging`` package (pure Python) under ``/usr/lib/python3/dist-packages``;
the smoke benchmark (``train.py``, ``run_and_time.sh``) at ``/workspace/code``, the image's
working directory, as AMD's images hold their benchmark code. About 220 MB.

Two tarballs are cached (under :func:`cache_dir`, never in the repository): the base rootfs
(``base-bookworm-<key>.tar``; the slow part, about 65 s of debootstrap), and the image
(``smoke-<key>.tar``: the base plus the files above, rebuilt in about a second whenever one of
them changes; the key is a hash of their contents). The imported image carries the key as a
label, so a store that already holds this exact image is not imported into again. The image
lives in a podman store of its own under the cache directory (:func:`image_store`); test sessions
run their containers in private stores that see it as a read-only additional image store.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from . import docker_wrapper

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "rocm/amd-mlperf:smoke_training_6.0"
LABEL = "org.mlperf-repro.test-image"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-numpy", "libopenblas0-pthread")
TRIM = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
        "usr/share/info", "usr/share/locale")
BASE_RECIPE = 1  # bump when the base recipe changes in a way its inputs do not show
CODE_DIR = "workspace/code"
SITE_PACKAGES = "usr/lib/python3/dist-packages"
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The docker-launched smoke platform of the test catalog (shaped like AMD's MI355X_1x8x1).
SYSTEM = "CPU_1x1x2"


def cache_dir() -> Path:
    """$MLPERF_REPRO_TEST_CACHE, else $XDG_CACHE_HOME/mlperf-repro-test, else
    /var/cache/mlperf-repro-test for root, else ~/.cache/mlperf-repro-test."""
    if os.environ.get("MLPERF_REPRO_TEST_CACHE"):
        return Path(os.environ["MLPERF_REPRO_TEST_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "mlperf-repro-test"
    if os.geteuid() == 0:
        return Path("/var/cache/mlperf-repro-test")
    return Path.home() / ".cache" / "mlperf-repro-test"


def debian_mirror() -> str:
    """The Debian mirror apt uses here ($MLPERF_REPRO_TEST_DEBIAN_MIRROR overrides it)."""
    if os.environ.get("MLPERF_REPRO_TEST_DEBIAN_MIRROR"):
        return os.environ["MLPERF_REPRO_TEST_DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for stanza in path.read_text(errors="replace").split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines()
                          if ":" in line and not line.startswith("#"))
            suites = fields.get("Suites", "").split()
            uris = fields.get("URIs", "").split()
            if uris and SUITE in suites and "deb" in fields.get("Types", "deb").split():
                return uris[0]
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            words = [w for w in words if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return "http://deb.debian.org/debian"


def _base_key() -> str:
    recipe = {"suite": SUITE, "variant": "minbase", "packages": PACKAGES, "trim": TRIM,
              "recipe": BASE_RECIPE}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def base_tarball_path(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / f"base-{SUITE}-{_base_key()}.tar"


def _added_files() -> list[tuple[str, Path]]:
    """(path in the image, file on this machine) of everything laid over the base."""
    import mlperf_logging
    files = [(f"{CODE_DIR}/{name}", ROOT / "mlperf_repro" / "smoke" / name)
             for name in ("train.py", "run_and_time.sh")]
    package = Path(mlperf_logging.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            files.append((f"{SITE_PACKAGES}/mlperf_logging/{path.relative_to(package)}", path))
    return files


def image_key() -> str:
    digest = hashlib.sha256(_base_key().encode())
    for arcname, path in _added_files():
        digest.update(b"\0" + arcname.encode() + b"\0" + path.read_bytes())
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
    return digest.hexdigest()[:16]


def skip_reason(cache: Path | None = None) -> str | None:
    """Why the image cannot be built or loaded here, or None."""
    if os.geteuid() != 0:
        return "needs root (rootful podman; debootstrap for the test image)"
    missing = docker_wrapper.missing_commands()
    if not base_tarball_path(cache).exists() and not shutil.which("debootstrap"):
        missing.append("debootstrap")
    if missing:
        return ("not installed: %s (apt-get install -y --no-install-recommends podman runc "
                "debootstrap)" % ", ".join(missing))
    if importlib.util.find_spec("mlperf_logging") is None:
        return "mlperf_logging is not importable here (it is copied into the image)"
    return None


@contextlib.contextmanager
def _locked(cache: Path):
    """One builder at a time per cache directory (test sessions may run side by side)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _say(log, message):
    if log:
        log(message)


def build_base(cache: Path, log=None) -> Path:
    """debootstrap'd minbase + python3 + numpy, trimmed, as a tarball (cached)."""
    target = base_tarball_path(cache)
    if target.exists():
        return target
    work = cache / f"build-{os.getpid()}"
    rootfs = work / "rootfs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    try:
        mirror = debian_mirror()
        argv = ["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), SUITE,
                str(rootfs), mirror]
        with open(work / "debootstrap.log", "wb") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
        if proc.returncode != 0 or not (rootfs / "usr" / "bin" / "python3").exists():
            tail = (work / "debootstrap.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"debootstrap from {mirror} failed ({proc.returncode}):\n{tail}")
        for sub in TRIM:
            for child in (rootfs / sub).glob("*"):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        partial = work / "base.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(partial), "."],
                       check=True, capture_output=True)
        os.replace(partial, target)
        for old in cache.glob(f"base-{SUITE}-*.tar"):
            if old != target:
                old.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _say(log, f"built {target.name} in {time.monotonic() - started:.1f} s (debootstrap from {mirror})")
    return target


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def image_tarball(cache: Path | None = None, log=None) -> Path:
    """The image's rootfs tarball: the base plus mlperf_logging and the smoke code (cached)."""
    cache = cache or cache_dir()
    key = image_key()
    target = cache / f"smoke-{key}.tar"
    with _locked(cache):
        if target.exists():
            return target
        base = build_base(cache, log)
        started = time.monotonic()
        partial = cache / f".smoke-{key}.{os.getpid()}.tar"
        shutil.copyfile(base, partial)
        with tarfile.open(partial, "a", format=tarfile.GNU_FORMAT) as tar:
            dirs = set()
            for arcname, path in _added_files():
                parts = arcname.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    directory = "/".join(parts[:i])
                    if directory in dirs or directory in ("usr", "usr/lib", "usr/lib/python3",
                                                          SITE_PACKAGES):
                        continue
                    dirs.add(directory)
                    info = tarfile.TarInfo("./" + directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(_root_owned(info))
                info = _root_owned(tar.gettarinfo(str(path), "./" + arcname))
                info.mode = 0o755 if os.access(path, os.X_OK) or arcname.endswith(".sh") else 0o644
                with open(path, "rb") as handle:
                    tar.addfile(info, handle)
        os.replace(partial, target)
        for old in cache.glob("smoke-*.tar"):
            if old != target:
                old.unlink()
        _say(log, f"built {target.name} in {time.monotonic() - started:.1f} s")
    return target


def image_store(cache: Path | None = None) -> "docker_wrapper.PodmanDocker":
    """The cached image store (a podman store under the cache directory; holds only images).

    Test sessions run their containers in stores of their own and see this one as a read-only
    additional image store, so the image is imported once, not once per session (an import
    takes about 5 s here).
    """
    return docker_wrapper.PodmanDocker((cache or cache_dir()) / "podman")


def load_image(store: "docker_wrapper.PodmanDocker | None" = None, image: str = IMAGE,
               log=None) -> "docker_wrapper.PodmanDocker":
    """Make sure ``store`` (default :func:`image_store`) holds this exact image; return it."""
    cache = cache_dir()
    store = store or image_store(cache)
    key = image_key()
    with _locked(cache):
        store.setup()
        if store.image_label(image, LABEL) == key:
            return store
    tar = image_tarball(cache, log=log)
    with _locked(cache):
        if store.image_label(image, LABEL) != key:
            started = time.monotonic()
            store.run("import", "--quiet", "--change", f"LABEL {LABEL}={key}",
                      "--change", "WORKDIR /workspace/code", "--change", 'CMD ["/bin/bash"]',
                      "--change", f"ENV PATH={PATH_ENV}", str(tar), image, timeout=600)
            store.run("image", "prune", "--force", check=False)  # the previous image, if any
            _say(log, f"imported {image} in {time.monotonic() - started:.1f} s")
    return store


def write_test_catalog(path: Path, system: str = SYSTEM) -> Path:
    """The packaged catalog plus ``system``: the smoke benchmark launched with docker from IMAGE.

    The packaged catalog is read, never changed. ``PYTHON=python3`` is part of the platform's
    config: the campaign's own PYTHON is the node's interpreter path (for the runner and the
    runtime-none smoke job), which does not exist inside the image. The smoke benchmark's own
    learning rate is kept: at SMOKE_LR=0.01 about one seed in 40 plateaus and aborts (a flaky test).
    """
    import yaml
    data = yaml.safe_load((ROOT / "mlperf_repro" / "catalog.yml").read_text())
    data = copy.deepcopy(data)
    smoke = data["benchmarks"]["smoke"]
    smoke["image"] = IMAGE
    smoke["platforms"][system] = {
        "gpu": "none",
        "launch": "docker",
        "provenance": "tests/infra/image.py: the smoke benchmark in a container, AMD's single-node docker flow",
        "env": {"DGXSYSTEM": system, "MLLOG_SUBMISSION_PLATFORM": "CPU", "SMOKE_DEVICE": "cpu",
                "PYTHON": "python3"},
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
