"""The image's own files against what the catalog expects of them (standard library only).

Shipped to the nodes as ``ansible.module_utils.vendor_check`` (the ``mlperf_vendor_check``
module, run by the render stage on the host that holds the code copied out of the image).

The vendor's artifact is the source of truth: runs use the image's own ``config_<SYSTEM>.sh``.
The catalog holds what we expect of it; every variable added, removed or changed is reported by
name, never silently replaced. Site values live in a file of their own, sourced after the
image's config; a site value for a name the image's config sets is reported too (it overrides
the vendor's value for this site).

    inspect(code_dir, config_file, catalog_env, site_env)  -> the record (see inspect)
    launch_differences(code_dir, script, native_argv, values) -> AMD's launch vs the native one
"""

import json
import os

try:
    from ansible.module_utils.fileio import ensure_content, read_bytes, write_atomic
except ImportError:  # imported from the package (tests, the controller)
    from mlperf_repro.node.fileio import ensure_content, read_bytes, write_atomic

try:  # shipped beside it as ansible.module_utils.vendor_files
    from ansible.module_utils.vendor_files import (compare_config, compare_launch,
                                                   parse_config_tree, parse_docker_run)
except ImportError:  # imported from the package (tests, the controller)
    from mlperf_repro.node.vendor_files import (compare_config, compare_launch,
                                                parse_config_tree, parse_docker_run)

#: The suffix an earlier layout kept the image's config under (ours was written in its place).
LEGACY_SUFFIX = ".from-image"
#: The file the record is written to, in the code directory.
RECORD_NAME = ".mlperf-vendor-check.json"
#: The line a config rendered from the catalog carries (roles/render/templates/config.sh.j2):
#: such a file is ours, not the image's.
RENDERED_MARK = "mlperf-repro: rendered from the catalog, not the image"


def _reader(code_dir, legacy_for=None):
    """read(name) -> text of a plain file of ``code_dir``, or None (no directory parts)."""
    def read(name):
        if not name or os.path.basename(name) != name or name in (".", ".."):
            return None
        path = os.path.join(code_dir, name)
        if legacy_for and name == legacy_for and os.path.isfile(path + LEGACY_SUFFIX):
            path = path + LEGACY_SUFFIX
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None
    return read


def inspect(code_dir, config_file, catalog_env, site_env=None):
    """What the image's config holds, beside the catalog's expectation and the site's values.

    Returns::

        {"config_file": name,
         "source": "image" | "image (kept as <name>.from-image)" | "absent",
         "differences": {"added": [...], "removed": [...], "changed": [...]},   # by name
         "same": n, "includes": [...], "unparsed": [...],
         "site_overrides": [{"name", "image", "site"}],
         "summary": one sentence}

    ``source`` "absent": the image has no file for this system; the render stage then renders
    the catalog's and the report marks it.
    """
    legacy = os.path.isfile(os.path.join(code_dir, config_file + LEGACY_SUFFIX))
    read = _reader(code_dir, legacy_for=config_file)
    record = {"config_file": config_file, "source": "absent",
              "differences": {"added": [], "removed": [], "changed": []}, "same": 0,
              "includes": [], "unparsed": [], "site_overrides": []}
    text = read(config_file)
    if text is None or RENDERED_MARK in "\n".join(text.splitlines()[:8]):
        record["summary"] = ("the image has no %s: the catalog's values are rendered instead "
                             "(not the vendor's file)" % config_file)
        return record
    parsed = parse_config_tree(config_file, read)
    record["source"] = "image (kept as %s%s)" % (config_file, LEGACY_SUFFIX) if legacy else "image"
    found = compare_config(parsed, dict(catalog_env or {}))
    record["differences"] = {key: found[key] for key in ("added", "removed", "changed")}
    record["same"] = len(found["same"])
    record["includes"] = [{k: inc.get(k) for k in ("line", "file", "found", "source_file")}
                          for inc in parsed["includes"]]
    record["unparsed"] = parsed["unparsed"]
    for name, value in (site_env or {}).items():
        if name in parsed["variables"]:
            record["site_overrides"].append({"name": name,
                                             "image": parsed["variables"][name]["raw"],
                                             "site": str(value)})
    record["summary"] = summary(record)
    return record


