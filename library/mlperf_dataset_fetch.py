#!/usr/bin/python
"""Ansible module: download one MLCommons R2 bucket dataset natively (no script fetched)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_dataset_fetch
short_description: Download and verify an MLCommons dataset from its R2 bucket
description:
  - Implements the MLCommons R2 downloader protocol natively, with the Python standard library
    on the node; no script is fetched at run time, so it works air-gapped behind a mirror.
  - Reads the dataset's C(.uri) metadata (its body is the base URL) and the C(.md5) list next
    to it, then downloads every listed file into O(dest) with parallel workers, resuming
    partial C(<file>.part) files with HTTP Range requests, retrying transient failures with
    backoff, and checking every file's md5 before it takes its final name.
  - Records each verified file in C(<dest>/.mlperf-manifest.json) (path, size, md5, mtime,
    verification time), so a re-run checks only existence, size and mtime and transfers
    nothing. O(deep_verify) re-hashes every file; a corrupt file is fetched again.
  - Checks the free space of the file system of O(dest) before writing anything.
  - Deletes nothing, except that a file whose md5 is wrong is replaced by a verified copy.
  - C(changed) is true only when something was written in O(dest).
options:
  uri:
    description:
      - The dataset's metadata URL, ending in C(.uri), as given to C(mlc-r2-downloader.sh).
      - Give either O(uri) or O(base_url) with O(md5_url).
    type: str
  base_url:
    description: The dataset's base URL, when there is no C(.uri) to read it from.
    type: str
  md5_url:
    description:
      - URL of the C(.md5) list. Defaults to C(<directory of uri>/<name>.md5); required with
        O(base_url).
    type: str
  base_url_override:
    description:
      - Download the files from this base URL instead of the one in the C(.uri) (a mirror).
      - Cloudflare Access credentials are sent to it only if its host is the host of the
        C(.uri) or of the base URL the C(.uri) names.
    type: str
  dest:
    description: Directory that receives the files, keeping the list's relative layout.
    type: path
    required: true
  workers:
    description: Files downloaded (and hashed) in parallel.
    type: int
    default: 8
  retries:
    description: Retries of a request after a connection error, a timeout or HTTP 408/425/429/5xx.
    type: int
    default: 5
  md5_retries:
    description: How many times a file whose md5 is wrong after download is fetched again.
    type: int
    default: 2
  timeout:
    description: Seconds a connection may stay silent before it counts as failed.
    type: float
    default: 60
  cf_access_client_id:
    description:
      - Cloudflare Access service-token client id, for protected datasets.
      - Defaults to the environment variable C(CF_ACCESS_CLIENT_ID) of the module's process.
    type: str
  cf_access_client_secret:
    description:
      - Cloudflare Access service-token client secret; never logged nor returned.
      - Defaults to the environment variable C(CF_ACCESS_CLIENT_SECRET) of the module's process.
    type: str
  deep_verify:
    description: Re-hash every file instead of trusting the manifest's size and mtime.
    type: bool
    default: false
  progress_file:
    description:
      - A file the module rewrites (at most once a second) with a JSON progress record
        (bytes and files done and total), for a controller to watch an C(async) task.
    type: path
attributes:
  check_mode:
    support: full
    details:
      - Reads the metadata, checks the manifest (and hashes files it cannot vouch for), asks
        the sizes by HEAD and checks free space, then reports RV(would_download) and
        RV(bytes_needed) without writing anything.
  diff_mode:
    support: none
notes:
  - The original C(mlc-r2-downloader.sh) obtains a C(CF_Authorization) token; this module sends
    the service-token headers with every request to the dataset's hosts and, when the C(.uri)
    response sets a C(CF_Authorization) cookie, also the C(cf-access-token) header.
  - Redirects are not followed (as the original script's C(--max-redirect=0)).
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Llama 3.1 8B preprocessed C4
  mlperf_dataset_fetch:
    uri: https://training.mlcommons-storage.org/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri
    dest: /data/mlperf_llama31_8b/data
    workers: 16

- name: Same, from a site mirror, re-hashing what is already there
  mlperf_dataset_fetch:
    uri: https://mirror.example.org/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri
    base_url_override: https://mirror.example.org/datasets/llama-3-1-8b-preprocessed-c4-dataset
    dest: /data/mlperf_llama31_8b/data
    deep_verify: true

- name: A private dataset with a service token
  mlperf_dataset_fetch:
    uri: https://private.mlcommons-storage.org/metadata/some-dataset.uri
    dest: /data/some-dataset
    cf_access_client_id: "{{ vault_cf_client_id }}"
    cf_access_client_secret: "{{ vault_cf_client_secret }}"
"""

