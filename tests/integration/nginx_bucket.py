"""A real nginx on a loopback port standing in for an MLCommons R2 bucket.

The layout is the bucket's: ``metadata/<name>.uri`` (body: the dataset's base URL),
``metadata/<name>.md5`` (``<md5>  ./<path>`` lines) and ``datasets/<name>/<path>``. Everything
under ``/protected/`` answers 403 (with a ``cf-access-required`` header, as Cloudflare Access
marks its refusals) unless the request carries the ``CF-Access-Client-Id`` and
``CF-Access-Client-Secret`` headers given to :class:`NginxBucket`.

nginx runs in the foreground (``daemon off``) as a child of the test process, with its own prefix,
configuration, pid file and logs in a temporary directory; :meth:`NginxBucket.stop` ends that one
process (and its workers) by its pid. The access log is one JSON object a line (method, URI,
status, body bytes sent, Range header), never the credential headers, so tests can assert what
went over the wire: a 206 for a resume, no GET at all for a re-run.

Use the ``nginx_bucket`` fixture (module scope; skips with a reason when nginx is not installed),
or :class:`NginxBucket` as a context manager.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
CLIENT_ID = "test-client.access"
CLIENT_SECRET = "CANARY-s3cr3t-7f3a9c1e-do-not-print"

_CONF = """\
{user_line}
daemon off;
master_process on;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    types {{ text/plain uri md5 txt; }}
    log_format bucket escape=json
        '{{"method":"$request_method","uri":"$uri","status":$status,'
        '"bytes":$body_bytes_sent,"range":"$http_range","completion":"$request_completion"}}';
    access_log {prefix}/logs/access.log bucket;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    sendfile on;
    keepalive_timeout 5;
    server_tokens off;
    map_hash_bucket_size 256;
    map "$http_cf_access_client_id:$http_cf_access_client_secret" $cf_access_ok {{
        default 0;
        "{client_id}:{client_secret}" 1;
    }}
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{ }}
        location /protected/ {{
            if ($cf_access_ok = 0) {{
                add_header cf-access-required "true" always;
                return 403;
            }}
        }}
    }}
}}
"""


def find_nginx():
    for c in NGINX_CANDIDATES:
        path = shutil.which(c)
        if path:
            return path
    return None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    uri: str  # the .uri metadata URL
    md5_url: str
    base_url: str
    files: dict  # relative path -> bytes
    dir: Path  # where nginx serves the files from

    def url_path(self, rel: str) -> str:
        """The URI path nginx logs for one file of the dataset."""
        from urllib.parse import urlsplit
        return urlsplit(self.base_url).path.rstrip("/") + "/" + rel


@dataclasses.dataclass(frozen=True)
class Request:
    method: str
    uri: str
    status: int
    bytes: int
    range: str
    completion: str


class NginxBucket:
    def __init__(self, workdir: Path, client_id: str = CLIENT_ID,
                 client_secret: str = CLIENT_SECRET):
        self.nginx = find_nginx()
        if not self.nginx:
            raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
        self.prefix = Path(workdir)
        self.www = self.prefix / "www"
        self.client_id = client_id
        self.client_secret = client_secret
        self.proc = None
        self.port = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self):
        for d in ("www", "logs", "tmp", "conf"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        user_line = ""
        if os.geteuid() == 0:  # workers would otherwise drop to nobody, who cannot read tmp dirs
            user_line = "user %s;" % pwd.getpwuid(0).pw_name
        last_err = ""
        for _ in range(5):  # a free port can be taken between probing and binding: try again
            self.port = _free_port()
            conf = self.prefix / "conf" / "nginx.conf"
            conf.write_text(_CONF.format(user_line=user_line, prefix=self.prefix, port=self.port,
                                         www=self.www, client_id=self.client_id,
                                         client_secret=self.client_secret))
            errlog = self.prefix / "logs" / "error.log"
            stderr = open(self.prefix / "logs" / "stderr.log", "ab")
            try:
                self.proc = subprocess.Popen(
                    [self.nginx, "-p", str(self.prefix), "-c", str(conf), "-e", str(errlog)],
                    stdout=stderr, stderr=stderr, stdin=subprocess.DEVNULL)
            finally:
                stderr.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.02)
            if self.proc.poll() is None:
                self.stop()
            last_err = self._read(errlog) + self._read(self.prefix / "logs" / "stderr.log")
            self.proc = None
            if "Address already in use" not in last_err:
                break
        raise RuntimeError("nginx did not start: %s" % last_err[-2000:])

    @staticmethod
    def _read(path):
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT)  # graceful: the master stops its workers and exits
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- content ---------------------------------------------------------------------------
    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def add_dataset(self, name: str, files: dict, protected: bool = False,
                    md5_override: dict | None = None, bucket_dir: str = "datasets",
                    md5_text: str | None = None) -> Dataset:
        """Lay a dataset out in the bucket format; ``md5_override`` lies about some md5s."""
        top = "protected/" if protected else ""
        data_dir = self.www / top / bucket_dir / name
        meta_dir = self.www / top / "metadata"
        meta_dir.mkdir(parents=True, exist_ok=True)
        lines = []
        for rel, data in files.items():
            p = data_dir / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            md5 = (md5_override or {}).get(rel) or md5_hex(data)
            lines.append("%s  ./%s\n" % (md5, rel))
        base_url = "%s/%s%s/%s" % (self.base, top, bucket_dir, name)
        (meta_dir / (name + ".uri")).write_text(base_url + "\n")
        (meta_dir / (name + ".md5")).write_text(md5_text if md5_text is not None
                                                else "".join(lines))
        return Dataset(name=name, uri="%s/%smetadata/%s.uri" % (self.base, top, name),
                       md5_url="%s/%smetadata/%s.md5" % (self.base, top, name),
                       base_url=base_url, files=dict(files), dir=data_dir)

    # -- the access log --------------------------------------------------------------------
    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def mark(self) -> int:
        """A position in the access log; :meth:`requests` reads what came after it."""
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def requests(self, since: int = 0, settle: float = 0.15) -> list:
        """The requests logged after ``since``. nginx logs a request when it ends (an aborted
        one when it notices the client left), so wait until the log stops growing."""
        deadline = time.monotonic() + 3
        size = -1
        while time.monotonic() < deadline:
            now = self.mark()
            if now == size:
                break
            size = now
            time.sleep(settle)
        out = []
        with open(self.access_log, "rb") as f:
            f.seek(since)
            for line in f.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    d = json.loads(line)
                    out.append(Request(d["method"], d["uri"], int(d["status"]), int(d["bytes"]),
                                       d["range"], d["completion"]))
        return out


@pytest.fixture(scope="module")
def nginx_bucket(tmp_path_factory):
    """A started :class:`NginxBucket`, stopped at the end of the module."""
    if not find_nginx():
        pytest.skip("nginx is not installed: the bucket tests need a real HTTP server with byte "
                    "ranges (apt-get install -y nginx)")
    bucket = NginxBucket(tmp_path_factory.mktemp("nginx-bucket"))
    bucket.start()
    try:
        yield bucket
    finally:
        bucket.stop()
