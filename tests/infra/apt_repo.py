"""Signed apt repositories standing in for AMD's and Docker's, built and served by the test.

    repos = StandInRepos(Path("/tmp/x/www")).build()        # dpkg-deb + apt-ftparchive + gpg
    with RepoServer(repos.root, "10.211.3.1") as server:   # http.server on the netns bridge
        server.url                                         # http://10.211.3.1:PORT
        server.requests                                    # [(client, request line, status)]

The layout is the real servers', so the roles' URL variables only change their host part (or,
through a proxy, not at all: requests for ``http://repo.radeon.com/...`` sent to the server as
a proxy are answered from the same tree):

    rocm/rocm.gpg.key                                   AMD's signing key (a throwaway one)
    rocm/apt/<rocm>/dists/noble/main/binary-amd64/      rocm, rocm-core, rocminfo, amd-smi-lib
    amdgpu/<amdgpu>/ubuntu/dists/noble/main/binary-amd64/   amdgpu-dkms, amdgpu-dkms-firmware
    linux/debian/gpg                                    Docker's signing key (another one)
    linux/debian/dists/bookworm/stable/binary-amd64/    docker-ce, docker-ce-cli, containerd.io,
                                                        docker-buildx-plugin
    extra/docker.io_<v>_amd64.deb                       a distribution package Docker conflicts with

Two ROCm releases (:data:`ROCM_RELEASES`), each with its own driver repository, so a test can
install the old one and upgrade. Every Release file is signed (InRelease and Release.gpg) with a
key generated for the test run, ``Origin: repo.radeon.com`` / ``Origin: Docker`` as the real
repositories carry (AMD's documented apt pin selects ``o=repo.radeon.com``).

What the stand-in packages install (nothing runs at install time but ``groupadd docker``):

* ``rocm-core``: ``/opt/rocm-<v>/.info/version`` (``X.Y.Z-BUILD``, the real file's form) and the
  ``/opt/rocm`` link; ``rocminfo`` and ``amd-smi-lib``: ``/opt/rocm-<v>/bin/rocminfo`` and
  ``amd-smi``, shell scripts printing recorded real outputs from ``tests/data/gpu-outputs``
  (``amd-smi list``: an 8 x MI300X node; ``amd-smi version --json``: the recorded ROCm 7.0.2
  document with ``rocm_version`` set to the package's; ``rocminfo``: a recorded MI300X agent).
  ``amd-smi static`` has no complete real recording: the stand-in answers it with an error, as
  the collector expects of an amd-smi that cannot (it then uses ``amd-smi list``). A node can
  replace a recorded output with its own "hardware" in ``/etc/amd-smi-standin/<name>`` (a node
  with GPUs missing: the recorded 3-GPU list).
* ``amdgpu-dkms``: ``/usr/src/amdgpu-<v>/dkms.conf`` only (no module is built).
* ``docker-ce-cli``: ``/usr/bin/docker``, a Python script answering ``version``, ``info``,
  ``ps``, ``pull``, ``image inspect``, ``images``, ``load`` and ``rmi`` with the real commands'
  output shapes; images live in ``/var/lib/docker/standin-images.json``. ``pull`` fails the
  next N times when ``/etc/docker-standin/pull-failures`` holds N (a flaky registry).

The files go to the real paths (``/usr/bin``, ``/opt``): the test hosts must have copy-on-write
``/usr`` (see :mod:`tests.infra.bare_node`), or installing would write to this machine.
"""

from __future__ import annotations

import dataclasses
import gzip
import http.server
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
GPU_OUTPUTS = HERE.parent / "data" / "gpu-outputs"
TOOLS = ("dpkg-deb", "apt-ftparchive", "gpg", "gpgconf")
APT_PACKAGES = "dpkg-dev apt-utils gnupg python3-apt"

ROCM_DIST = "noble"          # AMD publishes Ubuntu codenames only
DOCKER_DIST = "bookworm"     # the test hosts' own codename (this machine's)

# Recorded outputs the stand-in tools print (provenance in tests/data/gpu-outputs/SOURCES.tsv).
AMDSMI_LIST_MI300X_X8 = "amd-smi-list__MI300X-x8__rocm-6.1.2__1.txt"
AMDSMI_LIST_MI300X_3_OF_8 = "amd-smi-list-text-partial__MI300X__rocm-6.2-era__1.txt"
AMDSMI_VERSION_JSON = "amd-smi-version-json__unknown-gpu__rocm-7.0.2__secondhand.txt"
ROCMINFO_MI300X = "rocminfo-gpu-agent-partial__MI300X__rocm-6.3.3__1.txt"
LSPCI_MI300X_X8 = "lspci-d-1002-74a1-PP__MI300X-x8__n-a__1.txt"


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