def summary(record):
    """One sentence: how the image's config compares with the catalog."""
    if record["source"] == "absent":
        return record.get("summary") or "the image has no %s" % record["config_file"]
    diff = record["differences"]
    parts = []
    for key, word in (("added", "only in the image"), ("removed", "only in the catalog"),
                      ("changed", "different")):
        names = [item["name"] for item in diff[key]]
        if names:
            parts.append("%d %s (%s)" % (len(names), word, ", ".join(names)))
    text = "%s from the image: %d variable(s) as the catalog expects" % (
        record["config_file"], record["same"])
    if parts:
        text += "; " + "; ".join(parts)
    if record["site_overrides"]:
        text += "; site values override %s" % ", ".join(o["name"] for o in record["site_overrides"])
    if record["unparsed"]:
        text += "; %d line(s) not read as assignments" % len(record["unparsed"])
    return text


def launch_differences(code_dir, script, native_argv, values=None):
    """AMD's ``script`` (e.g. run_with_docker.sh) in ``code_dir``, read as data, against the
    native runner's ``docker run`` argv: ``{"script", "found", "differences": [...]}``."""
    text = _reader(code_dir)(script)
    if text is None:
        return {"script": script, "found": False, "differences": []}
    parsed = parse_docker_run(text)
    if not parsed["runs"]:
        return {"script": script, "found": True, "differences": [],
                "note": "no docker run command found in %s" % script}
    return {"script": script, "found": True,
            "differences": compare_launch(parsed, list(native_argv), values or {})}


def record_text(record):
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


class VendorCheckError(ValueError):
    """A request the mlperf_vendor_check module refuses (a bad argument, no code directory)."""


def ensure_record(code_dir, config_file, catalog_env=None, site_env=None, check_mode=False):
    """The mlperf_vendor_check module's one call: compare the image's ``config_file`` in
    ``code_dir`` with the catalog's values and keep the comparison in ``RECORD_NAME`` there (an
    earlier layout's ``*.from-image`` copy goes back in place first). Returns the module's
    result; raises VendorCheckError."""
    name = config_file
    if os.path.basename(name) != name or name in ("", ".", ".."):
        raise VendorCheckError("config_file: expected a plain file name such as "
                               "config_MI355X_1x8x1.sh, got %r" % name)
    catalog_env, site_env = catalog_env or {}, site_env or {}
    record_path = os.path.join(code_dir, RECORD_NAME)
    if not os.path.isdir(code_dir):
        if check_mode:  # the code is copied out of the image by the same run
            return dict(changed=False, source="unknown", differences={}, site_overrides=[],
                        summary="%s is not there yet (copied out of the image by this run)"
                                % code_dir, record_file=record_path)
        raise VendorCheckError("code_dir %s is not a directory: copy the code out of the image "
                               "first" % code_dir)
    try:
        record = inspect(code_dir, name, catalog_env, site_env)
    except (OSError, ValueError) as exc:
        raise VendorCheckError("%s/%s: %s" % (code_dir, name, exc)) from None
    changed = False
    config_path = os.path.join(code_dir, name)
    legacy = config_path + LEGACY_SUFFIX
    try:
        if os.path.isfile(legacy):  # the earlier layout: the image's file goes back in place
            changed = True
            if not check_mode:
                write_atomic(config_path, read_bytes(legacy), 0o644)
                os.unlink(legacy)
                record = inspect(code_dir, name, catalog_env, site_env)
        changed = ensure_content(record_path, record_text(record), 0o644, check_mode) or changed
    except OSError as exc:
        raise VendorCheckError("%s: %s" % (exc.filename or code_dir, exc.strerror or exc)) from None
    return dict(record, changed=changed, record_file=record_path)
