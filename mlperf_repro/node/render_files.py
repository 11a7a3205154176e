"""Node-side: make a directory hold given text files, in one call (one SSH round trip per node).

Standard library only: Ansible ships this file to the nodes as ``ansible.module_utils.render_files``
(the ``mlperf_files`` module). What the render stage did with a ``file``, a ``copy`` per file and a
``template`` task (each a stat and a write or an attribute check: several module runs per node)
is one call here: the directory is created (or its mode set), and each file whose content or
mode differs is replaced atomically (written beside it, then renamed); a file already right is
not touched. Nothing is written in check mode; the result says what would change, with diffs.
"""

import os
import stat

try:
    from ansible.module_utils.fileio import make_dirs, write_atomic
except ImportError:  # the controller and tests
    from mlperf_repro.node.fileio import make_dirs, write_atomic


class FilesError(ValueError):
    """A bad request (a name that is not a plain file name, a bad mode)."""


def parse_mode(mode):
    """``"0644"`` / ``"644"`` / 420 -> 0o644."""
    if isinstance(mode, int):
        value = mode
    else:
        text = str(mode).strip()
        try:
            value = int(text, 8)
        except ValueError:
            raise FilesError("mode %r is not an octal number such as '0644'" % (mode,)) from None
    if not 0 <= value <= 0o7777:
        raise FilesError("mode %r is out of range" % (mode,))
    return value


def mode_text(value):
    return "%04o" % value


def check_name(name):
    if not name or name in (".", "..") or os.path.basename(name) != name:
        raise FilesError("file name %r: expected a plain file name (no directory part)" % (name,))
    return name


def _read(path):
    """(bytes, mode) of a regular file, or (None, None) when there is none (or it is not one)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, None
    if not stat.S_ISREG(st.st_mode):
        return None, None
    with open(path, "rb") as handle:
        return handle.read(), stat.S_IMODE(st.st_mode)


def _text(data):
    return data.decode("utf-8", "replace")


def ensure(directory, files, directory_mode=0o755, check=False):
    """Make ``directory`` (mode ``directory_mode``) hold ``files``.

    ``files`` is a list of ``{"name", "content", "mode"}`` (content: text, written as UTF-8).
    Returns ``{"changed", "directory", "files": [{"path", "changed", "content_changed",
    "mode_changed"}], "diff": [...]}``; the diff items name the path in their headers.
    """
    directory = os.path.abspath(directory)
    directory_mode = parse_mode(directory_mode)
    wanted = []
    for item in files:
        name = check_name(item.get("name"))
        wanted.append((name, str(item.get("content", "")).encode("utf-8"), parse_mode(item.get("mode"))))
    if len({name for name, _, _ in wanted}) != len(wanted):
        raise FilesError("a file name appears twice")

    diff = []
    changed = False
    try:
        st = os.stat(directory)
        if not stat.S_ISDIR(st.st_mode):
            raise FilesError("%s exists and is not a directory" % directory)
        current = stat.S_IMODE(st.st_mode)
        if current != directory_mode:
            changed = True
            diff.append({"before_header": directory, "after_header": directory,
                         "before": {"path": directory, "mode": mode_text(current)},
                         "after": {"path": directory, "mode": mode_text(directory_mode)}})
            if not check:
                os.chmod(directory, directory_mode)
        exists = True
    except FileNotFoundError:
        exists = False
        changed = True
        diff.append({"before_header": directory, "after_header": directory,
                     "before": {"path": directory, "state": "absent"},
                     "after": {"path": directory, "state": "directory"}})
        if not check:
            make_dirs(directory, directory_mode)  # parents too: none is left to the umask
            os.chmod(directory, directory_mode)

    results = []
    for name, data, mode in wanted:
        path = os.path.join(directory, name)
        before, before_mode = _read(path) if exists else (None, None)
        content_changed = before != data
        mode_changed = not content_changed and before_mode != mode
        if content_changed:
            diff.append({"before_header": path, "after_header": path,
                         "before": "" if before is None else _text(before), "after": _text(data)})
        elif mode_changed:
            diff.append({"before_header": path, "after_header": path,
                         "before": {"path": path, "mode": mode_text(before_mode)},
                         "after": {"path": path, "mode": mode_text(mode)}})
        if not check:
            if content_changed:
                write_atomic(path, data, mode)
            elif mode_changed:
                os.chmod(path, mode)
        results.append({"path": path, "changed": content_changed or mode_changed,
                        "content_changed": content_changed, "mode_changed": mode_changed})
        changed = changed or content_changed or mode_changed
    return {"changed": changed, "directory": directory, "files": results, "diff": diff}