@dataclasses.dataclass(frozen=True)
class RocmRelease:
    rocm: str        # 7.2.2
    amdgpu: str      # 30.30.2: the driver repository's version, not derivable from the ROCm one
    build: str       # the build number in /opt/rocm/.info/version

    @property
    def deb_version(self) -> str:
        """rocm-core's version form: 7.2.2.70202-<build>~24.04."""
        major, minor, patch = (int(p) for p in self.rocm.split("."))
        return f"{self.rocm}.{major * 10000 + minor * 100 + patch}-{self.build}~24.04"


OLD = RocmRelease(rocm="7.1.1", amdgpu="30.20.1", build="38")
NEW = RocmRelease(rocm="7.2.2", amdgpu="30.30.2", build="71")
ROCM_RELEASES = (OLD, NEW)
DOCKER_VERSION = "5:28.1.1-1~debian.12~bookworm"
CONTAINERD_VERSION = "1.7.27-1"
BUILDX_VERSION = "0.23.0-1~debian.12~bookworm"


# ---------------------------------------------------------------------------------------------
# GPG: a throwaway signing key per repository owner
# ---------------------------------------------------------------------------------------------
class SigningKey:
    """An ed25519 key in its own GnuPG home (gpg-agent is stopped by :meth:`close`)."""

    def __init__(self, home: Path, uid: str):
        self.home = home
        self.uid = uid
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        self._gpg("--quick-generate-key", uid, "ed25519", "sign", "never")

    def _gpg(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--yes",
                               "--pinentry-mode", "loopback", "--passphrase", "", *args],
                              check=True, capture_output=True, **kwargs)

    def armored_public(self) -> bytes:
        return self._gpg("--armor", "--export", self.uid).stdout

    def sign_release(self, release: Path) -> None:
        self._gpg("--local-user", self.uid, "--clearsign", "-o", str(release.parent / "InRelease"),
                  str(release))
        self._gpg("--local-user", self.uid, "--armor", "--detach-sign",
                  "-o", str(release.parent / "Release.gpg"), str(release))

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"],
                       check=False, capture_output=True)


# ---------------------------------------------------------------------------------------------
# Packages and repositories
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Package:
    name: str
    version: str
    description: str
    files: dict = dataclasses.field(default_factory=dict)      # path -> (bytes|str, mode)
    links: dict = dataclasses.field(default_factory=dict)      # path -> target
    depends: str = ""
    postinst: str = ""
    arch: str = "amd64"

    def build(self, workdir: Path, out: Path) -> Path:
        tree = workdir / f"{self.name}_{self.version.replace(':', '%')}"
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "DEBIAN").mkdir(parents=True)
        for path, (content, mode) in self.files.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
            os.chmod(target, mode)
        for path, dest in self.links.items():
            target = tree / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(dest, target)
        control = [f"Package: {self.name}", f"Version: {self.version}",
                   f"Architecture: {self.arch}", "Maintainer: mlperf-repro tests <tests@localhost>",
                   "Section: misc", "Priority: optional"]
        if self.depends:
            control.append(f"Depends: {self.depends}")
        control.append(f"Description: {self.description}\n mlperf-repro test stand-in, not the real package.")
        (tree / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
        if self.postinst:
            script = tree / "DEBIAN" / "postinst"
            script.write_text("#!/bin/sh\nset -e\n" + self.postinst + "\n")
            os.chmod(script, 0o755)
        out.mkdir(parents=True, exist_ok=True)
        deb = out / f"{self.name}_{self.version.split(':')[-1]}_{self.arch}.deb"
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "--build", str(tree),
                        str(deb)], check=True, capture_output=True)
        return deb


