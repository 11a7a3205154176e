"""Signed apt repositories standing in for NVIDIA's CUDA and Container Toolkit repositories.

    repos = NvidiaRepos(Path("/tmp/x/www")).build()      # dpkg-deb + apt-ftparchive + gpg
    with RepoServer(repos.root, "10.211.3.1") as server:  # tests.infra.apt_repo's server
        ...

The layout is NVIDIA's (both are *flat* repositories, ``deb URL /``), so the role's URL variables
only change their host part:

    compute/cuda/repos/<distro>/x86_64/          Packages, Release (Origin NVIDIA, Label NVIDIA CUDA),
                                                 InRelease, Release.gpg, 3bf863cc.pub, the .debs
    libnvidia-container/gpgkey                   the toolkit repository's key (another throwaway one)
    libnvidia-container/stable/deb/amd64/        nvidia-container-toolkit

Two driver branches (:data:`BRANCHES`, 570 and 580), each with the packages NVIDIA's repository
names: ``nvidia-open`` (meta, exact-version dependencies: one version per branch), ``nvidia-kernel-open-dkms``
(``/usr/src/nvidia-<v>/dkms.conf``; no module is built), ``nvidia-driver-cuda`` (``nvidia-smi``)
and ``nvidia-fabricmanager-<branch>`` (``/usr/bin/nv-fabricmanager``).

The stand-in tools (recorded as stand-ins, never as real outputs):

* ``nvidia-smi -q -x`` prints a recorded real document (tests/data/gpu-outputs/nvidia: the H200
  recorded on this project's borrowed machine) with ``driver_version`` set to the package's, as the
  ROCm stand-in does with amd-smi's version, and ``persistence_mode`` set from the stand-in's state. Like the real tool, it fails until the node has rebooted since the
  kernel module was installed ("NVIDIA-SMI has failed because it couldn't communicate with the
  NVIDIA driver"): the module package records the boot id at install time
  (``/var/lib/standin/boot_id``, see tests.infra.bare_node). ``nvidia-smi -pm 1`` turns
  persistence mode on until the next reboot (the document then says Enabled).
* ``nvidia-ctk runtime configure --runtime=docker`` adds ``runtimes.nvidia`` to
  ``/etc/docker/daemon.json`` (the real tool's entry: path nvidia-container-runtime, no args) and
  prints the real tool's two INFO lines; ``nvidia-ctk cdi generate --output=F`` writes a minimal
  CDI spec naming the driver version (the real spec lists the driver's files).
"""

from __future__ import annotations

import dataclasses
import gzip
import subprocess
from pathlib import Path

from .apt_repo import GPU_OUTPUTS, Package, SigningKey

NVIDIA_OUTPUTS = GPU_OUTPUTS / "nvidia"
RECORDED_Q_X = "nvidia-smi-q-x__H200__driver-580.159.04__1.xml"
RECORDED_DRIVER = "580.159.04"
CUDA_DISTRO = "debian12"
CUDA_PATH = f"compute/cuda/repos/{CUDA_DISTRO}/x86_64"
TOOLKIT_PATH = "libnvidia-container/stable/deb/amd64"
TOOLKIT_VERSION = "1.17.8-1"


@dataclasses.dataclass(frozen=True)
class Branch:
    branch: str       # 580
    driver: str       # 580.82.07

    @property
    def deb_version(self) -> str:
        return f"{self.driver}-1"


OLD = Branch("570", "570.133.20")
NEW = Branch("580", "580.82.07")
BRANCHES = (OLD, NEW)

NVIDIA_SMI = r"""#!/bin/sh
# nvidia-smi stand-in (mlperf-repro tests, see tests/infra/nvidia_repo.py): a recorded real document
data=@DATA@
state=/var/lib/nvidia-standin
boot=$(cat /var/lib/standin/boot_id 2>/dev/null)
if [ "$(cat $state/module-boot-id 2>/dev/null)" = "$boot" ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running."
  exit 9
fi
mode=Disabled
[ "$(cat $state/persistence 2>/dev/null)" = "$boot" ] && mode=Enabled
case "$*" in
  "-q -x")
    exec sed "s#<persistence_mode>[A-Za-z]*</persistence_mode>#<persistence_mode>$mode</persistence_mode>#" $data/q-x.xml ;;
  "-pm 1")
    mkdir -p $state && echo "$boot" > $state/persistence
    echo "Enabled persistence mode for GPU 00000000:00:06.0."
    echo "All done." ;;
  *) echo "nvidia-smi stand-in: no recorded output for 'nvidia-smi $*'" >&2; exit 2 ;;
esac
"""

