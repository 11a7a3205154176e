"""Native downloader for the MLCommons R2 dataset bucket protocol.

The reproduction guide downloads datasets with ``bash <(curl -s .../mlc-r2-downloader.sh) URL.uri``,
which fetches the script itself from GitHub at run time. This module implements the same protocol
with the standard library only, so it runs on air-gapped nodes and is pinned with the project:

1. ``GET <name>.uri``: the body is the dataset's base URL (``base_url_override`` replaces it, for
   mirrors).
2. ``GET <directory of the .uri>/<name>.md5``: lines of ``<md5>  ./<relative path>``; a copy is kept
   in the destination as ``<name>.md5`` (as the original script does), so ``md5sum -c`` works there.
3. Every listed file is fetched from ``<base URL>/<relative path>`` into ``dest/<relative path>``
   by N worker threads; a partial file is kept as ``<path>.part`` and resumed with an HTTP Range
   request; transient failures (connection errors, timeouts, 408/425/429/5xx) are retried with
   exponential backoff; every file's md5 is computed while it streams and checked before the file
   takes its final name; a mismatch is fetched again a bounded number of times.
4. A manifest, ``dest/.mlperf-manifest.json``, records each verified file's size, md5, mtime and
   verification time, so a re-run compares the manifest with the file system (existence, size,
   mtime) and re-hashes nothing; ``deep_verify=True`` re-hashes everything.

Cloudflare Access (private datasets): the service-token headers ``CF-Access-Client-Id`` and
``CF-Access-Client-Secret`` (arguments, or the environment variables ``CF_ACCESS_CLIENT_ID`` and
``CF_ACCESS_CLIENT_SECRET`` as for the original script's ``-s``) are sent to the host of the
``.uri`` and to the base URL's host it names, never to another host (a ``base_url_override``
mirror gets them only if it is one of those hosts). A ``CF_Authorization`` cookie returned with
the ``.uri`` is then also sent as ``cf-access-token``. The secret and the token never appear in a
log line, an exception message, a progress record, the manifest or the result.

Nothing in the destination is deleted, except that a file whose md5 is wrong is replaced (the
replacement is downloaded to ``<path>.part`` and renamed over it only once it verifies).

Standard library only, Python >= 3.8: Ansible ships this file to the nodes as
``ansible.module_utils.r2_download``.
"""

from __future__ import annotations

import dataclasses
import datetime
import errno
import hashlib
import http.client
import json
import logging
import os
import posixpath
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

try:
    from ansible.module_utils.fileio import (changed_since, existing_ancestor, free_bytes,
                                             write_atomic)
except ImportError:  # the controller and tests
    from mlperf_repro.node.fileio import (changed_since, existing_ancestor, free_bytes,
                                          write_atomic)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

MANIFEST_NAME = ".mlperf-manifest.json"
MANIFEST_FORMAT = "mlperf-repro/dataset-manifest/v1"
PART_SUFFIX = ".part"
ENV_CLIENT_ID = "CF_ACCESS_CLIENT_ID"
ENV_CLIENT_SECRET = "CF_ACCESS_CLIENT_SECRET"
DEFAULT_WORKERS = 8
DEFAULT_RETRIES = 5
DEFAULT_MD5_RETRIES = 2
DEFAULT_TIMEOUT = 60.0
DEFAULT_CHUNK = 1 << 20
RETRY_STATUS = frozenset((408, 425, 429, 500, 502, 503, 504))
REDACTED = "********"
USER_AGENT = "mlperf-repro-r2-download/1"

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
class R2Error(Exception):
    """Base class of every error this module raises on purpose (messages are redacted)."""


class ProtocolError(R2Error):
    """The metadata (.uri, .md5 list) or an argument does not follow the protocol."""


class AuthRequiredError(R2Error):
    """The bucket refused access: Cloudflare Access credentials are missing or wrong."""


class HTTPFetchError(R2Error):
    """A request failed for good (a permanent status, or transient errors past the retries)."""

    def __init__(self, message, url=None, status=None):
        super().__init__(message)
        self.url = url
        self.status = status


class ChecksumError(R2Error):
    """A file's md5 stayed wrong after every allowed re-fetch."""

    def __init__(self, message, path=None, expected=None, actual=None):
        super().__init__(message)
        self.path = path
        self.expected = expected
        self.actual = actual


class InsufficientSpaceError(R2Error):
    """The destination file system has less free space than the download needs."""

    def __init__(self, message, path=None, needed=0, free=0):
        super().__init__(message)
        self.path = path
        self.needed = needed
        self.free = free


class BusyError(R2Error):
    """Another process is writing the same ``.part`` file."""


class _Transient(Exception):
    """Internal: a failure worth retrying (message already redacted)."""


class _Abort(Exception):
    """Internal: the run is being cancelled (a progress callback raised, or another worker failed)."""