def publish(repo: Path, dist: str, component: str, packages: list[Package], key: SigningKey,
            origin: str, label: str, workdir: Path) -> None:
    """A signed apt repository under ``repo`` (pool/ + dists/<dist>/), as apt-ftparchive makes it."""
    pool = repo / "pool" / component
    for package in packages:
        package.build(workdir, pool)
    index = repo / "dists" / dist / component / "binary-amd64"
    index.mkdir(parents=True, exist_ok=True)
    listing = subprocess.run(["apt-ftparchive", "packages", f"pool/{component}"], cwd=repo,
                             check=True, capture_output=True).stdout
    (index / "Packages").write_bytes(listing)
    (index / "Packages.gz").write_bytes(gzip.compress(listing))
    options = {"Origin": origin, "Label": label, "Suite": dist, "Codename": dist,
               "Architectures": "amd64", "Components": component}
    argv = ["apt-ftparchive"]
    for field, value in options.items():
        argv += ["-o", f"APT::FTPArchive::Release::{field}={value}"]
    release = repo / "dists" / dist / "Release"
    text = subprocess.run(argv + ["release", f"dists/{dist}"], cwd=repo, check=True,
                          capture_output=True).stdout
    release.write_bytes(text)
    key.sign_release(release)


def _recorded(name: str) -> str:
    return (GPU_OUTPUTS / name).read_text()


AMDSMI = r"""#!/bin/sh
# amd-smi stand-in (mlperf-repro tests): prints recorded real outputs, see tests/infra/apt_repo.py
data=@DATA@
hw=/etc/amd-smi-standin
show() {
  for f in "$hw/$1" "$data/$1"; do [ -f "$f" ] && exec cat "$f"; done
  echo "amd-smi: no recorded output for 'amd-smi $2' in this stand-in" >&2; exit 2
}
case "$*" in
  "list --json"|"list") show list.txt "$*" ;;
  "version --json") show version.json "$*" ;;
  "static --json"|"static") show static.json "$*" ;;
  *) show none "$*" ;;
esac
"""

ROCMINFO = r"""#!/bin/sh
# rocminfo stand-in (mlperf-repro tests): prints a recorded real GPU agent
exec cat @DATA@/rocminfo.txt
"""

DOCKER = r'''#!/usr/bin/python3
"""docker stand-in (mlperf-repro tests, see tests/infra/apt_repo.py): the real CLI's outputs."""
import hashlib, json, os, sys, tarfile

STATE = "/var/lib/docker/standin-images.json"
FAILURES = "/etc/docker-standin/pull-failures"
VERSION = "@VERSION@"


def sha(text):
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def load():
    try:
        with open(STATE) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def save(images):
    os.makedirs(os.path.dirname(STATE), exist_ok=True)
    with open(STATE, "w") as handle:
        json.dump(images, handle, indent=1, sort_keys=True)


def normalize(ref):
    name, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
    return "%s:%s" % (name, tag), name, tag


def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def pull(ref):
    ref, name, tag = normalize(ref)
    try:
        with open(FAILURES) as handle:
            left = int(handle.read().strip() or 0)
    except (OSError, ValueError):
        left = 0
    if left > 0:
        with open(FAILURES, "w") as handle:
            handle.write(str(left - 1))
        fail('Error response from daemon: Get "https://registry-1.docker.io/v2/": '
             "net/http: request canceled while waiting for connection")
    images = load()
    digest = sha("manifest:" + ref)
    print("%s: Pulling from %s" % (tag, name))
    if ref in images:
        print("Digest: %s" % digest)
        print("Status: Image is up to date for %s" % ref)
    else:
        layer = sha("layer:" + ref)[7:19]
        print("%s: Pull complete" % layer)
        print("Digest: %s" % digest)
        print("Status: Downloaded newer image for %s" % ref)
        images[ref] = {"Id": sha("config:" + ref), "RepoTags": [ref],
                       "RepoDigests": ["%s@%s" % (name, digest)]}
        save(images)
    print("docker.io/%s" % ref)


def inspect(refs):
    images, out, missing = load(), [], []
    for ref in refs:
        key = normalize(ref)[0]
        found = images.get(key) or next((i for i in images.values() if i["Id"] == ref), None)
        if found:
            out.append(dict(found, Os="linux", Architecture="amd64"))
        else:
            missing.append(ref)
    print(json.dumps(out, indent=4))
    if missing:
        fail("Error: No such image: %s" % missing[0])


def load_tarball(path):
    try:
        with tarfile.open(path) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
    except (OSError, KeyError, ValueError, tarfile.TarError) as exc:
        fail("Error response from daemon: open %s: %s" % (path, exc))
    images = load()
    for entry in manifest:
        config = entry["Config"].split("/")[-1].replace(".json", "")
        for ref in entry.get("RepoTags") or []:
            images[normalize(ref)[0]] = {"Id": "sha256:" + config, "RepoTags": [ref],
                                         "RepoDigests": []}
            print("Loaded image: %s" % ref)
    save(images)


def main(argv):
    if not argv:
        fail("Usage:  docker [OPTIONS] COMMAND")
    cmd, rest = argv[0], argv[1:]
    if cmd == "version":
        if "--format" in rest:
            print(VERSION)
        else:
            print("Client: Docker Engine - Community\n Version:           %s\n\n"
                  "Server: Docker Engine - Community\n Engine:\n  Version:          %s" % (VERSION, VERSION))
    elif cmd == "info":
        print("Server Version: %s\nStorage Driver: overlay2\nLogging Driver: json-file" % VERSION)
    elif cmd == "ps":
        if "--format" not in rest and "-q" not in rest:
            print("CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES")
    elif cmd == "pull":
        pull([a for a in rest if not a.startswith("-")][0])
    elif cmd in ("inspect",) or (cmd == "image" and rest[:1] == ["inspect"]):
        args = rest[1:] if cmd == "image" else rest
        inspect([a for a in args if not a.startswith("-")])
    elif cmd == "images" or (cmd == "image" and rest[:1] == ["ls"]):
        print("REPOSITORY   TAG   IMAGE ID   CREATED   SIZE")
        for ref, image in sorted(load().items()):
            name, _, tag = ref.rpartition(":")
            print("%s   %s   %s" % (name, tag, image["Id"][7:19]))
    elif cmd == "load" or (cmd == "image" and rest[:1] == ["load"]):
        args = rest[1:] if cmd == "image" else rest
        for flag in ("--input", "-i"):
            if flag in args:
                return load_tarball(args[args.index(flag) + 1])
        fail("requested load from stdin, but stdin is empty")
    elif cmd == "rmi":
        images = load()
        for ref in rest:
            images.pop(normalize(ref)[0], None)
        save(images)
    else:
        fail("docker: '%s' is not a docker command (stand-in)" % cmd)


main(sys.argv[1:])
'''