NVIDIA_CTK = r'''#!/usr/bin/python3
"""nvidia-ctk stand-in (mlperf-repro tests, see tests/infra/nvidia_repo.py)."""
import json, os, re, subprocess, sys

args = sys.argv[1:]


def option(name, default):
    for arg in args:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return default


if args[:2] == ["runtime", "configure"] and "--runtime=docker" in args:
    path = option("--config", "/etc/docker/daemon.json")
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        config = {}
    config.setdefault("runtimes", {})["nvidia"] = {"args": [], "path": "nvidia-container-runtime"}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(config, handle, indent=4)
    print("INFO[0000] Wrote updated config to %s" % path)
    print("INFO[0000] It is recommended that docker daemon be restarted.")
elif args[:2] == ["cdi", "generate"]:
    path = option("--output", None)
    smi = subprocess.run(["nvidia-smi", "-q", "-x"], capture_output=True, text=True)
    found = re.search(r"<driver_version>([^<]+)</driver_version>", smi.stdout)
    driver = found.group(1) if found else "unknown"
    spec = ("# stand-in CDI spec (mlperf-repro tests); the real one lists the driver's files\n"
            "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n- name: all\n"
            "containerEdits:\n  env:\n  - NVIDIA_DRIVER_VERSION=%s\n" % driver)
    if path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write(spec)
        print('INFO[0000] Generated CDI spec with version 0.5.0')
    else:
        sys.stdout.write(spec)
elif args[:1] == ["--version"]:
    print("NVIDIA Container Toolkit CLI version @VERSION@")
else:
    sys.stderr.write("nvidia-ctk stand-in: not handled: %s\n" % " ".join(args))
    sys.exit(2)
'''


def driver_packages(release: Branch) -> list[Package]:
    version = release.deb_version
    data = f"/usr/share/nvidia-standin/{release.driver}"
    document = (NVIDIA_OUTPUTS / RECORDED_Q_X).read_text()
    document = document.replace(f"<driver_version>{RECORDED_DRIVER}</driver_version>",
                                f"<driver_version>{release.driver}</driver_version>")
    assert f"<driver_version>{release.driver}</driver_version>" in document
    pin = f"(= {version})"
    return [
        Package("nvidia-kernel-open-dkms", version, "NVIDIA open kernel modules (DKMS)",
                files={f"/usr/src/nvidia-{release.driver}/dkms.conf":
                       (f'PACKAGE_NAME="nvidia"\nPACKAGE_VERSION="{release.driver}"\n', 0o644)},
                postinst="mkdir -p /var/lib/nvidia-standin\n"
                         "cat /var/lib/standin/boot_id > /var/lib/nvidia-standin/module-boot-id 2>/dev/null || true"),
        Package("nvidia-driver-cuda", version, "NVIDIA driver CUDA integration components (nvidia-smi)",
                files={"/usr/bin/nvidia-smi": (NVIDIA_SMI.replace("@DATA@", data), 0o755),
                       f"{data}/q-x.xml": (document, 0o644)}),
        Package("nvidia-open", version, "NVIDIA driver (open kernel modules), meta package",
                depends=f"nvidia-kernel-open-dkms {pin}, nvidia-driver-cuda {pin}"),
        Package(f"nvidia-fabricmanager-{release.branch}", version, "NVIDIA Fabric Manager",
                files={"/usr/bin/nv-fabricmanager": ("#!/bin/sh\necho 'Fabric Manager version is : "
                                                     f"{release.driver}'\n", 0o755)}),
    ]


def toolkit_packages() -> list[Package]:
    return [Package("nvidia-container-toolkit", TOOLKIT_VERSION, "NVIDIA Container Toolkit",
                    files={"/usr/bin/nvidia-ctk": (NVIDIA_CTK.replace("@VERSION@", TOOLKIT_VERSION.split("-")[0]),
                                                   0o755)})]


def publish_flat(directory: Path, packages: list[Package], key: SigningKey, origin: str, label: str,
                 workdir: Path) -> None:
    """A signed flat repository (``deb URL /``): the .debs, Packages and Release side by side."""
    directory.mkdir(parents=True, exist_ok=True)
    for package in packages:
        package.build(workdir, directory)
    listing = subprocess.run(["apt-ftparchive", "packages", "."], cwd=directory, check=True,
                             capture_output=True).stdout
    (directory / "Packages").write_bytes(listing)
    (directory / "Packages.gz").write_bytes(gzip.compress(listing))
    argv = ["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Origin={origin}",
            "-o", f"APT::FTPArchive::Release::Label={label}", "release", "."]
    release = subprocess.run(argv, cwd=directory, check=True, capture_output=True).stdout
    (directory / "Release").write_bytes(release)
    key.sign_release(directory / "Release")


class NvidiaRepos:
    """Builds both repositories under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, work: Path | None = None):
        self.root = Path(root)
        self.work = Path(work) if work else self.root.parent / "nvidia-apt-build"

    @property
    def cuda_dir(self) -> Path:
        return self.root / CUDA_PATH

    def build(self) -> "NvidiaRepos":
        self.work.mkdir(parents=True, exist_ok=True)
        cuda = SigningKey(self.work / "gnupg-cuda", "NVIDIA CUDA stand-in <cuda@localhost>")
        toolkit = SigningKey(self.work / "gnupg-toolkit", "NVIDIA container stand-in <ctk@localhost>")
        try:
            packages = [p for release in BRANCHES for p in driver_packages(release)]
            publish_flat(self.cuda_dir, packages, cuda, "NVIDIA", "NVIDIA CUDA", self.work)
            (self.cuda_dir / "3bf863cc.pub").write_bytes(cuda.armored_public())
            publish_flat(self.root / TOOLKIT_PATH, toolkit_packages(), toolkit, "github.com/NVIDIA/libnvidia-container",
                         "libnvidia-container", self.work)
            (self.root / "libnvidia-container" / "gpgkey").write_bytes(toolkit.armored_public())
        finally:
            cuda.close()
            toolkit.close()
        return self
