"""The native R2 bucket downloader against a real nginx (byte ranges, 403s, an access log).

Every assertion about the network is read from nginx's access log: a resume is a 206 for
``bytes=<part size>-``, a re-run is no file request at all.
"""

from __future__ import annotations

import collections
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # a plain `pytest` from the checkout, package not installed
    sys.path.insert(0, str(ROOT))

from mlperf_repro.node import fileio, r2_download  # noqa: E402
from mlperf_repro.node.r2_download import (  # noqa: E402
    MANIFEST_NAME, AuthRequiredError, ChecksumError, InsufficientSpaceError, fetch_dataset,
    read_manifest, verify_manifest)

try:
    from .nginx_bucket import CLIENT_ID, CLIENT_SECRET, md5_hex, nginx_bucket  # noqa: F401
except ImportError:  # tests/ is not a package: pytest put this folder on sys.path
    from nginx_bucket import CLIENT_ID, CLIENT_SECRET, md5_hex, nginx_bucket  # noqa: F401

pytestmark = pytest.mark.integration
MiB = 1 << 20


def blob(n, seed):
    return random.Random(seed).randbytes(n)


def file_gets(reqs, ds):
    """Requests for the dataset's files (anything but its metadata)."""
    prefix = ds.url_path("")
    return [r for r in reqs if r.uri.startswith(prefix)]