class _RangeNotSatisfiable(Exception):
    """Internal: HTTP 416 for a resume request."""

    def __init__(self, total):
        super().__init__("416")
        self.total = total


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of the ``.md5`` list."""

    path: str  # relative, normalised, POSIX separators
    md5: str  # lower-case hex


@dataclasses.dataclass(frozen=True)
class Progress:
    """What a progress callback receives (never any URL header, never a secret).

    ``bytes_total`` is what this run has to transfer (it grows if a file must be fetched again),
    ``bytes_done`` what it has transferred; ``files_total`` counts every file of the list and
    ``files_done`` those already verified (skipped ones included).
    """

    event: str  # "start", "bytes", "file", "refetch", "done"
    bytes_done: int
    bytes_total: int
    files_done: int
    files_total: int
    path: str | None = None


@dataclasses.dataclass
class FetchResult:
    dataset: str
    dest: str
    base_url: str
    files_total: int = 0
    downloaded: int = 0
    skipped: int = 0
    refetched: int = 0
    resumed: int = 0
    bytes_transferred: int = 0
    bytes_total: int = 0  # size of the whole dataset, where the sizes are known
    bytes_needed: int = 0  # what this run had (or, in check mode, would have) to transfer
    seconds: float = 0.0
    changed: bool = False
    check_mode: bool = False
    would_download: list = dataclasses.field(default_factory=list)
    downloaded_files: list = dataclasses.field(default_factory=list)
    refetched_files: list = dataclasses.field(default_factory=list)
    manifest: str = ""

    def as_dict(self):
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
def _md5():
    try:  # FIPS-mode Pythons refuse md5 unless told it is not for security
        return hashlib.md5(usedforsecurity=False)
    except TypeError:  # Python < 3.9
        return hashlib.md5()


def _now_iso():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def _human(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.2f %s" % (n, unit))
        n /= 1024.0
    return "%d B" % n  # pragma: no cover


def safe_url(url):
    """A URL fit for messages: no user:password@, no query string (it may carry a signature)."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = p.hostname or ""
    if p.port:
        netloc = "%s:%d" % (netloc, p.port)
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "…" if p.query else "", ""))


def _host(url):
    p = urllib.parse.urlsplit(url)
    return ((p.hostname or "").lower(), p.port)


def _check_http_url(url, what):
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        raise ProtocolError("%s is not a URL: %r" % (what, safe_url(url))) from None
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ProtocolError(
            "%s must be an http(s) URL with a host, got %s" % (what, safe_url(url)))
    return p


def file_md5(path, chunk=DEFAULT_CHUNK, cancel=None):
    h = _md5()
    with open(path, "rb") as f:
        while True:
            if cancel is not None and cancel.is_set():
                raise _Abort()
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# The .md5 list
# --------------------------------------------------------------------------------------------
_MD5_LINE = re.compile(r"^(\\?)([0-9a-fA-F]{32})[ \t]+\*?(.+)$")


