"""A ``docker`` command backed by rootful podman, for the docker launch path in tests.

    docker = PodmanDocker("/tmp/mlperf-docker-xyz").setup()
    env = docker.env()                      # PATH with the wrapper's directory first
    docker.run("ps", "-a")                  # CompletedProcess of `docker ps -a`
    docker.containers()                     # names of every container in its store
    docker.teardown()                       # removes its containers, its store, its files

``bin/docker`` is a shell script that execs ``/usr/bin/podman`` with a configuration of its own
(``CONTAINERS_CONF`` and ``CONTAINERS_STORAGE_CONF``, both under ``base``), so the machine's
podman setup and ``/etc`` are never touched and concurrent test sessions never see each other's
containers. What it absorbs (see ../shared/testinfra/05-*.sh, where these were found):

- crun fails on this kind of machine ("cgroups in hybrid mode not supported"): runtime ``runc``;
- root lacks CAP_SYS_RESOURCE, so podman's default rlimits (nofile/nproc 1048576) cannot be
  set: default ulimits within root's hard limits (nofile = ``ulimit -Hn``, nproc 4096);
- for the same reason an explicit ``--ulimit`` above the caller's hard limit is refused
  (AMD's multi-node launcher asks for ``--ulimit memlock=-1:-1 --ulimit nofile=1048576:1048576``).
  This is a test stand-in for Docker, not Docker: on ``run`` and ``create`` it *clamps* each
  ``--ulimit NAME=SOFT[:HARD]`` to the hard limit of the calling process (``/proc/self/limits``;
  -1 and values above it become that limit; a limit that is unlimited there is passed as
  written), so the vendor's script runs unchanged and the container gets the most this machine
  allows. And since podman drops its configured default ulimits once any ``--ulimit`` is given,
  the defaults above are added for the names the command did not set. Every ``--ulimit`` on the
  command line is treated so (a container command taking a ``--ulimit`` argument of its own
  would be rewritten too: no test has one);
- podman-docker's own ``/usr/bin/docker`` prints "Emulate Docker CLI using podman" on stderr,
  which would land in result files (runs are ``docker exec ... 2>&1``): the wrapper calls
  podman directly, so nothing is printed;
- ``docker run --init`` needs an init binary: catatonit (or tini) when installed, else a small
  POSIX-shell init (forwards SIGTERM/SIGINT to the command, reaps it) run by the image's
  ``/bin/sh``; without an init, ``docker rm -f`` of a ``sleep infinity`` container waits 10 s;
- no systemd: cgroupfs cgroup manager, file events logger, file locks (``/dev/shm`` may be
  shared with other stores and, in the netns hosts, with other hosts).

A store may see other stores' images read-only (``additional_image_stores``): tests/infra/image.py
keeps the test image in a cached store of its own, imported once, and every test store sees it.
For a network-namespace host (tests/infra/netns.py) :meth:`PodmanDocker.for_host` gives the
same wrapper with per-host storage under ``base`` (overlay-on-overlay fails on the host's
copy-on-write ``/var/lib``; ``/tmp`` is a plain file system shared by the hosts) that sees the
same image store, so an image imported once is usable on every host without copying;
:meth:`install_on_host` writes ``/usr/local/bin/docker`` into the host's own ``/usr/local``
overlay (this machine's ``/usr/local/bin/docker`` may be a Docker CLI with no daemon).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from pathlib import Path

PODMAN = "/usr/bin/podman"
INIT_CANDIDATES = ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit", "/usr/bin/tini",
                   "/usr/bin/tini-static", "/sbin/tini")

# `/run/podman-init -- CMD ARGS...` is how podman starts the container's command under --init.
SHELL_INIT = """#!/bin/sh
# Minimal container init for tests (podman's --init runs `init -- CMD...` as pid 1):
# forwards SIGTERM/SIGINT to the command and exits with its status.
[ "$1" = "--" ] && shift
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
    wait "$child"; rc=$?
    kill -0 "$child" 2>/dev/null || exit "$rc"