def rocm_packages(release: RocmRelease) -> list[Package]:
    prefix = f"/opt/rocm-{release.rocm}"
    data = f"{prefix}/share/mlperf-standin"
    version = release.deb_version
    amdsmi_version = _recorded(AMDSMI_VERSION_JSON).replace('"rocm_version": "7.0.2"',
                                                            f'"rocm_version": "{release.rocm}"')
    assert f'"rocm_version": "{release.rocm}"' in amdsmi_version
    pin = f"(= {version})"
    return [
        Package("rocm-core", version, "ROCm core (version file)",
                files={f"{prefix}/.info/version": (f"{release.rocm}-{release.build}\n", 0o644)},
                links={"/opt/rocm": f"rocm-{release.rocm}"}),
        Package("rocminfo", version, "ROCm agent information tool", depends=f"rocm-core {pin}",
                files={f"{prefix}/bin/rocminfo": (ROCMINFO.replace("@DATA@", data), 0o755),
                       f"{data}/rocminfo.txt": (_recorded(ROCMINFO_MI300X), 0o644)}),
        Package("amd-smi-lib", version, "AMD System Management Interface", depends=f"rocm-core {pin}",
                files={f"{prefix}/bin/amd-smi": (AMDSMI.replace("@DATA@", data), 0o755),
                       f"{data}/list.txt": (_recorded(AMDSMI_LIST_MI300X_X8), 0o644),
                       f"{data}/version.json": (amdsmi_version, 0o644)}),
        Package("rocm", version, "ROCm meta package",
                depends=f"rocm-core {pin}, rocminfo {pin}, amd-smi-lib {pin}"),
    ]


def amdgpu_packages(release: RocmRelease) -> list[Package]:
    version = f"1:{release.amdgpu}-{release.build}~24.04"
    return [
        Package("amdgpu-dkms-firmware", version, "amdgpu firmware",
                files={f"/usr/src/amdgpu-{release.amdgpu}-firmware/README": ("stand-in\n", 0o644)}),
        Package("amdgpu-dkms", version, "amdgpu kernel driver (DKMS)",
                depends=f"amdgpu-dkms-firmware (= {version})",
                files={f"/usr/src/amdgpu-{release.amdgpu}/dkms.conf":
                       (f'PACKAGE_NAME="amdgpu"\nPACKAGE_VERSION="{release.amdgpu}"\n', 0o644)}),
    ]


