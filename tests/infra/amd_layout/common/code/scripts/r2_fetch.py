#!/usr/bin/env python3
"""mlperf-repro test stand-in for MLCommons' mlc-r2-downloader.sh (standard library only).

    r2_fetch.py [-d DIR] URL.uri

The R2 protocol (../shared/reference/r2-dataset-protocol.md): GET <name>.uri gives the base URL;
<directory of the .uri>/<name>.md5 lists `<md5>  ./<path>`; every file is fetched from
<base>/<path> into DIR (default: the base URL's last component) and checked against its md5.
A file already there with the right md5 is not fetched again. Exit 1 on any failure (named).
"""

import argparse
import hashlib
import os
import sys
import urllib.request


def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.read()


def md5_of(path):
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-d", dest="dest")
    ap.add_argument("uri")
    args = ap.parse_args()
    if not args.uri.endswith(".uri"):
        sys.exit("r2_fetch: %s: expected a URL ending in .uri" % args.uri)
    name = args.uri.rsplit("/", 1)[1][:-len(".uri")]
    try:
        base = get(args.uri).decode().strip().rstrip("/")
        listing = get(args.uri.rsplit("/", 1)[0] + "/" + name + ".md5").decode()
    except OSError as exc:
        sys.exit("r2_fetch: %s: %s" % (args.uri, exc))
    dest = args.dest or base.rsplit("/", 1)[1]
    fetched = 0
    for line in listing.splitlines():
        if not line.strip():
            continue
        md5, rel = line.split(None, 1)
        rel = rel.strip()
        rel = rel[2:] if rel.startswith("./") else rel
        if rel.startswith("/") or ".." in rel.split("/"):
            sys.exit("r2_fetch: %s: unsafe path %r in the md5 list" % (name, rel))
        path = os.path.join(dest, rel)
        if os.path.exists(path) and md5_of(path) == md5:
            continue
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            data = get(base + "/" + rel)
        except OSError as exc:
            sys.exit("r2_fetch: %s/%s: %s" % (base, rel, exc))
        with open(path + ".part", "wb") as handle:
            handle.write(data)
        os.replace(path + ".part", path)
        if md5_of(path) != md5:
            sys.exit("r2_fetch: %s: md5 mismatch (run again to retry)" % path)
        fetched += 1
    print("r2_fetch: %s: %d file(s) fetched into %s, all verified" % (name, fetched, dest))


if __name__ == "__main__":
    main()