done
"""


# `--ulimit` of `run`/`create`, clamped to this process's hard limits (see the module docstring).
# Docker's ulimit names -> the rows of /proc/self/limits (same units as Docker's values).
ULIMIT_SCRIPT = r"""_limit_row() {
    case $1 in
        core) echo "Max core file size" ;; cpu) echo "Max cpu time" ;; data) echo "Max data size" ;;
        fsize) echo "Max file size" ;; locks) echo "Max file locks" ;;
        memlock) echo "Max locked memory" ;; msgqueue) echo "Max msgqueue size" ;;
        nice) echo "Max nice priority" ;; nofile) echo "Max open files" ;;
        nproc) echo "Max processes" ;; rss) echo "Max resident set" ;;
        rtprio) echo "Max realtime priority" ;; rttime) echo "Max realtime timeout" ;;
        sigpending) echo "Max pending signals" ;; stack) echo "Max stack size" ;;
        *) return 1 ;;
    esac
}
_clamp_ulimit() {  # NAME=SOFT[:HARD] -> the same within this process's hard limit
    local name=${1%%=*} values=${1#*=} row hard soft wanted
    row=$(_limit_row "$name") || { echo "$1"; return; }
    hard=$(awk -v row="$row" 'index($0, row) == 1 { n = split(substr($0, length(row) + 1), f, " "); print f[2]; exit }' /proc/self/limits)
    if [ -z "$hard" ] || [ "$hard" = unlimited ]; then echo "$1"; return; fi
    soft=${values%%:*}; wanted=${values#*:}
    [ "$soft" = -1 ] || [ "$soft" -gt "$hard" ] 2>/dev/null && soft=$hard
    [ "$wanted" = -1 ] || [ "$wanted" -gt "$hard" ] 2>/dev/null && wanted=$hard
    echo "$name=$soft:$wanted"
}
if [ "${1:-}" = run ] || [ "${1:-}" = create ] || { [ "${1:-}" = container ] && { [ "${2:-}" = run ] || [ "${2:-}" = create ]; }; }; then
    _args=() _named=" "
    while [ $# -gt 0 ]; do
        case $1 in
            --ulimit) _value=${2:-}; shift 2 || shift ;;
            --ulimit=*) _value=${1#--ulimit=}; shift ;;
            *) _args+=("$1"); shift; continue ;;
        esac
        _named+="${_value%%=*} "
        _args+=("--ulimit=$(_clamp_ulimit "$_value")")
    done
    if [ "$_named" != " " ]; then
        _extra=()
        for _default in @DEFAULTS@; do
            case $_named in *" ${_default%%=*} "*) ;; *) _extra+=("--ulimit=$_default") ;; esac
        done
        _sub=1; [ "${_args[0]}" = container ] && _sub=2
        set -- "${_args[@]:0:$_sub}" "${_extra[@]}" "${_args[@]:$_sub}"
    else
        set -- "${_args[@]}"
    fi
fi
"""


def _toml_list(items) -> str:
    return "[" + ", ".join('"%s"' % i for i in items) + "]"


def default_ulimits(nproc: int = 4096) -> list[str]:
    """nofile at root's hard limit (or 1048576 when unlimited), nproc capped at 4096."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 1048576 if hard == resource.RLIM_INFINITY else hard
    return [f"nofile={nofile}:{nofile}", f"nproc={nproc}:{nproc}"]


def missing_commands() -> list[str]:
    """What this wrapper needs and the machine lacks (podman and runc)."""
    missing = [] if os.access(PODMAN, os.X_OK) else ["podman"]
    if not (shutil.which("runc") or os.access("/usr/sbin/runc", os.X_OK)):
        missing.append("runc")
    return missing


