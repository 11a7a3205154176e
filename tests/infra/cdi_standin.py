"""A stand-in CDI specification for ``nvidia.com/gpu=all``, so podman accepts the NVIDIA
platform's container option on a machine without NVIDIA GPUs.

    with CdiStandIn(tmp_path / "cdi-used") as cdi:   # writes /var/run/cdi/<name>.json
        ...                                          # podman run --device=nvidia.com/gpu=all ...
        cdi.containers()                             # ids of the containers it was applied to

What the NVIDIA Container Toolkit's ``nvidia-ctk cdi generate`` would describe (device nodes
/dev/nvidia0, /dev/nvidiactl, driver libraries) is stood in for by two device nodes that are the
host's ``/dev/null`` (nothing is created in /dev), an environment variable, and a
``createRuntime`` hook that appends the container's OCI state (its id) to a file on the host: the
test sees which containers podman gave the platform's devices. podman 4.3 reads CDI specifications
only from /etc/cdi and /var/run/cdi (containers.conf's cdi_spec_dirs is not honoured there), so
the file goes to /var/run/cdi, under a name of its own, held with a lock (two specifications of
the same device conflict) and removed on exit. Root only.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

CDI_DIR = Path("/var/run/cdi")
SPEC_NAME = "mlperf-repro-test-gpu-standin.json"
KIND = "nvidia.com/gpu"
#: The device nodes the stand-in puts in the container (host side: /dev/null).
DEVICE_NODES = ("/dev/nvidia0", "/dev/nvidiactl")
ENV_MARK = "MLPERF_REPRO_CDI_STANDIN=1"


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a CDI specification in /var/run/cdi)"
    if not shutil.which("podman"):
        return "needs podman (CDI devices)"
    return None


class CdiStandIn:
    def __init__(self, marker: str | os.PathLike, cdi_dir: str | os.PathLike = CDI_DIR):
        self.marker = Path(marker)
        self.cdi_dir = Path(cdi_dir)
        self.path = self.cdi_dir / SPEC_NAME
        self._lock = None

    def spec(self) -> dict:
        hook = f"cat >> {self.marker}; echo >> {self.marker}"
        return {
            "cdiVersion": "0.5.0",
            "kind": KIND,
            "devices": [{"name": "all", "containerEdits": {
                "deviceNodes": [{"path": p, "hostPath": "/dev/null"} for p in DEVICE_NODES]}}],
            "containerEdits": {
                "env": [ENV_MARK],
                "hooks": [{"hookName": "createRuntime", "path": "/bin/sh",
                           "args": ["sh", "-c", hook]}],
            },
        }

    def up(self) -> "CdiStandIn":
        self.cdi_dir.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.cdi_dir / (SPEC_NAME + ".lock"), "w")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        self.marker.write_text("")
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.spec(), indent=1))
        os.replace(tmp, self.path)
        return self

    def down(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def containers(self) -> list[str]:
        """Ids of the containers the stand-in devices were given to, in order."""
        ids = []
        decoder = json.JSONDecoder()
        text = self.marker.read_text()
        i = 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            state, i = decoder.raw_decode(text, i)
            ids.append(state["id"])
        return ids

    def __enter__(self) -> "CdiStandIn":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
