"""The image stage (roles/image) for real with podman: pre-pulled from a registry, or loaded
from a tarball, and every node's digest recorded on the controller.

What runs for real: ansible-playbook's provision stage (``--tags image``) on inventory/local,
rootful podman (a store of its own under /tmp, the machine's untouched), and a registry: a
small HTTP server speaking the registry API's read side (``/v2/``, manifests, blobs) over an
OCI layout that podman itself saved. Its request log says what went over the wire. Skipped,
with the reason, unless root with podman.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

from tests.infra import image as test_image
from tests.infra.ansible_output import changed_tasks
from tests.infra.docker_wrapper import PODMAN, PodmanDocker

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REASON = ("needs root" if os.geteuid() != 0 else
          None if os.access(PODMAN, os.X_OK) else "needs podman")
pytestmark = [pytest.mark.integration, pytest.mark.skipif(REASON is not None, reason=REASON or "")]
REPO, TAG = "mlperf/tiny", "6.0"


class Podman(PodmanDocker):
    """A ``podman`` command with a store of its own, trusting the test registry over HTTP."""

    def __init__(self, base, registry=""):
        super().__init__(base)
        self.podman = self.bin / "podman"
        self.registries_conf = self.base / "registries.conf"
        self.registry = registry

    def setup(self):
        super().setup()
        self.registries_conf.write_text(
            f'[[registry]]\nlocation = "{self.registry}"\ninsecure = true\n' if self.registry else "")
        self.podman.write_text(self.script().replace(
            "export CONTAINERS_CONF", f"export CONTAINERS_REGISTRIES_CONF={self.registries_conf}\n"
                                      "export CONTAINERS_CONF", 1))
        self.podman.chmod(0o755)
        return self

    def inspect(self, ref):
        proc = self.run("image", "inspect", ref, check=False)
        return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


class Registry(http.server.ThreadingHTTPServer):
    """The registry API's pull side over one OCI layout (``podman save --format oci-dir``)."""

    def __init__(self, layout: Path):
        super().__init__(("127.0.0.1", 0), _RegistryHandler)
        self.layout, self.requests = layout, []
        index = json.loads((layout / "index.json").read_text())
        self.manifest = index["manifests"][0]

    @property
    def address(self):
        return "127.0.0.1:%d" % self.server_address[1]