def _unescape_md5sum(name):
    out, i = [], 0
    while i < len(name):
        c = name[i]
        if c == "\\" and i + 1 < len(name):
            nxt = name[i + 1]
            out.append({"n": "\n", "r": "\r", "\\": "\\"}.get(nxt, nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def normalize_relpath(raw, where="path"):
    """``./a/b`` → ``a/b``; refuses absolute paths and anything that would leave the destination."""
    p = raw  # md5 lists use POSIX separators
    while p.startswith("./"):
        p = p[2:]
    if not p or "\x00" in p:
        raise ProtocolError("%s: empty or invalid file name %r" % (where, raw))
    if p.startswith("/"):
        raise ProtocolError("%s: absolute path %r is not allowed in an md5 list" % (where, raw))
    norm = posixpath.normpath(p)
    if norm in (".", "..") or norm.startswith("../") or "/../" in "/" + norm + "/":
        raise ProtocolError("%s: path %r leaves the destination directory" % (where, raw))
    return norm


def parse_md5_list(text, source="md5 list"):
    """Parse ``md5sum`` output (``<hex>  ./path``, ``<hex> *path``, ``\\``-escaped names).

    Returns a list of :class:`Entry` in list order, duplicates (same path and md5) removed.
    """
    entries, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _MD5_LINE.match(line)
        if not m:
            raise ProtocolError(
                "%s line %d: expected '<32 hex md5>  ./<relative path>', got %r"
                % (source, lineno, line[:120]))
        name = _unescape_md5sum(m.group(3)) if m.group(1) else m.group(3)
        path = normalize_relpath(name, "%s line %d" % (source, lineno))
        md5 = m.group(2).lower()
        if path in seen:
            if seen[path] != md5:
                raise ProtocolError("%s line %d: %s is listed twice with different md5s"
                                    % (source, lineno, path))
            continue
        if path == MANIFEST_NAME or path.endswith(PART_SUFFIX):
            raise ProtocolError("%s line %d: file name %r clashes with the downloader's own files"
                                % (source, lineno, path))
        seen[path] = md5
        entries.append(Entry(path, md5))
    if not entries:
        raise ProtocolError("%s lists no files" % source)
    return entries


# --------------------------------------------------------------------------------------------
# Credentials and HTTP
# --------------------------------------------------------------------------------------------
class Credentials:
    """Cloudflare Access service-token credentials; ``repr`` never shows the secret."""

    def __init__(self, client_id=None, client_secret=None):
        self.client_id = client_id or None
        self.client_secret = client_secret or None
        for label, value in (("client id", self.client_id), ("client secret", self.client_secret)):
            # http.client would quote a bad header value in its error: refuse it here, unquoted.
            if value and (any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
                          or value != value.strip()):
                raise ProtocolError("the Cloudflare Access %s contains whitespace at its ends or "
                                    "control characters (a stray newline?)" % label)
        if bool(self.client_id) != bool(self.client_secret):
            raise ProtocolError(
                "Cloudflare Access needs both the client id and the client secret "
                "(cf_access_client_id/cf_access_client_secret or %s/%s); only one was given"
                % (ENV_CLIENT_ID, ENV_CLIENT_SECRET))

    @classmethod
    def resolve(cls, client_id=None, client_secret=None, use_env=True):
        if use_env and not client_id and not client_secret:
            client_id = os.environ.get(ENV_CLIENT_ID)
            client_secret = os.environ.get(ENV_CLIENT_SECRET)
        return cls(client_id, client_secret)

    def __bool__(self):
        return bool(self.client_id and self.client_secret)

    def __repr__(self):
        return "Credentials(client_id=%r, client_secret=%s)" % (
            self.client_id, REDACTED if self.client_secret else None)

    __str__ = __repr__


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed (as the original script's --max-redirect=0): a redirect could
    carry the credential headers to another host, and Cloudflare Access answers a missing
    login with a redirect that must be reported, not followed."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Http:
    def __init__(self, creds, timeout, retries, backoff, backoff_max, cancel):
        self.creds = creds
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.cancel = cancel
        self.token = None
        self.cred_hosts = set()
        self._secrets = [s for s in (creds.client_secret,) if s]
        self._opener = urllib.request.build_opener(_NoRedirect())

    # -- secrets ---------------------------------------------------------------------------
    def add_secret(self, s):
        if s and s not in self._secrets:
            self._secrets.append(s)

    def redact(self, text):
        text = str(text)
        for s in self._secrets:
            if s:
                text = text.replace(s, REDACTED)
        return text

    # -- requests --------------------------------------------------------------------------
    def headers_for(self, url):
        h = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if self.creds and _host(url) in self.cred_hosts:
            h["CF-Access-Client-Id"] = self.creds.client_id
            h["CF-Access-Client-Secret"] = self.creds.client_secret
            if self.token:
                h["cf-access-token"] = self.token
        return h

    def open(self, url, method="GET", extra_headers=None):
        headers = self.headers_for(url)
        if extra_headers:
            headers.update(extra_headers)
        req = urllib.request.Request(url, headers=headers, method=method)
        try:
            return self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            try:
                raise self._classify(e, url, method) from None
            finally:
                e.close()
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", None) or e
            raise _Transient(self.redact("%s %s: %s" % (method, safe_url(url), reason))) from None

    def _classify(self, e, url, method):
        code = e.code
        hdrs = e.headers or {}
        where = "%s %s" % (method, safe_url(url))
        location = hdrs.get("Location", "") or ""
        cf_markers = (
            "/cdn-cgi/access/login" in location
            or ".cloudflareaccess.com" in location
            or hdrs.get("cf-access-required") is not None
            or "CF_Authorization" in (hdrs.get("WWW-Authenticate", "") or "")
            or "CF_AppSession=" in (hdrs.get("Set-Cookie", "") or ""))
        if code == 416:
            total = None
            m = re.match(r"bytes \*/(\d+)", hdrs.get("Content-Range", "") or "")
            if m:
                total = int(m.group(1))
            return _RangeNotSatisfiable(total)
        if code in (401, 403) or (cf_markers and 300 <= code < 400):
            if self.creds:
                msg = ("%s: HTTP %d: the bucket rejected the Cloudflare Access service-token "
                       "credentials that were given (client id and secret); check that they are "
                       "current and grant access to this dataset" % (where, code))
            else:
                msg = ("%s: HTTP %d: this dataset is protected%s; give Cloudflare Access "
                       "service-token credentials (cf_access_client_id and "
                       "cf_access_client_secret, or the environment variables %s and %s)"
                       % (where, code, " by Cloudflare Access" if cf_markers else "",
                          ENV_CLIENT_ID, ENV_CLIENT_SECRET))
            return AuthRequiredError(self.redact(msg))
        if code in RETRY_STATUS:
            return _Transient(self.redact("%s: HTTP %d %s" % (where, code, e.reason)))
        if 300 <= code < 400:
            return HTTPFetchError(self.redact(
                "%s: HTTP %d redirect to %s; redirects are not followed (use base_url_override "
                "to point at a mirror)" % (where, code, safe_url(location) if location else "?")),
                url=safe_url(url), status=code)
        if code == 404:
            return HTTPFetchError(self.redact("%s: HTTP 404 not found" % where),
                                  url=safe_url(url), status=code)
        return HTTPFetchError(self.redact("%s: HTTP %d %s" % (where, code, e.reason)),
                              url=safe_url(url), status=code)

    def sleep_backoff(self, attempt):
        delay = min(self.backoff_max, self.backoff * (2 ** (attempt - 1)))
        delay *= 0.5 + random.random() / 2
        if self.cancel.wait(delay):
            raise _Abort()

    def retrying(self, fn, what):
        attempt = 0
        while True:
            if self.cancel.is_set():
                raise _Abort()
            try:
                return fn()
            except _Transient as e:
                attempt += 1
                if attempt > self.retries:
                    raise HTTPFetchError("%s: giving up after %d attempts: %s"
                                         % (what, attempt, e)) from None
                log.warning("%s: %s; retry %d of %d", what, e, attempt, self.retries)
                self.sleep_backoff(attempt)

    def get_text(self, url, what, capture_token=False):
        def once():
            resp = self.open(url)
            try:
                body = resp.read()
                if capture_token:
                    self._capture_token(resp.headers)
            except (OSError, http.client.HTTPException) as e:
                raise _Transient(self.redact("GET %s: %s" % (safe_url(url), e))) from None
            finally:
                resp.close()
            try:
                return body.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("%s (%s) is not UTF-8 text" % (what, safe_url(url))) from None
        return self.retrying(once, what)

    def _capture_token(self, headers):
        if not self.creds:
            return
        for value in headers.get_all("Set-Cookie") or []:
            m = re.match(r"\s*CF_Authorization=([^;]+)", value)
            if m:
                self.token = m.group(1)
                self.add_secret(self.token)

    def head_size(self, url):
        """Content-Length by HEAD, or None when the server does not say."""
        def once():
            try:
                resp = self.open(url, method="HEAD")
            except HTTPFetchError as e:
                if e.status in (405, 501):  # HEAD not allowed: size unknown
                    return None
                raise
            try:
                cl = resp.headers.get("Content-Length")
            finally:
                resp.close()
            return int(cl) if cl and cl.isdigit() else None
        return self.retrying(once, "HEAD %s" % safe_url(url))


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------
def manifest_path(dest):
    return os.path.join(dest, MANIFEST_NAME)


def read_manifest(dest):
    """The whole manifest document (``{"format", "datasets": {name: {...}}}``), or an empty one."""
    path = manifest_path(dest)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable manifest %s (%s); files will be re-verified", path, e)
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT \
            or not isinstance(doc.get("datasets"), dict):
        log.warning("ignoring manifest %s of an unknown format; files will be re-verified", path)
        return {"format": MANIFEST_FORMAT, "datasets": {}}
    return doc


def _manifest_files(section):
    out = {}
    for rec in (section or {}).get("files", []) or []:
        try:
            out[rec["path"]] = {"size": int(rec["size"]), "md5": str(rec["md5"]).lower(),
                                "mtime_ns": int(rec["mtime_ns"]),
                                "verified_at": rec.get("verified_at")}
        except (KeyError, TypeError, ValueError):
            continue
    return out


class _DirLock:
    """flock on the destination directory while the manifest is read, merged and written, so two
    datasets fetched into one directory at once do not lose each other's sections. File systems
    without flock (some Lustre/NFS mounts) just go unlocked."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        if fcntl is None:
            return self
        try:
            self.fd = os.open(self.path, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            if self.fd is not None:
                os.close(self.fd)
            self.fd = None
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
        return False


#: Mode of the manifest and the md5 list kept with the data (explicit: never left to the umask).
FILE_MODE = 0o644


def _atomic_write(path, data):
    write_atomic(path, data, FILE_MODE)


# --------------------------------------------------------------------------------------------
# Source resolution
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    dataset: str
    uri: str | None
    md5_url: str
    base_url: str
    md5_text: str
    entries: list


def _dataset_name_from(url, suffix):
    name = posixpath.basename(urllib.parse.urlsplit(url).path)
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    return name


def resolve_source(http, uri=None, base_url=None, md5_url=None, base_url_override=None):
    """Follow the protocol's metadata: .uri → base URL, .md5 list → entries."""
    if uri:
        p = _check_http_url(uri, "uri")
        if not p.path.endswith(".uri"):
            raise ProtocolError("uri must be a dataset metadata URL ending in .uri, got %s"
                                % safe_url(uri))
        dataset = _dataset_name_from(uri, ".uri")
        if not dataset:
            raise ProtocolError("cannot tell the dataset name from %s" % safe_url(uri))
        if not md5_url:
            md5_url = urllib.parse.urlunsplit(
                (p.scheme, p.netloc, posixpath.join(posixpath.dirname(p.path), dataset + ".md5"),
                 "", ""))
        http.cred_hosts.add(_host(uri))
        body = http.get_text(uri, "dataset metadata %s" % safe_url(uri), capture_token=True)
        lines = [ln.strip() for ln in body.splitlines() if ln.strip()]
        if not lines:
            raise ProtocolError("%s is empty; it should hold the dataset's base URL"
                                % safe_url(uri))
        base_url = lines[0]
        _check_http_url(base_url, "the base URL in %s" % safe_url(uri))
        http.cred_hosts.add(_host(base_url))
    else:
        if not (base_url and md5_url):
            raise ProtocolError("give either uri (a .uri metadata URL) or both base_url and md5_url")
        _check_http_url(base_url, "base_url")
        dataset = _dataset_name_from(md5_url, ".md5")
        http.cred_hosts.add(_host(base_url))
    _check_http_url(md5_url, "md5_url")
    http.cred_hosts.add(_host(md5_url))
    if base_url_override:
        _check_http_url(base_url_override, "base_url_override")
        base_url = base_url_override  # credentials go there only if its host is already trusted
    md5_text = http.get_text(md5_url, "md5 list %s" % safe_url(md5_url))
    entries = parse_md5_list(md5_text, "md5 list %s" % safe_url(md5_url))
    return Source(dataset, uri, md5_url, base_url.rstrip("/"), md5_text, entries)


def file_url(base_url, relpath):
    return base_url.rstrip("/") + "/" + urllib.parse.quote(relpath, safe="/")


# --------------------------------------------------------------------------------------------
# The downloader
# --------------------------------------------------------------------------------------------
class _Download:
    """One download of a dataset: its files fetched, verified and recorded in the manifest."""

    def __init__(self, source, dest, http, workers, md5_retries, deep_verify, check_mode,
                 progress, chunk_size, manifest_interval):
        self.src = source
        self.dest = dest
        self.http = http
        self.workers = max(1, int(workers))
        self.md5_retries = max(0, int(md5_retries))
        self.deep = deep_verify
        self.check = check_mode
        self.progress_cb = progress
        self.chunk = max(4096, int(chunk_size))
        self.manifest_interval = manifest_interval
        self.cancel = http.cancel
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()  # one manifest write at a time, newest state last
        self.abort_exc = None
        self.res = FetchResult(dataset=source.dataset, dest=dest,
                               base_url=safe_url(source.base_url), check_mode=check_mode,
                               manifest=manifest_path(dest))
        self.res.files_total = len(source.entries)
        self.bytes_done = 0
        self.bytes_total = 0
        self.files_done = 0
        self.files = {}  # manifest records of this dataset, path → record
        self.files_before = {}
        self.manifest_dirty = False
        self.wrote = False
        self.check_adopted = 0  # check mode: verified files the manifest would newly record
        self.last_save = time.monotonic()

    # -- progress --------------------------------------------------------------------------
    def emit(self, event, path=None):
        if self.progress_cb is None:
            return
        with self.lock:
            p = Progress(event, self.bytes_done, self.bytes_total, self.files_done,
                         self.res.files_total, path)
        try:
            self.progress_cb(p)
        except BaseException as e:  # noqa: B036 - any exception from the callback stops the run
            with self.lock:
                if self.abort_exc is None:
                    self.abort_exc = e
            self.cancel.set()
            raise _Abort() from None

    def add_bytes(self, n, path):
        with self.lock:
            self.bytes_done += n
            self.res.bytes_transferred += n
        self.emit("bytes", path)

    # -- manifest --------------------------------------------------------------------------
    def load_manifest(self):
        doc = read_manifest(self.dest)
        section = doc["datasets"].get(self.src.dataset) or {}
        self.files = _manifest_files(section)
        self.files_before = {k: (v["size"], v["md5"], v["mtime_ns"]) for k, v in self.files.items()}

    def record(self, entry, target):
        st = os.stat(target)
        with self.lock:
            self.files[entry.path] = {"size": st.st_size, "md5": entry.md5,
                                      "mtime_ns": st.st_mtime_ns, "verified_at": _now_iso()}
            self.manifest_dirty = True
            self.files_done += 1
        self.maybe_save()

    def _section(self):
        listed = {e.path for e in self.src.entries}
        files = [dict(path=p, **{k: r[k] for k in ("size", "md5", "mtime_ns", "verified_at")})
                 for p, r in sorted(self.files.items()) if p in listed]
        return {
            "uri": safe_url(self.src.uri) if self.src.uri else None,
            "md5_url": safe_url(self.src.md5_url),
            "base_url": safe_url(self.src.base_url),
            "md5_list": self.src.dataset + ".md5",
            "updated": _now_iso(),
            "files": files,
        }

    def save_manifest(self):
        if self.check:
            return
        with self.save_lock:
            with self.lock:
                if not self.manifest_dirty:
                    return
                section = self._section()
                self.manifest_dirty = False
                self.last_save = time.monotonic()
            try:
                with _DirLock(self.dest):
                    doc = read_manifest(self.dest)
                    doc["datasets"][self.src.dataset] = section
                    doc["format"] = MANIFEST_FORMAT
                    _atomic_write(manifest_path(self.dest),
                                  (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
            except BaseException:
                with self.lock:
                    self.manifest_dirty = True  # try again at the next save
                raise

    def maybe_save(self):
        if time.monotonic() - self.last_save >= self.manifest_interval:
            self.save_manifest()

    def substance_changed(self):
        now = {k: (v["size"], v["md5"], v["mtime_ns"]) for k, v in self.files.items()}
        return now != self.files_before

    # -- the phases --------------------------------------------------------------------------
    def run(self):
        t0 = time.monotonic()
        try:
            self._run()
        except _Abort:
            if self.abort_exc is not None:
                raise self.abort_exc
            raise R2Error("download cancelled")  # pragma: no cover
        finally:
            if not self.check:
                try:
                    self.save_manifest()
                except OSError as e:  # never hide the real error behind this one
                    log.warning("could not write the manifest in %s: %s", self.dest, e)
            self.res.seconds = round(time.monotonic() - t0, 3)
        self.res.changed = bool(self.wrote or self.substance_changed())
        self.res.downloaded_files.sort()
        self.res.refetched_files.sort()
        return self.res

    def _target(self, entry):
        return os.path.join(self.dest, *entry.path.split("/"))

    def _run(self):
        entries = self.src.entries
        if os.path.isdir(self.dest):
            self.load_manifest()
        elif os.path.exists(self.dest):
            raise ProtocolError("dest %s exists and is not a directory" % self.dest)

        # Phase 1, local and fast: trust (size, mtime) against the manifest unless deep_verify.
        to_hash, to_fetch = [], []
        for e in entries:
            target = self._target(e)
            try:
                st = os.stat(target)
            except FileNotFoundError:
                to_fetch.append((e, False))
                continue
            rec = self.files.get(e.path)
            if (not self.deep and rec and rec["md5"] == e.md5 and rec["size"] == st.st_size
                    and rec["mtime_ns"] == st.st_mtime_ns):
                self.res.skipped += 1
                self.files_done += 1
                self.res.bytes_total += st.st_size
            else:
                to_hash.append(e)

        # Phase 2, local: hash the files the manifest cannot vouch for (all of them when deep).
        if to_hash:
            for e, actual in self._parallel(self._hash_one, to_hash):
                target = self._target(e)
                if actual == e.md5:
                    self.res.skipped += 1
                    self.res.bytes_total += os.path.getsize(target)
                    if self.check:
                        self.files_done += 1
                        self.check_adopted += 1
                    else:
                        self.record(e, target)
                else:
                    log.warning("%s: md5 %s, expected %s: it will be fetched again",
                                target, actual, e.md5)
                    to_fetch.append((e, True))

        # Phase 3, network: sizes by HEAD, then the free-space check.
        plan = []
        if to_fetch:
            sizes = dict(self._parallel(
                lambda item: self.http.head_size(file_url(self.src.base_url, item[0].path)),
                to_fetch, key=lambda item: item))
            for e, corrupt in to_fetch:
                plan.append((e, corrupt, sizes[(e, corrupt)]))
        needed = 0
        for e, corrupt, size in plan:
            target = self._target(e)
            part = target + PART_SUFFIX
            have = 0
            if os.path.exists(part):
                have = os.path.getsize(part)
            elif corrupt and size is not None and os.path.getsize(target) < size:
                have = os.path.getsize(target)  # looks like an interrupted wget --continue
            remaining = max(0, size - have) if size is not None and have <= size else (size or 0)
            needed += remaining
            self.res.would_download.append(e.path)
        known = [s for _, _, s in plan if s is not None]
        self.res.bytes_needed = needed
        self.bytes_total = needed
        self.res.bytes_total += sum(known)
        unknown = len(plan) - len(known)
        if unknown:
            log.warning("%d file(s) have no Content-Length; the free-space check leaves them out",
                        unknown)
        self.check_space(needed, len(plan))
        self.res.would_download.sort()
        if self.check:
            self.wrote = bool(plan or self.check_adopted or self._md5_list_differs())
            return

        # Phase 4: write.
        os.makedirs(self.dest, exist_ok=True)
        self._write_md5_list()
        self.emit("start")
        if plan:
            self._parallel(self._fetch_one, plan)
        self.emit("done")

    def check_space(self, needed, nfiles):
        free = free_bytes(self.dest)
        if needed > free:
            raise InsufficientSpaceError(
                "not enough free space for dataset %s in %s (file system of %s): %d file(s) need "
                "%d bytes (%s) more, only %d bytes (%s) are free; free %s or choose another dest"
                % (self.src.dataset, self.dest, existing_ancestor(self.dest), nfiles, needed, _human(needed), free,
                   _human(free), _human(needed - free)),
                path=self.dest, needed=needed, free=free)

    def _md5_list_differs(self):
        path = os.path.join(self.dest, self.src.dataset + ".md5")
        try:
            with open(path, "rb") as f:
                return f.read() != self.src.md5_text.encode("utf-8")
        except FileNotFoundError:
            return True

    def _write_md5_list(self):
        """Keep the list in dest as <name>.md5, as the original script does (md5sum -c works)."""
        if self._md5_list_differs():
            _atomic_write(os.path.join(self.dest, self.src.dataset + ".md5"),
                          self.src.md5_text.encode("utf-8"))
            self.wrote = True

    def _parallel(self, fn, items, key=None):
        """Run fn over items on the worker threads; the first error cancels the rest."""
        results = []
        if not items:
            return results
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items)),
                                thread_name_prefix="r2dl") as pool:
            futures = {pool.submit(fn, it): it for it in items}
            try:
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [f for f in done if f.exception() is not None]
                if failed:
                    self.cancel.set()
                    for f in pending:
                        f.cancel()
                    wait(pending)
                    errors = [f.exception() for f in futures
                              if f.done() and not f.cancelled() and f.exception() is not None]
                    real = [x for x in errors if not isinstance(x, _Abort)]
                    raise (real[0] if real else errors[0])
            except BaseException:
                self.cancel.set()
                for f in futures:
                    f.cancel()
                raise
            for f, it in futures.items():
                results.append(((key(it) if key else it), f.result()))
        return results

    def _hash_one(self, entry):
        return file_md5(self._target(entry), self.chunk, self.cancel)

    # -- one file --------------------------------------------------------------------------
    def _fetch_one(self, item):
        try:
            self._fetch_one_inner(item)
        except OSError as e:  # a local write/rename failure (ENOSPC, EIO, EACCES): not retried
            raise R2Error("%s: %s; what was downloaded so far is kept in the .part file"
                          % (self._target(item[0]), e)) from e

    def _fetch_one_inner(self, item):
        entry, corrupt, size = item
        target = self._target(entry)
        part = target + PART_SUFFIX
        url = file_url(self.src.base_url, entry.path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if corrupt and size is not None and not os.path.exists(part) \
                and os.path.getsize(target) < size:
            # A shorter file of the right name: what wget --continue leaves when interrupted.
            os.replace(target, part)
            self.wrote = True
            corrupt = False
        fd = os.open(part, os.O_RDWR | os.O_CREAT, 0o644)
        with os.fdopen(fd, "r+b") as f:
            self._lock_part(f, part)
            mismatches = 0
            resumed_counted = False
            while True:
                h = _md5()
                f.seek(0)
                while True:  # hash what the .part already holds
                    if self.cancel.is_set():
                        raise _Abort()
                    b = f.read(self.chunk)
                    if not b:
                        break
                    h.update(b)
                have = f.tell()
                if size is not None and have > size:
                    log.warning("%s is larger than the remote file; starting it again", part)
                    f.seek(0)
                    f.truncate(0)
                    h, have = _md5(), 0
                if have and not resumed_counted and (size is None or have < size):
                    with self.lock:
                        self.res.resumed += 1
                    resumed_counted = True
                    log.info("%s: resuming at byte %d", entry.path, have)
                if size is None or have < size:
                    h, size = self._stream(url, entry, f, h, size)
                actual = h.hexdigest()
                if actual == entry.md5:
                    break
                mismatches += 1
                if mismatches > self.md5_retries:
                    raise ChecksumError(
                        "%s: md5 %s, expected %s, after %d download(s); the partial file is kept "
                        "as %s (the md5 list, the bucket or the network is corrupting the data)"
                        % (entry.path, actual, entry.md5, mismatches, part),
                        path=entry.path, expected=entry.md5, actual=actual)
                log.warning("%s: md5 %s, expected %s; fetching it again (%d of %d)",
                            entry.path, actual, entry.md5, mismatches, self.md5_retries)
                corrupt = True
                f.seek(0)
                f.truncate(0)
                with self.lock:
                    if size:
                        self.bytes_total += size
                self.emit("refetch", entry.path)
            f.flush()
            os.fsync(f.fileno())
            os.replace(part, target)  # replaces a corrupt file only now, once this one verified
            self.wrote = True
        with self.lock:
            if corrupt:
                self.res.refetched += 1
                self.res.refetched_files.append(entry.path)
            else:
                self.res.downloaded += 1
                self.res.downloaded_files.append(entry.path)
        self.record(entry, target)
        self.emit("file", entry.path)

    def _lock_part(self, f, part):
        if fcntl is None:
            return
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusyError("%s is being written by another process; run one download of a "
                            "dataset into a directory at a time" % part) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise

    def _stream(self, url, entry, f, h, size):
        """Append the rest of the file to f (positioned at its end), with retries.

        Returns (md5 state, size). Every retry resumes from what is already in the file."""
        attempt = 0
        while True:
            if self.cancel.is_set():
                raise _Abort()
            have = f.tell()
            headers = {"Range": "bytes=%d-" % have} if have else None
            try:
                try:
                    resp = self.http.open(url, extra_headers=headers)
                except _RangeNotSatisfiable as e:
                    if e.total is not None and e.total == have:
                        return h, have  # the .part is complete already
                    log.warning("%s: the server refused the range from byte %d; starting again",
                                entry.path, have)
                    f.seek(0)
                    f.truncate(0)
                    h = _md5()
                    continue
                try:
                    status = resp.status
                    clen = resp.headers.get("Content-Length")
                    clen = int(clen) if clen and clen.isdigit() else None
                    if have and status == 206:
                        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)",
                                     resp.headers.get("Content-Range", "") or "")
                        if not m or int(m.group(1)) != have:
                            raise HTTPFetchError(self.http.redact(
                                "GET %s: asked for bytes from %d, the server answered Content-Range "
                                "%r" % (safe_url(url), have, resp.headers.get("Content-Range"))),
                                url=safe_url(url), status=206)
                        if m.group(3) != "*":
                            size = int(m.group(3))
                    elif have:  # 200: the server ignored the Range header; start over
                        log.warning("%s: the server ignored the Range request; starting again",
                                    entry.path)
                        f.seek(0)
                        f.truncate(0)
                        h = _md5()
                        have = 0
                        if clen is not None:
                            size = clen
                    elif clen is not None:
                        size = clen
                    got = 0
                    while True:
                        if self.cancel.is_set():
                            raise _Abort()
                        try:
                            b = resp.read(self.chunk)
                        except (OSError, http.client.HTTPException) as e:
                            raise _Transient(self.http.redact(
                                "GET %s: connection lost after %d bytes: %s"
                                % (safe_url(url), f.tell(), e))) from None
                        if not b:
                            break
                        f.write(b)  # an OSError here (ENOSPC, EIO) is not retried
                        h.update(b)
                        got += len(b)
                        self.add_bytes(len(b), entry.path)
                    expected = clen if clen is not None else None
                    if expected is not None and got < expected:
                        raise _Transient("GET %s: connection closed after %d of %d bytes"
                                         % (safe_url(url), got, expected))
                    f.flush()
                    if size is None:
                        size = f.tell()
                    return h, size
                finally:
                    resp.close()
            except _Transient as e:
                attempt += 1
                f.flush()
                if attempt > self.http.retries:
                    raise HTTPFetchError("%s: giving up after %d attempts: %s"
                                         % (entry.path, attempt, e), url=safe_url(url)) from None
                log.warning("%s: %s; retry %d of %d (resuming at byte %d)", entry.path, e,
                            attempt, self.http.retries, f.tell())
                self.http.sleep_backoff(attempt)


def fetch_dataset(dest, uri=None, base_url=None, md5_url=None, base_url_override=None,
                  workers=DEFAULT_WORKERS, retries=DEFAULT_RETRIES,
                  md5_retries=DEFAULT_MD5_RETRIES, timeout=DEFAULT_TIMEOUT,
                  cf_access_client_id=None, cf_access_client_secret=None, use_env=True,
                  deep_verify=False, check_mode=False, progress=None, backoff=1.0,
                  backoff_max=30.0, chunk_size=DEFAULT_CHUNK, manifest_interval=5.0):
    """Download (or, with ``check_mode``, plan) one dataset of an MLCommons R2 bucket.

    ``uri`` is the dataset's ``.uri`` metadata URL; alternatively give ``base_url`` and
    ``md5_url``. ``md5_url`` may also override the list's location next to a ``uri``.
    ``progress`` is called with :class:`Progress` records from the worker threads; an exception
    it raises stops the run (the ``.part`` files stay, a later run resumes them) and propagates.
    Returns a :class:`FetchResult`; raises :class:`R2Error` subclasses with messages that name
    the file, the URL (without credentials or query) and what was expected.
    """
    dest = os.path.abspath(os.path.expanduser(str(dest)))
    creds = Credentials.resolve(cf_access_client_id, cf_access_client_secret, use_env)
    cancel = threading.Event()
    http = _Http(creds, timeout, retries, backoff, backoff_max, cancel)
    try:
        source = resolve_source(http, uri=uri, base_url=base_url, md5_url=md5_url,
                                base_url_override=base_url_override)
        run = _Download(source, dest, http, workers, md5_retries, deep_verify, check_mode, progress,
                   chunk_size, manifest_interval)
        result = run.run()
    except Exception as e:  # one last pass in case a message quoted something it should not
        msg = http.redact(str(e))
        if msg != str(e):
            e.args = (msg,)
        raise
    log.info("%s: %d downloaded, %d re-fetched, %d already verified, %s transferred in %.1f s",
             result.dataset, result.downloaded, result.refetched, result.skipped,
             _human(result.bytes_transferred), result.seconds)
    return result


def _manifest_problem(target, rec):
    """None when ``target`` is still as the manifest recorded it (size, mtime), else why not."""
    return changed_since(target, rec.get("size"), rec.get("mtime_ns"), said="the manifest says",
                         since="it was verified", follow=True)


def verify_manifest(dest, dataset=None):
    """Quick check of a destination against its manifest only (existence, size, mtime).

    Returns a list of problems (empty when every recorded file is as recorded); no network."""
    dest = os.path.abspath(dest)
    doc = read_manifest(dest)
    problems = []
    names = [dataset] if dataset else sorted(doc["datasets"])
    if dataset and dataset not in doc["datasets"]:
        return ["%s: no manifest entry for dataset %s" % (manifest_path(dest), dataset)]
    for name in names:
        for path, rec in sorted(_manifest_files(doc["datasets"][name]).items()):
            problem = _manifest_problem(os.path.join(dest, *path.split("/")), rec)
            if problem:
                problems.append(problem)
    return problems


def dataset_state(dest, dataset, max_problems=20):
    """How much of ``dataset`` in ``dest`` is staged, from its md5 list kept with the data
    (``<dest>/<dataset>.md5``) and the manifest, without hashing or the network: every listed
    file must be recorded in the manifest as verified with the listed md5, and still have the
    recorded size and mtime (:func:`verify_manifest`'s check).

    Returns ``complete``, ``files`` (listed), ``verified``, ``bytes`` (of the verified files),
    ``problems`` (the first ``max_problems``) and ``problem_count``.
    """
    out = {"complete": False, "files": 0, "verified": 0, "bytes": 0, "problems": [],
           "problem_count": 0}

    def problem(text):
        out["problem_count"] += 1
        if len(out["problems"]) < max_problems:
            out["problems"].append(text)

    if not os.path.isdir(dest):
        problem("%s: not staged yet" % dest)
        return out
    section = read_manifest(dest)["datasets"].get(dataset)
    if not section:
        problem("%s: no manifest entry for %s" % (dest, dataset))
        return out
    list_path = os.path.join(dest, dataset + ".md5")
    try:
        with open(list_path, encoding="utf-8") as f:
            entries = parse_md5_list(f.read(), list_path)
    except FileNotFoundError:
        problem("%s: missing (the md5 list kept with the data)" % list_path)
        return out
    except (OSError, R2Error) as e:
        problem("%s: unreadable: %s" % (list_path, e))
        return out
    records = _manifest_files(section)
    out["files"] = len(entries)
    for e in entries:
        rec = records.get(e.path)
        target = os.path.join(dest, *e.path.split("/"))
        if rec is None or str(rec.get("md5", "")).lower() != e.md5:
            problem("%s: not verified yet" % target)
            continue
        text = _manifest_problem(target, rec)
        if text:
            problem(text)
        else:
            out["verified"] += 1
            out["bytes"] += rec["size"]
    out["complete"] = out["problem_count"] == 0
    return out


__all__ = [
    "AuthRequiredError", "BusyError", "ChecksumError", "Credentials", "Entry", "FetchResult",
    "HTTPFetchError", "InsufficientSpaceError", "MANIFEST_NAME", "Progress", "ProtocolError",
    "R2Error", "dataset_state", "fetch_dataset", "file_md5", "file_url", "normalize_relpath", "parse_md5_list",
    "read_manifest", "safe_url", "verify_manifest",
]
