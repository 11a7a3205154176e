"""A published ``config_<SYSTEM>.sh`` read as data: its assignments, never run.

Follows ``source $(dirname ${BASH_SOURCE[0]})/<file>`` to files in the same directory (in
order), applies ``unset NAME``, skips ``if ... fi`` blocks (every one in the NVIDIA v5.1 configs
is off by default: LOAD_MINIMAL_NUM_SAMPLES=0, NO_CKPT unset) and ``: "${NAME:=...}"`` defaults
(not exported). Values keep their text: ``$((...))`` and ``${NAME:-word}`` stay expressions.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

_SOURCE_RE = re.compile(r'^(?:source|\.)\s+"?\$\(dirname\s+"?\$\{BASH_SOURCE\[0\]\}"?\)"?/(?P<file>[^"\s]+)"?\s*$')
_NAME_REF_RE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}")
_EXPORT_RE = re.compile(r"^(?:export\s+)(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)$")
_UNSET_RE = re.compile(r"^unset\s+(?P<names>[A-Za-z_0-9 ]+)$")


def _value(raw: str) -> str:
    raw = raw.strip()
    if raw.endswith(";"):
        raw = raw[:-1].rstrip()
    if raw.startswith("$"):
        # an expansion, a command or arithmetic: kept as written, up to its balanced end (a
        # comment may follow it)
        depth = 0
        for i, char in enumerate(raw):
            if char in "({":
                depth += 1
            elif char in ")}":
                depth -= 1
            elif char.isspace() and depth == 0:
                return raw[:i]
        return raw
    # a trailing comment after the value: shlex with comments drops it
    words = shlex.split(raw, comments=True, posix=True)
    if not words:
        return ""
    if len(words) != 1:
        raise ValueError(f"cannot read {raw!r} as one value")
    return words[0]


def published_assignments(path: str | Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """``{NAME: value text}`` after reading ``path`` and what it sources, in order (a sourced
    file's ``unset`` removes what an earlier file set)."""
    path = Path(path)
    env = {} if env is None else env
    depth = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if re.match(r"^if\b", text):
            depth += 1
            continue
        if text == "fi":
            depth -= 1
            continue
        if depth:
            continue
        match = _SOURCE_RE.match(text)
        if match:
            # a name in the file name (config_common_gbs_${BATCHSIZE}.sh) is one set above
            name = _NAME_REF_RE.sub(lambda m: env[m.group("name")], match.group("file"))
            published_assignments(path.parent / name, env)
            continue
        match = _UNSET_RE.match(text)
        if match:
            for name in match.group("names").split():
                env.pop(name, None)
            continue
        match = _EXPORT_RE.match(text)
        if match:
            env.pop(match.group("name"), None)  # a later assignment moves to the end
            env[match.group("name")] = _value(match.group("value"))
            continue
        if text.startswith(":"):
            continue  # : "${NAME:=default}" - a shell default, not exported
        raise ValueError(f"{path}: cannot read line {line!r} as data")
    return env