class _RegistryHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_HEAD(self):
        self.do_GET(body=False)

    def do_GET(self, body=True):
        server = self.server
        server.requests.append((self.command, self.path))
        parts = self.path.split("/")
        if self.path == "/v2/":
            return self._send(b"{}", "application/json", body)
        if len(parts) >= 5 and parts[-2] == "manifests" and "/".join(parts[2:-2]) == REPO:
            ref = parts[-1]
            if ref in (TAG, server.manifest["digest"]):
                data = server.layout.joinpath("blobs", *server.manifest["digest"].split(":")).read_bytes()
                return self._send(data, server.manifest["mediaType"], body, server.manifest["digest"])
        if len(parts) >= 5 and parts[-2] == "blobs":
            blob = server.layout.joinpath("blobs", *parts[-1].split(":"))
            if blob.is_file():
                return self._send(blob.read_bytes(), "application/octet-stream", body, parts[-1])
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _send(self, data, content_type, body, digest=None):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if digest:
            self.send_header("Docker-Content-Digest", digest)
        self.end_headers()
        if body:
            self.wfile.write(data)


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base():
    path = Path(tempfile.mkdtemp(prefix="mlperf-image-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def source(base):
    """A one-file image in a store of its own, saved as an OCI layout and as a tarball."""
    store = Podman(base / "source").setup()
    rootfs = io.BytesIO()
    with tarfile.open(fileobj=rootfs, mode="w") as tar:
        data = b"mlperf-repro image role test\n"
        info = tarfile.TarInfo("etc/mlperf-image-test")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (base / "rootfs.tar").write_bytes(rootfs.getvalue())
    store.run("import", "--quiet", str(base / "rootfs.tar"), f"localhost/{REPO}:{TAG}")
    store.run("save", "--format", "oci-dir", "-o", str(base / "layout"), f"localhost/{REPO}:{TAG}")
    store.run("save", "-o", str(base / "image.tar"), f"localhost/{REPO}:{TAG}")
    yield store
    store.teardown()


@pytest.fixture(scope="module")
def registry(source, base):
    server = Registry(base / "layout")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def provision_image(base, podman, name, *args, ok=True, **extra):
    catalog = test_image.write_test_catalog(base / "catalog.yml")
    site = {
        "mlperf_system": test_image.SYSTEM, "validate_catalog_path": str(catalog),
        "mlperf_container_runtime": "podman", "mlperf_provision": True,
        "mlperf_local_root": str(base / name / "root"), "mlperf_results_dir": str(base / name / "results"),
        "image_runtime": str(podman.podman), "image_name": f"{podman.registry}/{REPO}:{TAG}",
        "image_pull_delay": 1, **extra,
    }
    argv = [str(BIN / "ansible-playbook"), "-i", "inventory/local", "site.yml", "--tags", "image",
            "-e", json.dumps(site), *args]
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert (proc.returncode == 0) == ok, proc.stdout[-6000:] + proc.stderr[-3000:]
    return proc, base / name / "results" / "image-digests.json"


def test_a_podman_site_pulls_the_image_and_records_its_digest(base, registry):
    podman = Podman(base / "node", registry=registry.address).setup()
    try:
        assert podman.inspect(f"{registry.address}/{REPO}:{TAG}") is None
        proc, digest_file = provision_image(base, podman, "pull")
        assert "image : Pull the benchmark image" in changed_tasks(proc.stdout), proc.stdout[-4000:]
        # podman asked the registry for the tag's manifest and got the layers
        assert ("GET", f"/v2/{REPO}/manifests/{TAG}") in registry.requests, registry.requests
        held = podman.inspect(f"{registry.address}/{REPO}:{TAG}")
        assert held is not None
        digests = json.loads(digest_file.read_text())
        assert set(digests) == {"local"}
        record = digests["local"]
        manifest_digest = registry.manifest["digest"]
        assert record == {"name": f"{registry.address}/{REPO}:{TAG}", "id": held["Id"],
                          "repo_digests": [f"{registry.address}/{REPO}@{manifest_digest}"],
                          "source": "registry", "runtime": "podman"}
        assert manifest_digest == "sha256:" + hashlib.sha256(
            (registry.layout / "blobs" / "sha256" / manifest_digest.split(":")[1]).read_bytes()).hexdigest()

        # a second run asks the registry again and changes nothing
        asked = len(registry.requests)
        again, _ = provision_image(base, podman, "pull")
        assert changed_tasks(again.stdout) == set(), again.stdout[-4000:]
        assert len(registry.requests) > asked
        assert json.loads(digest_file.read_text()) == digests
    finally:
        podman.teardown()


def test_a_podman_site_loads_the_image_from_a_tarball_without_the_registry(base, source, registry):
    podman = Podman(base / "node-tarball", registry=registry.address).setup()
    try:
        asked = len(registry.requests)
        proc, digest_file = provision_image(base, podman, "tarball", image_name=f"localhost/{REPO}:{TAG}",
                                            image_tarball=str(base / "image.tar"))
        changed = changed_tasks(proc.stdout)
        assert "image : Load the benchmark image from shared storage" in changed, proc.stdout[-4000:]
        assert "image : Pull the benchmark image" not in changed
        assert len(registry.requests) == asked   # nothing pulled
        record = json.loads(digest_file.read_text())["local"]
        assert record["id"] == source.inspect(f"localhost/{REPO}:{TAG}")["Id"]
        assert (record["source"], record["runtime"]) == (str(base / "image.tar"), "podman")
        again, _ = provision_image(base, podman, "tarball", image_name=f"localhost/{REPO}:{TAG}",
                                   image_tarball=str(base / "image.tar"))
        assert changed_tasks(again.stdout) == set(), again.stdout[-4000:]
    finally:
        podman.teardown()


def test_a_missing_runtime_is_named_before_anything_is_staged(base, registry):
    podman = Podman(base / "node-missing", registry=registry.address)   # never set up: no command
    proc, digest_file = provision_image(base, podman, "missing", "--check")
    assert "would pull" in proc.stdout and "(not installed yet)" in proc.stdout, proc.stdout[-4000:]
    assert not digest_file.exists()
    # for real: the play stops on the node, naming the variable, and records nothing
    proc, digest_file = provision_image(base, podman, "missing", ok=False)
    assert f"{podman.podman} (image_runtime, from mlperf_container_runtime) is not installed" in proc.stdout, \
        proc.stdout[-4000:]
    assert not digest_file.exists()
