"""Fake AMD GPU device nodes, so that ``--device /dev/kfd --device /dev/dri`` are accepted.

    devices = FakeGpuDevices().up()     # /dev/kfd, /dev/dri/card0, /dev/dri/renderD128
    devices.created                     # what up() made (nothing that already existed)
    devices.down()                      # removes only what up() made, newest first

The nodes are clones of ``/dev/null`` (character device 1:3, mode 0666): a container that opens
them reads nothing and writes nowhere. Root only. ``/dev`` is shared with the network-namespace
hosts of tests/infra/netns.py, so the same nodes serve them too.
"""

from __future__ import annotations

import os
import stat

DEVICES = ("/dev/kfd", "/dev/dri/card0", "/dev/dri/renderD128")


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (mknod of fake /dev/kfd and /dev/dri nodes)"
    return None


class FakeGpuDevices:
    def __init__(self, devices=DEVICES):
        self.devices = tuple(devices)
        self.created: list[str] = []

    def up(self) -> "FakeGpuDevices":
        try:
            for path in self.devices:
                parent = os.path.dirname(path)
                if not os.path.isdir(parent):
                    os.mkdir(parent, 0o755)
                    self.created.append(parent)
                if not os.path.lexists(path):
                    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
                    self.created.append(path)
                    os.chmod(path, 0o666)  # mknod's mode is filtered by the umask
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        while self.created:
            path = self.created.pop()
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass  # something else put a file there meanwhile: leave it

    def __enter__(self) -> "FakeGpuDevices":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
