"""Files on a node: one atomic writer and one free-space probe, for every writer in the toolkit.

Standard library only. Shipped to nodes as ``ansible.module_utils.fileio`` (modules), installed
beside the detached campaign runner (``campaign.py`` imports it from there), and imported as
``mlperf_repro.node.fileio`` by controller code.
"""

import errno
import json
import os
import shutil
import tempfile

#: Full disk or quota: the two errors after which a file may still be rewritten in place.
_FULL = (errno.ENOSPC, errno.EDQUOT)


def os_error_text(exc, path=None):
    """``No space left on device: /data/.../state.json`` for an OSError (``path`` when it names
    no file; its ``detail`` attribute, when set, in parentheses)."""
    reason = exc.strerror or str(exc)
    where = exc.filename or path
    text = "%s: %s" % (reason, where) if where else reason
    detail = getattr(exc, "detail", None)
    return "%s (%s)" % (text, detail) if detail else text


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _rewrite_in_place(path, payload):
    """Overwrite an existing file within the blocks it holds (no new space needed)."""
    try:
        info = os.stat(path)
        if len(payload) > info.st_blocks * 512:
            return False
        fd = os.open(path, os.O_WRONLY)
        try:
            _write_all(fd, payload)
            os.ftruncate(fd, len(payload))
            os.fsync(fd)
        finally:
            os.close(fd)
        return True
    except OSError:
        return False


def write_atomic(path, data, mode, in_place_when_full=False):
    """Replace ``path`` with ``data`` (bytes or text, UTF-8) atomically: a temporary file in the
    same directory, written, fsynced, given ``mode`` (whatever the umask) and an existing file's
    owner, then renamed over ``path``. A reader sees the old file or the new one, never a part.

    On any failure the temporary file is removed and the OSError names ``path`` (not the
    temporary name). With ``in_place_when_full``, a full disk (or quota) rewrites an existing file
    in place when the new content fits in the blocks it already holds, so a record of why
    something stopped can still be written.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    directory, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".%s." % name, suffix=".tmp", dir=directory)
    except OSError as exc:
        if in_place_when_full and exc.errno in _FULL and _rewrite_in_place(path, payload):
            return
        raise OSError(exc.errno, exc.strerror, path) from None
    try:
        try:
            os.fchmod(fd, mode)
            try:
                st = os.stat(path)
                os.fchown(fd, st.st_uid, st.st_gid)
            except OSError:
                pass
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if not isinstance(exc, OSError):
            raise
        if in_place_when_full and exc.errno in _FULL and _rewrite_in_place(path, payload):
            return
        raise OSError(exc.errno, exc.strerror, path) from None


def read_bytes(path):
    """The bytes of ``path``, or None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def ensure_content(path, data, mode, check_mode=False):
    """Make ``path`` hold ``data`` (bytes or text) with ``mode``: replaced atomically when its
    content differs, its mode set when only that differs, untouched when both are right.
    Returns whether anything changed (or would, in ``check_mode``). Raises OSError."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if read_bytes(path) != payload:
        if not check_mode:
            write_atomic(path, payload, mode)
        return True
    if (os.stat(path).st_mode & 0o7777) != mode:
        if not check_mode:
            os.chmod(path, mode)
        return True
    return False


def json_text(data, indent=2):
    """``data`` as the toolkit writes JSON files: sorted keys, ``indent``, a final newline."""
    return json.dumps(data, indent=indent, sort_keys=True) + "\n"


def write_json(path, data, mode, indent=2, in_place_when_full=False):
    """:func:`write_atomic` of ``data`` as JSON (sorted keys, a final newline)."""
    write_atomic(path, json_text(data, indent), mode, in_place_when_full=in_place_when_full)


def read_json_file(path):
    """The JSON document in ``path``; raises OSError (FileNotFoundError) or ValueError."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_json(path, default=None):
    """The JSON document in ``path``, or ``default`` when it is missing or unreadable."""
    try:
        return read_json_file(path)
    except (OSError, ValueError):
        return default


def ancestors(path):
    """``path`` made absolute, then its parent, and so on up to ``/``."""
    path = os.path.abspath(path)
    while True:
        yield path
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def existing_ancestor(path):
    """``path`` made absolute, or its nearest parent that exists (where it would be created)."""
    chain = list(ancestors(path))
    return next((p for p in chain if os.path.exists(p)), chain[-1])


def make_dirs(path, mode):
    """``os.makedirs`` whose every created directory gets ``mode`` whatever the umask; existing
    directories are left as they are."""
    missing = []
    for directory in ancestors(path):
        if os.path.isdir(directory):
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue
        os.chmod(directory, mode)


def free_bytes(path):
    """Free bytes (for an unprivileged user) of the file system that holds, or would hold,
    ``path``: measured at its nearest existing directory. Raises OSError."""
    return shutil.disk_usage(existing_ancestor(path)).free


def changed_since(path, size, mtime_ns, said="recorded", since="it was recorded", follow=False):
    """None when ``path`` still has the recorded ``size`` and ``mtime_ns``; else one sentence
    (missing, another size, modified) naming ``path``. Nothing is hashed. ``follow``: a symbolic
    link is followed (its target checked), else the link itself is."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return "%s: missing" % path
    if st.st_size != size:
        return "%s: %d bytes, %s %s" % (path, st.st_size, said, size)
    if st.st_mtime_ns != mtime_ns:
        return "%s: modified since %s" % (path, since)
    return None