RETURN = r"""
dataset:
  description: The dataset name (the C(.uri) file name without its extension).
  returned: always
  type: str
dest:
  description: The absolute destination directory.
  returned: always
  type: str
base_url:
  description: The base URL the files came from (no credentials, no query string).
  returned: always
  type: str
files_total:
  description: Files in the md5 list.
  returned: always
  type: int
files_downloaded:
  description: Files downloaded that were not there before (resumed ones included).
  returned: always
  type: int
files_skipped:
  description:
    - Files already present and verified (by the manifest, or by hashing).
    - Named C(skipped) in the Python API; a result key C(skipped) would mark the task skipped.
  returned: always
  type: int
files_refetched:
  description: Files that were present but corrupt, or whose download failed md5, fetched again.
  returned: always
  type: int
files_resumed:
  description: Downloads continued from a C(.part) file with a Range request.
  returned: always
  type: int
bytes_transferred:
  description: Bytes received in this run.
  returned: always
  type: int
bytes_total:
  description: Size of the dataset, where the sizes are known.
  returned: always
  type: int
bytes_needed:
  description: Bytes this run had (in check mode, would have) to transfer.
  returned: always
  type: int
seconds:
  description: Wall-clock seconds of the download and verification.
  returned: always
  type: float
would_download:
  description: Relative paths that were (in check mode, would be) downloaded.
  returned: always
  type: list
  elements: str
downloaded_files:
  description: Relative paths downloaded.
  returned: always
  type: list
  elements: str
refetched_files:
  description: Relative paths fetched again because their md5 was wrong.
  returned: always
  type: list
  elements: str
manifest:
  description: Path of the manifest file.
  returned: always
  type: str
"""

import time
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible.module_utils.fileio import write_json
from ansible.module_utils.r2_download import R2Error, fetch_dataset


def _progress_writer(path):
    state = {"last": 0.0}

    def write(p):
        now = time.monotonic()
        if p.event not in ("start", "done") and now - state["last"] < 1.0:
            return
        state["last"] = now
        rec = {"event": p.event, "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
               "files_done": p.files_done, "files_total": p.files_total, "time": time.time()}
        write_json(path, rec, 0o644, indent=None)

    return write


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type="str"),
            base_url=dict(type="str"),
            md5_url=dict(type="str"),
            base_url_override=dict(type="str"),
            dest=dict(type="path", required=True),
            workers=dict(type="int", default=8),
            retries=dict(type="int", default=5),
            md5_retries=dict(type="int", default=2),
            timeout=dict(type="float", default=60),
            cf_access_client_id=dict(type="str", no_log=False,
                                     fallback=(env_fallback, ["CF_ACCESS_CLIENT_ID"])),
            cf_access_client_secret=dict(type="str", no_log=True,
                                         fallback=(env_fallback, ["CF_ACCESS_CLIENT_SECRET"])),
            deep_verify=dict(type="bool", default=False),
            progress_file=dict(type="path"),
        ),
        required_one_of=[("uri", "base_url")],
        mutually_exclusive=[("uri", "base_url")],
        required_by={"base_url": ("md5_url",)},
        supports_check_mode=True,
    )
    p = module.params
    for name in ("workers", "retries", "md5_retries"):
        if p[name] < (1 if name == "workers" else 0):
            module.fail_json(msg="%s must be %s, got %d"
                             % (name, "at least 1" if name == "workers" else "0 or more", p[name]))
    progress = None
    if p["progress_file"] and not module.check_mode:
        progress = _progress_writer(p["progress_file"])
    try:
        result = fetch_dataset(
            p["dest"], uri=p["uri"], base_url=p["base_url"], md5_url=p["md5_url"],
            base_url_override=p["base_url_override"], workers=p["workers"],
            retries=p["retries"], md5_retries=p["md5_retries"], timeout=p["timeout"],
            cf_access_client_id=p["cf_access_client_id"],
            cf_access_client_secret=p["cf_access_client_secret"], use_env=False,
            deep_verify=p["deep_verify"], check_mode=module.check_mode, progress=progress)
    except R2Error as e:
        module.fail_json(msg=str(e), error=type(e).__name__)
    except Exception as e:  # noqa: BLE001 - reported, not hidden; no_log values are masked
        module.fail_json(msg="%s: %s" % (type(e).__name__, e), error=type(e).__name__,
                         exception=traceback.format_exc())
    out = result.as_dict()
    out.pop("check_mode", None)
    # "skipped" is a reserved key of a task result (it would mark the task skipped).
    for key in ("downloaded", "skipped", "refetched", "resumed"):
        out["files_" + key] = out.pop(key)
    changed = out.pop("changed")
    module.exit_json(changed=changed, **out)


if __name__ == "__main__":
    main()