def tree(dest):
    return sorted(str(p.relative_to(dest)) for p in Path(dest).rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------
def test_full_download_then_rerun_transfers_nothing(nginx_bucket, tmp_path):
    files = {
        "c4-train.en_6_text_document.bin": blob(3 * MiB + 17, 1),
        "c4-train.en_6_text_document.idx": blob(40_000, 2),
        "nested/dir/name with space.json": b'{"a": 1}\n',
        "empty.txt": b"",
    }
    ds = nginx_bucket.add_dataset("tiny-c4", files)
    dest = tmp_path / "data"
    seen = []

    res = fetch_dataset(dest, uri=ds.uri, workers=4, progress=seen.append)

    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data, rel
    assert res.downloaded == len(files) and res.skipped == 0 and res.refetched == 0
    assert res.changed is True
    total = sum(len(d) for d in files.values())
    assert res.bytes_transferred == total == res.bytes_total
    assert not list(dest.rglob("*.part"))
    # The list is kept next to the data, as the original script does: md5sum -c works there.
    assert (dest / "tiny-c4.md5").read_text() == ds.dir.parent.parent.joinpath(
        "metadata", "tiny-c4.md5").read_text()
    if shutil.which("md5sum"):
        subprocess.run(["md5sum", "--quiet", "-c", "tiny-c4.md5"], cwd=dest, check=True)
    # The manifest: one record per file, matching the file system.
    section = read_manifest(dest)["datasets"]["tiny-c4"]
    recs = {r["path"]: r for r in section["files"]}
    assert set(recs) == set(files)
    for rel, data in files.items():
        st = os.stat(dest / rel)
        assert recs[rel]["size"] == len(data) and recs[rel]["md5"] == md5_hex(data)
        assert recs[rel]["mtime_ns"] == st.st_mtime_ns and recs[rel]["verified_at"]
    assert section["uri"] == ds.uri and section["base_url"] == ds.base_url
    # Progress: monotonic, ends at the totals.
    assert seen[-1].event == "done"
    assert (seen[-1].files_done, seen[-1].files_total) == (len(files), len(files))
    assert seen[-1].bytes_done == seen[-1].bytes_total == total
    done = [p.bytes_done for p in seen]
    assert done == sorted(done)

    # Re-run: the manifest vouches for every file; only the two metadata GETs reach the server.
    manifest_mtime = os.stat(dest / MANIFEST_NAME).st_mtime_ns
    mark = nginx_bucket.mark()
    t0 = time.monotonic()
    again = fetch_dataset(dest, uri=ds.uri, workers=4)
    elapsed = time.monotonic() - t0
    reqs = nginx_bucket.requests(mark)
    assert [(r.method, r.uri) for r in reqs] == [
        ("GET", "/metadata/tiny-c4.uri"), ("GET", "/metadata/tiny-c4.md5")]
    assert again.skipped == len(files) and again.downloaded == again.refetched == 0
    assert again.bytes_transferred == 0 and again.changed is False
    assert elapsed < 0.5, elapsed
    assert os.stat(dest / MANIFEST_NAME).st_mtime_ns == manifest_mtime  # nothing rewritten
    assert verify_manifest(dest) == []


def test_interrupted_download_resumes_with_a_range_request(nginx_bucket, tmp_path):
    size = 16 * MiB
    data = blob(size, 3)
    ds = nginx_bucket.add_dataset("resume-me", {"big.bin": data})
    dest = tmp_path / "d"

    class Interrupted(Exception):
        pass

    def stop_after_5_mib(p):
        if p.bytes_done >= 5 * MiB:
            raise Interrupted("simulated interruption")

    mark = nginx_bucket.mark()
    with pytest.raises(Interrupted):
        fetch_dataset(dest, uri=ds.uri, workers=1, chunk_size=256 * 1024,
                      progress=stop_after_5_mib)
    part = dest / "big.bin.part"
    have = part.stat().st_size
    assert 5 * MiB <= have < size
    assert part.read_bytes() == data[:have]
    assert not (dest / "big.bin").exists()
    assert "resume-me" not in read_manifest(dest)["datasets"]
    first = [r for r in file_gets(nginx_bucket.requests(mark), ds) if r.method == "GET"]
    assert len(first) == 1 and first[0].range == ""

    mark = nginx_bucket.mark()
    res = fetch_dataset(dest, uri=ds.uri, workers=1)
    assert (dest / "big.bin").read_bytes() == data
    assert not part.exists()
    assert res.resumed == 1 and res.downloaded == 1
    assert res.bytes_transferred == size - have
    gets = [r for r in file_gets(nginx_bucket.requests(mark), ds) if r.method == "GET"]
    assert len(gets) == 1
    assert gets[0].status == 206 and gets[0].range == "bytes=%d-" % have
    assert gets[0].bytes == size - have < size


def test_corrupt_files_are_detected_and_fetched_again(nginx_bucket, tmp_path):
    files = {"a.bin": blob(2 * MiB, 4), "b.bin": blob(MiB, 5), "c.bin": blob(1000, 6)}
    ds = nginx_bucket.add_dataset("corrupt-me", files)
    dest = tmp_path / "d"
    fetch_dataset(dest, uri=ds.uri)

    # Silent corruption (same size, mtime put back): the fast check trusts the manifest...
    a = dest / "a.bin"
    st = a.stat()
    with open(a, "r+b") as f:
        f.seek(12345)
        f.write(bytes([files["a.bin"][12345] ^ 0xFF]))
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    quick = fetch_dataset(dest, uri=ds.uri)
    assert quick.skipped == 3 and quick.bytes_transferred == 0

    # ...deep_verify re-hashes everything and replaces the corrupt file only.
    mark = nginx_bucket.mark()
    deep = fetch_dataset(dest, uri=ds.uri, deep_verify=True)
    assert deep.refetched == 1 and deep.refetched_files == ["a.bin"] and deep.skipped == 2
    assert deep.changed is True and deep.bytes_transferred == len(files["a.bin"])
    assert a.read_bytes() == files["a.bin"]
    gets = [r for r in file_gets(nginx_bucket.requests(mark), ds) if r.method == "GET"]
    assert [(r.uri, r.status, r.bytes) for r in gets] == [
        (ds.url_path("a.bin"), 200, len(files["a.bin"]))]

    # A visible change (new mtime) is caught without deep_verify: re-hashed, found wrong, replaced.
    b = dest / "b.bin"
    b.write_bytes(blob(MiB, 99))
    os.utime(b, (time.time() + 5, time.time() + 5))
    res = fetch_dataset(dest, uri=ds.uri)
    assert res.refetched_files == ["b.bin"] and res.skipped == 2
    assert b.read_bytes() == files["b.bin"]
    assert verify_manifest(dest) == []

    # A deep verify of a good copy re-stamps the manifest but reports no change.
    clean = fetch_dataset(dest, uri=ds.uri, deep_verify=True)
    assert clean.skipped == 3 and clean.changed is False and clean.bytes_transferred == 0


def test_md5_mismatch_is_fetched_a_bounded_number_of_times(nginx_bucket, tmp_path):
    good, bad = blob(300_000, 7), blob(200_000, 8)
    wrong = "0123456789abcdef0123456789abcdef"
    ds = nginx_bucket.add_dataset("lying-list", {"good.bin": good, "bad.bin": bad},
                                  md5_override={"bad.bin": wrong})
    dest = tmp_path / "d"
    mark = nginx_bucket.mark()
    with pytest.raises(ChecksumError) as ei:
        fetch_dataset(dest, uri=ds.uri, workers=1, md5_retries=2)
    msg = str(ei.value)
    assert "bad.bin" in msg and wrong in msg and md5_hex(bad) in msg and "3 download" in msg
    gets = [r for r in file_gets(nginx_bucket.requests(mark), ds)
            if r.method == "GET" and r.uri.endswith("bad.bin")]
    assert len(gets) == 3  # the first download and md5_retries=2 more
    assert not (dest / "bad.bin").exists()  # an unverified file never takes the final name
    assert (dest / "good.bin").read_bytes() == good
    assert [r["path"] for r in read_manifest(dest)["datasets"]["lying-list"]["files"]] == [
        "good.bin"]


def test_protected_dataset_needs_credentials_and_never_shows_the_secret(
        nginx_bucket, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.delenv("CF_ACCESS_CLIENT_ID", raising=False)
    monkeypatch.delenv("CF_ACCESS_CLIENT_SECRET", raising=False)
    caplog.set_level("DEBUG")
    files = {"weights/part-0.bin": blob(500_000, 9), "tok.json": b"{}"}
    ds = nginx_bucket.add_dataset("private-ds", files, protected=True)
    wrong_secret = "WRONG-CANARY-1b2c3d"
    texts = []

    def collect(exc):
        texts.extend([str(exc), repr(exc),
                      "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))])

    # 1. No credentials: a clear refusal that says what to set.
    mark = nginx_bucket.mark()
    with pytest.raises(AuthRequiredError) as ei:
        fetch_dataset(tmp_path / "none", uri=ds.uri)
    collect(ei.value)
    assert "HTTP 403" in str(ei.value) and "CF_ACCESS_CLIENT_SECRET" in str(ei.value)
    assert "/protected/metadata/private-ds.uri" in str(ei.value)
    assert [r.status for r in nginx_bucket.requests(mark)] == [403]
    assert not (tmp_path / "none").exists()

    # 2. A wrong secret: refused, and said to be the credentials' fault.
    with pytest.raises(AuthRequiredError) as ei:
        fetch_dataset(tmp_path / "wrong", uri=ds.uri, cf_access_client_id=CLIENT_ID,
                      cf_access_client_secret=wrong_secret)
    collect(ei.value)
    assert "rejected" in str(ei.value)

    # 3. Credentials are not sent to a mirror host the .uri did not name ("localhost" is not
    #    the "127.0.0.1" of the .uri), so that mirror gets a 403 too.
    foreign = ds.base_url.replace("127.0.0.1", "localhost")
    with pytest.raises(AuthRequiredError) as ei:
        fetch_dataset(tmp_path / "mirror", uri=ds.uri, base_url_override=foreign,
                      cf_access_client_id=CLIENT_ID, cf_access_client_secret=CLIENT_SECRET)
    collect(ei.value)
    assert "HEAD http://localhost:" in str(ei.value)

    # 4. The right credentials, as arguments: everything downloads.
    progress = []
    dest = tmp_path / "ok"
    res = fetch_dataset(dest, uri=ds.uri, cf_access_client_id=CLIENT_ID,
                        cf_access_client_secret=CLIENT_SECRET, progress=progress.append)
    assert res.downloaded == 2
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data

    # 5. ... and from the environment, as the original script's -s.
    monkeypatch.setenv("CF_ACCESS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("CF_ACCESS_CLIENT_SECRET", CLIENT_SECRET)
    res_env = fetch_dataset(tmp_path / "env", uri=ds.uri)
    assert res_env.downloaded == 2
    texts.append(repr(r2_download.Credentials.resolve()))

    out, err = capsys.readouterr()
    texts += [out, err, caplog.text, json.dumps(res.as_dict()), json.dumps(res_env.as_dict()),
              repr(progress), (dest / MANIFEST_NAME).read_text(),
              (dest / "private-ds.md5").read_text()]
    texts += [p.read_text(errors="replace") for p in (dest, tmp_path / "env")
              for p in p.rglob("*") if p.is_file() and p.suffix in (".json", ".md5")]
    for text in texts:
        assert CLIENT_SECRET not in text
        assert wrong_secret not in text
    assert "WARNING" in caplog.text or "INFO" in caplog.text  # the log was really captured


def test_insufficient_space_is_refused_before_writing(nginx_bucket, tmp_path, monkeypatch):
    files = {"x.bin": blob(700_000, 10), "y.bin": blob(300_000, 11)}
    ds = nginx_bucket.add_dataset("too-big", files)
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 4096, 4096))
    dest = tmp_path / "small"
    mark = nginx_bucket.mark()
    with pytest.raises(InsufficientSpaceError) as ei:
        fetch_dataset(dest, uri=ds.uri)
    msg = str(ei.value)
    assert str(dest) in msg and "1000000 bytes" in msg and "4096 bytes" in msg
    assert ei.value.needed == 1_000_000 and ei.value.free == 4096
    assert not dest.exists()
    assert not [r for r in file_gets(nginx_bucket.requests(mark), ds) if r.method == "GET"]


def test_check_mode_mirror_and_explicit_lists(nginx_bucket, tmp_path):
    files = {"one.bin": blob(100_000, 12), "two/two.bin": blob(50_000, 13)}
    ds = nginx_bucket.add_dataset("mirrored", files)
    mirror = nginx_bucket.www / "mirror-site" / "mirrored"
    shutil.copytree(ds.dir, mirror)
    mirror_url = "%s/mirror-site/mirrored" % nginx_bucket.base

    # Check mode: sizes by HEAD, nothing written, nothing downloaded.
    mark = nginx_bucket.mark()
    plan = fetch_dataset(tmp_path / "plan", uri=ds.uri, check_mode=True)
    assert plan.would_download == sorted(files) and plan.bytes_needed == 150_000
    assert plan.changed is True and plan.downloaded == 0
    assert not (tmp_path / "plan").exists()
    assert {r.method for r in file_gets(nginx_bucket.requests(mark), ds)} == {"HEAD"}

    # A mirror: the .uri is read, the files come from base_url_override.
    mark = nginx_bucket.mark()
    res = fetch_dataset(tmp_path / "m", uri=ds.uri, base_url_override=mirror_url)
    assert res.downloaded == 2 and res.base_url == mirror_url
    reqs = nginx_bucket.requests(mark)
    assert not file_gets(reqs, ds)
    assert sorted(r.uri for r in reqs if r.method == "GET" and "mirror-site" in r.uri) == [
        "/mirror-site/mirrored/one.bin", "/mirror-site/mirrored/two/two.bin"]

    # No .uri at all: base_url + md5_url.
    res = fetch_dataset(tmp_path / "x", base_url=ds.base_url, md5_url=ds.md5_url)
    assert res.dataset == "mirrored" and res.downloaded == 2
    assert (tmp_path / "x" / "two" / "two.bin").read_bytes() == files["two/two.bin"]


class _FlakyHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file badly: a 503 first, then half the body and a dropped connection, then
    honours the Range request of the retry."""

    data = blob(600_000, 14)
    log = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        port = self.server.server_address[1]
        if self.path == "/meta/flaky.uri":
            body = ("http://127.0.0.1:%d/data/flaky" % port).encode()
        elif self.path == "/meta/flaky.md5":
            body = ("%s  ./f.bin\n" % md5_hex(self.data)).encode()
        elif self.path == "/data/flaky/f.bin":
            rng = self.headers.get("Range")
            type(self).log.append(rng)
            n = len(type(self).log)
            if n == 1:
                self.send_error(503)
                return
            if n == 2:
                self.send_response(200)
                self.send_header("Content-Length", str(len(self.data)))
                self.end_headers()
                self.wfile.write(self.data[: len(self.data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            start = int(re.match(r"bytes=(\d+)-", rng).group(1))
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(self.data) - 1,
                                                                   len(self.data)))
            self.send_header("Content-Length", str(len(self.data) - start))
            self.end_headers()
            self.wfile.write(self.data[start:])
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.data)))
        self.end_headers()


def test_transient_errors_are_retried_and_resumed(tmp_path):
    _FlakyHandler.log = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        uri = "http://127.0.0.1:%d/meta/flaky.uri" % server.server_address[1]
        res = fetch_dataset(tmp_path / "d", uri=uri, retries=3, backoff=0.01, workers=1)
    finally:
        server.shutdown()
        server.server_close()
    data = _FlakyHandler.data
    assert (tmp_path / "d" / "f.bin").read_bytes() == data
    assert _FlakyHandler.log == [None, None, "bytes=%d-" % (len(data) // 2)]
    assert res.bytes_transferred == len(data)  # half, then the other half: nothing twice


def test_a_partial_file_left_by_the_original_script_is_resumed(nginx_bucket, tmp_path):
    """mlc-r2-downloader.sh runs wget --continue, which leaves a partial file under its final
    name; the native downloader finds its md5 wrong, sees it shorter than the remote file and
    continues it with a Range request instead of starting again."""
    data = blob(4 * MiB, 16)
    ds = nginx_bucket.add_dataset("from-wget", {"shard.bin": data})
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "shard.bin").write_bytes(data[: MiB + 5])
    mark = nginx_bucket.mark()
    res = fetch_dataset(dest, uri=ds.uri)
    assert (dest / "shard.bin").read_bytes() == data
    assert res.resumed == 1 and res.bytes_transferred == len(data) - (MiB + 5)
    gets = [r for r in file_gets(nginx_bucket.requests(mark), ds) if r.method == "GET"]
    assert [(r.status, r.range) for r in gets] == [(206, "bytes=%d-" % (MiB + 5))]


def test_md5_list_parsing_and_path_safety():
    text = ("d41d8cd98f00b204e9800998ecf8427e  ./a/b.bin\n"
            "D41D8CD98F00B204E9800998ECF8427E *c.bin\r\n"
            "\n"
            "\\d41d8cd98f00b204e9800998ecf8427e  ./odd\\nname\n"
            "d41d8cd98f00b204e9800998ecf8427e  ./a/b.bin\n")
    entries = r2_download.parse_md5_list(text)
    assert [(e.path, e.md5) for e in entries] == [
        ("a/b.bin", "d41d8cd98f00b204e9800998ecf8427e"),
        ("c.bin", "d41d8cd98f00b204e9800998ecf8427e"),
        ("odd\nname", "d41d8cd98f00b204e9800998ecf8427e")]
    for bad in ("./../etc/passwd", "/etc/passwd", "a/../../x", "./.mlperf-manifest.json"):
        with pytest.raises(r2_download.ProtocolError, match="line 1"):
            r2_download.parse_md5_list("d41d8cd98f00b204e9800998ecf8427e  %s\n" % bad)
    with pytest.raises(r2_download.ProtocolError, match="line 2: expected"):
        r2_download.parse_md5_list("d41d8cd98f00b204e9800998ecf8427e  ./a\nnot a line\n")
    with pytest.raises(r2_download.ProtocolError, match="twice"):
        r2_download.parse_md5_list("%s  ./a\n%s  ./a\n" % ("0" * 32, "1" * 32))
    with pytest.raises(r2_download.ProtocolError) as ei:  # a secret with a stray newline
        r2_download.Credentials("id", CLIENT_SECRET + "\n")
    assert CLIENT_SECRET not in str(ei.value)
    with pytest.raises(r2_download.ProtocolError, match="ending in .uri"):
        fetch_dataset("/nonexistent", uri="http://127.0.0.1:9/x.json")


# ---------------------------------------------------------------------------------------------
def _ansible(args, check=False):
    exe = Path(sys.executable).with_name("ansible")
    if not exe.exists():
        pytest.skip("ansible is not installed next to %s" % sys.executable)
    cmd = [str(exe), "localhost", "-i", "localhost,", "-c", "local", "-M", "library",
           "-m", "mlperf_dataset_fetch", "-a", args, "-v",
           "-e", "ansible_python_interpreter=%s" % sys.executable]
    if check:
        cmd.append("--check")
    env = dict(os.environ, ANSIBLE_MODULE_UTILS="mlperf_repro/node", ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_LOCALHOST_WARNING="0")
    env.pop("CF_ACCESS_CLIENT_SECRET", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    m = re.search(r"^localhost \| (\w+!?) => (\{.*^\})", proc.stdout, re.M | re.S)
    assert m, proc.stdout + proc.stderr
    return m.group(1), json.loads(m.group(2)), proc.stdout + proc.stderr


def test_ansible_module_is_idempotent_and_keeps_the_secret(nginx_bucket, tmp_path):
    files = {"tokenizer.json": blob(20_000, 15), "model/config.json": b'{"x": 1}'}
    ds = nginx_bucket.add_dataset("module-ds", files, protected=True)
    dest = tmp_path / "model"
    args = ("uri=%s dest=%s workers=2 cf_access_client_id=%s cf_access_client_secret=%s"
            % (ds.uri, dest, CLIENT_ID, CLIENT_SECRET))

    state, plan, out = _ansible(args, check=True)
    assert state == "CHANGED" and plan["would_download"] == sorted(files), out
    assert not dest.exists()
    assert CLIENT_SECRET not in out

    progress_file = tmp_path / "progress.json"
    state, first, out = _ansible(args + " progress_file=%s" % progress_file)
    assert state == "CHANGED" and first["files_downloaded"] == 2 and first["changed"] is True, out
    last = json.loads(progress_file.read_text())
    assert last["event"] == "done" and last["files_done"] == last["files_total"] == 2
    assert CLIENT_SECRET not in out
    for rel, data in files.items():
        assert (dest / rel).read_bytes() == data

    mark = nginx_bucket.mark()
    state, second, out = _ansible(args)
    assert state == "SUCCESS" and second["changed"] is False, out
    assert second["files_skipped"] == 2 and second["bytes_transferred"] == 0
    assert not file_gets(nginx_bucket.requests(mark), ds)
    assert CLIENT_SECRET not in out

    state, failed, out = _ansible("uri=%s dest=%s" % (ds.uri, tmp_path / "nocreds"))
    assert state == "FAILED!" and failed["error"] == "AuthRequiredError", out
    assert "CF_ACCESS_CLIENT_ID" in failed["msg"]