def docker_packages() -> list[Package]:
    engine = DOCKER_VERSION.split(":")[1].split("-")[0]
    return [
        Package("containerd.io", CONTAINERD_VERSION, "An open and reliable container runtime",
                files={"/usr/bin/containerd": ("#!/bin/sh\necho 'containerd containerd.io "
                                               f"{CONTAINERD_VERSION.split('-')[0]}'\n", 0o755)}),
        Package("docker-ce-cli", DOCKER_VERSION, "Docker CLI",
                files={"/usr/bin/docker": (DOCKER.replace("@VERSION@", engine), 0o755)}),
        Package("docker-ce", DOCKER_VERSION, "Docker: the open-source application container engine",
                depends="docker-ce-cli, containerd.io",
                files={"/usr/bin/dockerd": ("#!/bin/sh\necho 'dockerd stand-in: no daemon' >&2\n"
                                            "exit 1\n", 0o755)},
                postinst="getent group docker >/dev/null || groupadd --system docker"),
        Package("docker-buildx-plugin", BUILDX_VERSION, "Docker Buildx cli plugin",
                files={"/usr/libexec/docker/cli-plugins/docker-buildx":
                       ("#!/bin/sh\necho 'github.com/docker/buildx v0.23.0'\n", 0o755)}),
    ]


class StandInRepos:
    """Builds every repository under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, work: Path | None = None):
        self.root = Path(root)
        self.work = Path(work) if work else self.root.parent / "apt-build"
        self.conflicting_deb: Path | None = None

    def build(self) -> "StandInRepos":
        self.root.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        amd = SigningKey(self.work / "gnupg-amd", "AMD ROCm stand-in <rocm@localhost>")
        docker = SigningKey(self.work / "gnupg-docker", "Docker stand-in <docker@localhost>")
        try:
            (self.root / "rocm").mkdir(exist_ok=True)
            (self.root / "rocm" / "rocm.gpg.key").write_bytes(amd.armored_public())
            for release in ROCM_RELEASES:
                publish(self.root / "rocm" / "apt" / release.rocm, ROCM_DIST, "main",
                        rocm_packages(release), amd, "repo.radeon.com", "ROCm", self.work)
                publish(self.root / "amdgpu" / release.amdgpu / "ubuntu", ROCM_DIST, "main",
                        amdgpu_packages(release), amd, "repo.radeon.com", "amdgpu", self.work)
            debian = self.root / "linux" / "debian"
            debian.mkdir(parents=True, exist_ok=True)
            (debian / "gpg").write_bytes(docker.armored_public())
            publish(debian, DOCKER_DIST, "stable", docker_packages(), docker, "Docker",
                    "Docker CE", self.work)
            self.conflicting_deb = Package(
                "docker.io", "20.10.24+dfsg1-1+b3", "Linux container runtime (distribution)",
                files={"/usr/share/doc/docker.io/README.standin": ("stand-in\n", 0o644)},
            ).build(self.work, self.root / "extra")
        finally:
            amd.close()
            docker.close()
        return self


# ---------------------------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------------------------
class _Handler(http.server.SimpleHTTPRequestHandler):
    server_version = "standin-repo"

    def translate_path(self, path):
        # a proxy request names the whole URL: serve its path from the same tree
        parts = urllib.parse.urlsplit(path)
        return super().translate_path(parts.path if parts.scheme else path)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.client_address[0], self.requestline, int(code)))


class RepoServer:
    """``root`` over HTTP on ``address`` (a thread of this process), as a server and as a proxy.

    A request line with an absolute URL (``GET http://repo.radeon.com/rocm/... HTTP/1.1``, what a
    client sends to a proxy) is answered from the same tree: the URL's path is the file's.
    """

    def __init__(self, root: Path, address: str = "127.0.0.1", port: int = 0):
        handler = lambda *a, **kw: _Handler(*a, directory=str(root), **kw)  # noqa: E731
        self.httpd = http.server.ThreadingHTTPServer((address, port), handler)
        self.httpd.daemon_threads = True
        self.httpd.requests = []
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="standin-repo",
                                       daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        return self.httpd.requests

    def start(self) -> "RepoServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> "RepoServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