class PodmanDocker:
    def __init__(self, base: str | os.PathLike, *, additional_image_stores=(),
                 init_path: str | None = None):
        self.base = Path(base)
        self.bin = self.base / "bin"
        self.docker = self.bin / "docker"
        self.graphroot = self.base / "storage"
        self.runroot = self.base / "run"
        self.containers_conf = self.base / "containers.conf"
        self.storage_conf = self.base / "storage.conf"
        self.additional_image_stores = [str(s) for s in additional_image_stores]
        self.init_path = init_path

    # -- set up ----------------------------------------------------------------------------
    def setup(self) -> "PodmanDocker":
        self.bin.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.graphroot.mkdir(exist_ok=True)
        self.runroot.mkdir(exist_ok=True)
        init = self.init_path or next((p for p in INIT_CANDIDATES if os.access(p, os.X_OK)), None)
        if init is None:
            init = str(self.base / "init.sh")
            Path(init).write_text(SHELL_INIT)
            os.chmod(init, 0o755)
        self.init_path = init
        self.containers_conf.write_text(f"""[containers]
default_ulimits = {_toml_list(default_ulimits())}
init_path = "{init}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{self.runroot}/libpod"
lock_type = "file"
""")
        stores = ""
        if self.additional_image_stores:
            stores = f"\n[storage.options]\nadditionalimagestores = {_toml_list(self.additional_image_stores)}\n"
        self.storage_conf.write_text(f"""[storage]
driver = "overlay"
graphroot = "{self.graphroot}"
runroot = "{self.runroot}/storage"
{stores}""")
        self.docker.write_text(self.script())
        os.chmod(self.docker, 0o755)
        return self

    def script(self) -> str:
        return (f"#!/bin/bash\n# docker -> rootful podman for tests (tests/infra/docker_wrapper.py)\n"
                f"CONTAINERS_CONF={self.containers_conf}\n"
                f"CONTAINERS_STORAGE_CONF={self.storage_conf}\n"
                f"export CONTAINERS_CONF CONTAINERS_STORAGE_CONF\n"
                + ULIMIT_SCRIPT.replace("@DEFAULTS@", " ".join(default_ulimits()))
                + f'exec {PODMAN} "$@"\n')

    @classmethod
    def for_host(cls, base: str | os.PathLike, images: "PodmanDocker") -> "PodmanDocker":
        """A wrapper for a netns host: storage of its own, ``images``' store shared read-only."""
        return cls(base, additional_image_stores=[images.graphroot, *images.additional_image_stores])

    def install_on_host(self, hosts, name: str) -> None:
        """Write ``/usr/local/bin/docker`` (this wrapper) inside netns host ``name``.

        Call :meth:`setup` first, and :meth:`teardown_on_host` before the host goes down (its
        containers' mounts live in the host's mount namespace).
        """
        proc = hosts.exec(name, ["sh", "-c", "mkdir -p /usr/local/bin && cat > /usr/local/bin/docker "
                                             "&& chmod 755 /usr/local/bin/docker"],
                          input=self.script())
        if proc.returncode != 0:
            raise RuntimeError(f"installing docker on {name} failed: {proc.stderr}")

    # -- use -------------------------------------------------------------------------------
    def env(self, env: dict | None = None) -> dict:
        env = dict(os.environ if env is None else env)
        env["PATH"] = f"{self.bin}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def run(self, *args, check: bool = True, timeout: float = 120, **kwargs):
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        proc = subprocess.run([str(self.docker), *args], timeout=timeout, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr}{proc.stdout}")
        return proc

    def containers(self, running_only: bool = False) -> list[str]:
        args = ["ps", "--format", "{{.Names}}"] + ([] if running_only else ["--all"])
        return self.run(*args).stdout.split()

    def events(self) -> list[tuple[str, str, str]]:
        """(type, status, name) of every event of this store so far, oldest first."""
        out = self.run("events", "--stream=false", "--format",
                       "{{.Type}}\t{{.Status}}\t{{.Name}}").stdout
        return [tuple(line.split("\t")[:3]) for line in out.splitlines() if line.count("\t") >= 2]

    def image_label(self, image: str, label: str) -> str | None:
        """The value of ``label`` on ``image`` in this store, or None when there is no image."""
        proc = self.run("image", "inspect", "--format", "{{ index .Labels \"%s\" }}" % label,
                        image, check=False)
        if proc.returncode != 0:
            return None
        return proc.stdout.strip()

    # -- tear down -------------------------------------------------------------------------
    def teardown_on_host(self, hosts, name: str) -> None:
        """Remove this store's containers from inside netns host ``name``."""
        hosts.exec(name, [str(self.docker), "rm", "--all", "--force", "--time", "0"], timeout=120)

    def teardown(self) -> None:
        """Remove every container of this store, then the store and the wrapper's files."""
        if self.docker.exists():
            names = self.run("ps", "--all", "--format", "{{.Names}}", check=False).stdout.split()
            if names:
                self.run("rm", "--force", "--time", "0", *names, check=False)
        # Not `podman system reset`: it also removes networks, which may be the machine's.
        for mount in _mounts_under(self.base):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            for line in handle:
                mnt = line.split()[1].replace("\\040", " ")
                if mnt.startswith(prefix):
                    found.append(mnt)
    except OSError:
        pass
    return sorted(found, key=len, reverse=True)
