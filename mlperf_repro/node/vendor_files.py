"""AMD's own benchmark files, read as data: ``config_<SYSTEM>.sh`` and ``run_with_docker*.sh``.

Standard library only: shipped to nodes as ``ansible.module_utils.vendor_files``. Nothing here
executes a line of the files it reads (a value is data): the shell is *lexed* (quotes,
``${...}``, ``$(...)``, ``$((...))``, backticks, line continuations) and what is not an
assignment, an include or a docker command is reported with its line number, never dropped.

    parse_config_sh(text)               -> {"variables", "order", "assignments", "exports",
                                            "includes", "unparsed"}
    config_values(parsed, raw=False)    -> {name: value}          (the last assignment wins)
    parse_config_tree(name, read)       -> parse_config_sh result over a config and its includes
    compare_config(image_env, catalog)  -> {"added", "removed", "changed", "same"}
    parse_docker_run(script_text)       -> {"runs", "execs", "loops", "arrays", "required",
                                            "defaults", "unparsed_commands"}
    parse_docker_argv(argv)             -> one ``docker run``'s options (as in "runs")
    resolve(text, parsed, values)       -> text with the script's own variables substituted
    compare_launch(amd, native, values) -> [{"kind", "name", "amd", "native", "difference"}]

Values are compared in a *normal form* that removes quoting and nothing else: ``"0.00025"``,
``'0.00025'`` and ``0.00025`` are the same value, and so are ``$NAME`` and ``${NAME}`` (both
written ``${NAME}``); ``'$HOME'`` (literal) and ``$HOME`` (expanded) are not, because literal
``$``, backquote, backslash and double quote keep a backslash in the normal form.
"""

import re

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ASSIGN_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\+?=)")
_SPECIAL = "$`\\\""
_OPERATOR_CHARS = ";&|<>()"


class ShellSyntaxError(ValueError):
    """A word that does not end where the shell would end it (an unclosed quote, ...)."""


# ---------------------------------------------------------------------------------------------
# The lexer

class Word:
    """One shell word: its text as written, its normal form, whether it expands anything."""

    __slots__ = ("raw", "norm", "expands", "quoted", "line")

    def __init__(self, raw, norm, expands, quoted, line):
        self.raw, self.norm, self.expands, self.quoted, self.line = raw, norm, expands, quoted, line

    def __repr__(self):
        return "Word(%r)" % self.raw


class _Lexer:
    """Shell words and operators of a text, with the line each starts on."""

    def __init__(self, text):
        self.s = text.replace("\r\n", "\n")
        self.n = len(self.s)

    def line_of(self, pos):
        return self.s.count("\n", 0, pos) + 1

    # -- one word ----------------------------------------------------------------------------
    def word(self, i, stop_at_space=True):
        """Scan one word from ``i``: (end, normal form, expands, quoted)."""
        s, n = self.s, self.n
        out = []
        expands = quoted = False
        while i < n:
            c = s[i]
            if c == "\\":
                if i + 1 < n and s[i + 1] == "\n":  # line continuation
                    i += 2
                    continue
                if i + 1 >= n:
                    i += 1
                    continue
                nxt = s[i + 1]
                out.append("\\" + nxt if nxt in _SPECIAL else nxt)
                quoted = True
                i += 2
                continue
            if stop_at_space and (c in " \t\n" or c in _OPERATOR_CHARS):
                break
            if c == "'":
                end = s.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError("unclosed single quote")
                out.append("".join("\\" + ch if ch in _SPECIAL else ch for ch in s[i + 1:end]))
                quoted = True
                i = end + 1
                continue
            if c == '"':
                i, norm, exp = self._double(i + 1)
                out.append(norm)
                expands = expands or exp
                quoted = True
                continue
            i, expanded = self._literal_or_expansion(i, out)
            expands = expands or expanded
        return i, "".join(out), expands, quoted

    def _double(self, i):
        """Inside double quotes from ``i`` (after the quote): (end after the quote, norm, expands)."""
        s, n = self.s, self.n
        out = []
        expands = False
        while i < n:
            c = s[i]
            if c == '"':
                return i + 1, "".join(out), expands
            if c == "\\" and i + 1 < n:
                nxt = s[i + 1]
                if nxt == "\n":
                    i += 2
                    continue
                if nxt in _SPECIAL:
                    out.append("\\" + nxt)
                else:
                    out.append("\\\\" + nxt)  # a backslash that stays literal
                i += 2
                continue
            i, expanded = self._literal_or_expansion(i, out)
            expands = expands or expanded
        raise ShellSyntaxError("unclosed double quote")

    def _literal_or_expansion(self, i, out):
        """The character at ``i`` as itself, or the expansion it starts (``$``, backquote), onto
        ``out``: (end, whether it expands)."""
        if self.s[i] in "$`":
            i, norm = self._expansion(i)
            out.append(norm)
            return i, norm != "\\$"
        out.append(self.s[i])
        return i + 1, False

    def _expansion(self, i):
        """``$NAME``, ``${...}``, ``$(...)``, ``$((...))`` or a backquote at ``i``: (end, norm).

        Quotes inside are normalised as everywhere else; the text is otherwise kept.
        """
        s, n = self.s, self.n
        if s[i] == "`":
            end = i + 1
            while end < n and s[end] != "`":
                end += 2 if s[end] == "\\" else 1
            if end >= n:
                raise ShellSyntaxError("unclosed backquote")
            return end + 1, s[i:end + 1]
        if i + 1 >= n:
            return i + 1, "\\$"  # a lone $ is literal
        nxt = s[i + 1]
        if nxt == "{":
            end, inner = self._nested(i + 2, "{", "}")
            return end, "${" + inner + "}"
        if nxt == "(":
            if s.startswith("((", i + 1):
                end, inner = self._nested(i + 3, "(", ")")
                if end < n and s[end] == ")":
                    return end + 1, "$((" + inner + "))"
                raise ShellSyntaxError("unclosed $((")
            end, inner = self._nested(i + 2, "(", ")")
            return end, "$(" + inner + ")"
        m = re.match(r"[A-Za-z_][A-Za-z0-9_]*", s[i + 1:i + 256])
        if m:  # $NAME is ${NAME}: one spelling in the normal form
            return i + 1 + m.end(), "${" + m.group(0) + "}"
        m = re.match(r"[0-9@*#?$!-]", s[i + 1:i + 2])
        if m:
            return i + 1 + m.end(), "$" + m.group(0)
        return i + 1, "\\$"  # a lone $ is literal

    def _nested(self, i, open_c, close_c):
        """Text up to the matching ``close_c`` (quotes normalised): (end after it, inner)."""
        s, n = self.s, self.n
        depth = 1
        out = []
        while i < n:
            c = s[i]
            if c == "\\" and i + 1 < n:
                if s[i + 1] == "\n":
                    i += 2
                    continue
                out.append(s[i:i + 2])
                i += 2
                continue
            if c == "'":
                end = s.find("'", i + 1)
                if end < 0:
                    raise ShellSyntaxError("unclosed single quote")
                out.append("".join("\\" + ch if ch in _SPECIAL else ch for ch in s[i + 1:end]))
                i = end + 1
                continue
            if c == '"':
                i, norm, _exp = self._double(i + 1)
                out.append(norm)
                continue
            if c == "$" or c == "`":
                i, norm = self._expansion(i)
                out.append(norm)
                continue
            if c == open_c:
                depth += 1
            elif c == close_c:
                depth -= 1
                if depth == 0:
                    return i + 1, "".join(out)
            out.append(c)
            i += 1
        raise ShellSyntaxError("unclosed %s" % open_c)

    # -- commands ----------------------------------------------------------------------------
    def commands(self):
        """Yield (start line, end line, [tokens]) per simple command; a token is a Word or an
        operator string (``|``, ``&&``, ``(``, ...). Comments are skipped. A command whose
        words do not lex yields (line, line, ShellSyntaxError) and the scan resumes at the next
        line."""
        s, n = self.s, self.n
        i = 0
        tokens = []
        start = None
        in_array = False  # inside NAME=( ... ): newlines separate items, not commands
        while i < n:
            c = s[i]
            if c in " \t" or (c == "\n" and in_array):
                i += 1
                continue
            if c == "\\" and i + 1 < n and s[i + 1] == "\n":
                i += 2
                continue
            if c == "\n" or c == ";":
                if tokens:
                    yield start, self.line_of(i), tokens
                tokens, start = [], None
                i += 1
                continue
            if c == "#":
                end = s.find("\n", i)
                i = n if end < 0 else end
                continue
            if start is None:
                start = self.line_of(i)
            if c in _OPERATOR_CHARS:
                op = s[i:i + 2] if s[i:i + 2] in ("&&", "||", ">>", "<<", ";;", "|&", "&>") else c
                if op == "(" and tokens and not isinstance(tokens[-1], str) and \
                        re.match(r"^[A-Za-z_]\w*\+?=$", tokens[-1].raw) and s[i - 1] == "=":
                    in_array = True
                elif op == ")":
                    in_array = False
                tokens.append(op)
                i += len(op)
                continue
            try:
                end, norm, expands, quoted = self.word(i)
            except ShellSyntaxError as exc:
                line = self.line_of(i)
                yield line, line, exc
                nl = s.find("\n", i)
                i = n if nl < 0 else nl + 1
                tokens, start = [], None
                continue
            tokens.append(Word(s[i:end], norm, expands, quoted, self.line_of(i)))
            i = end
        if tokens:
            yield start, self.line_of(n), tokens


def normal_form(word):
    """The normal form of one shell word (quoting removed, nothing else changed)."""
    lexer = _Lexer(word)
    end, norm, _expands, _quoted = lexer.word(0, stop_at_space=False)
    return norm


def _normal_in_double_quotes(text):
    """The normal form of ``text`` read as the inside of a double-quoted string (the catalog's
    convention: its values are rendered inside double quotes)."""
    lexer = _Lexer(text + '"')
    try:
        end, norm, _exp = lexer._double(0)
    except ShellSyntaxError:
        return text
    return norm if end == lexer.n else text  # a bare " inside: not a double-quoted value


def _expands(norm):
    """Whether a normal form expands anything (an unescaped ``$`` expansion or a backquote)."""
    i = 0
    while i < len(norm):
        c = norm[i]
        if c == "\\":
            i += 2
            continue
        if c == "`":
            return True
        if c == "$" and i + 1 < len(norm) and (norm[i + 1] in "{(_@*#?$!-" or norm[i + 1].isalnum()):
            return True
        i += 1
    return False


# ---------------------------------------------------------------------------------------------
# config_<SYSTEM>.sh

_DECLARE = ("declare", "typeset", "readonly", "local")
_BLOCK_OPEN = ("if", "case", "for", "while", "until", "select", "function", "elif")
_BLOCK_MIDDLE = ("then", "do", "else", "{")
_BLOCK_CLOSE = ("fi", "esac", "done", "}")


def include_file(path_norm):
    """The file an include names relative to the including config, or None.

    ``$(dirname ${BASH_SOURCE[0]})/config_common.sh``, ``$(dirname "$0")/x.sh``,
    ``./x.sh`` and ``x.sh`` name ``config_common.sh`` / ``x.sh``; anything else (an absolute
    path, a path with other expansions) is reported as it is, with ``file`` None.
    """
    m = re.match(r"^(?:\$\(dirname (?:\$\{BASH_SOURCE(?:\[0\])?\}|\$BASH_SOURCE|\$0|\$\{0\})\)/"
                 r"|\$\(cd \$\(dirname (?:\$\{BASH_SOURCE(?:\[0\])?\}|\$0)\) && pwd\)/|\./)?"
                 r"([A-Za-z0-9_.+-]+)$", path_norm)
    if m and "$" not in m.group(1):
        return m.group(1)
    return None


def parse_config_sh(text, source=None):
    """Read an AMD ``config_<SYSTEM>.sh`` without executing it.

    Returns a dict:
      variables    {name: {"value", "raw", "expands", "exported", "line", "op"}} in the order
                   names are first assigned; the last assignment of a name wins, as in bash.
                   ``raw`` is the word as written after ``=``; ``value`` its normal form (quotes
                   removed); ``exported``: assigned with ``export`` (or ``declare -x``), or
                   exported by a later ``export NAME``; ``op`` is ``=`` or ``+=``.
      order        the names, in that order
      assignments  every assignment in file order (a name assigned twice appears twice)
      exports      names exported without a value (``export NAME``), with their lines
      includes     [{"line", "command" (source or .), "path" (normal form), "raw",
                     "file" (see include_file)}]
      unparsed     [{"line", "text", "reason"}]: every command that is not one of the above
    ``source`` (a file name) is only copied into the messages.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    result = {"source": source, "variables": {}, "order": [], "assignments": [], "exports": [],
              "includes": [], "unparsed": []}

    def unparsed(start, end, reason):
        if result["unparsed"] and result["unparsed"][-1]["line"] == start:
            return  # one entry a line (`if ...; then` is two commands)
        snippet = "\n".join(lines[start - 1:end]).strip()
        result["unparsed"].append({"line": start, "text": snippet, "reason": reason})

    depth = 0  # inside if/case/loops/functions: assignments there are conditional
    for start, end, tokens in _Lexer(text).commands():
        if isinstance(tokens, ShellSyntaxError):
            unparsed(start, end, str(tokens))
            continue
        tokens = list(tokens)
        while tokens and not isinstance(tokens[0], str) and tokens[0].norm in _BLOCK_MIDDLE:
            tokens.pop(0)
        if not tokens:
            continue
        first = tokens[0]
        if not isinstance(first, str) and first.norm in _BLOCK_CLOSE:
            depth = max(0, depth - 1)
            unparsed(start, end, "not an assignment: end of a block (%s)" % first.norm)
            continue
        if not isinstance(first, str) and (first.norm in _BLOCK_OPEN or (
                len(tokens) >= 3 and tokens[1] == "(" and tokens[2] == ")")):
            depth += 1
            unparsed(start, end, "not an assignment: %s (assignments inside are read as "
                                 "conditional)" % ("a function" if tokens[1:2] == ["("] else
                                                   "a block (%s)" % first.norm))
            continue
        if any(isinstance(t, str) for t in tokens):
            first = tokens[0]
            if (not isinstance(first, str) and re.match(r"^[A-Za-z_]\w*\+?=$", first.raw)
                    and len(tokens) > 1 and tokens[1] == "("):
                reason = "array assignment %s(...) is not read" % first.raw
            elif not isinstance(first, str) and not _ASSIGN_RE.match(first.raw):
                reason = "not an assignment: command %r (with a pipe or redirection)" % first.raw
            else:
                reason = "not an assignment: a compound command, pipe or redirection"
            unparsed(start, end, reason)
            continue
        words = tokens
        head = words[0].norm
        if head in ("source", "."):
            if len(words) < 2:
                unparsed(start, end, "%s without a file" % head)
                continue
            result["includes"].append({"line": start, "command": head, "path": words[1].norm,
                                       "raw": words[1].raw, "file": include_file(words[1].norm),
                                       "args": [w.raw for w in words[2:]]})
            continue
        declaring = head == "export" or head in _DECLARE
        exported = head == "export"
        rest = words
        if declaring:
            flags = "".join(w.norm[1:] for w in words[1:] if w.norm.startswith("-"))
            if head == "export" and "n" in flags:
                unparsed(start, end, "export -n (un-export) is not read")
                continue
            if "a" in flags or "A" in flags or "f" in flags:
                unparsed(start, end, "%s -%s is not read" % (head, flags))
                continue
            exported = exported or "x" in flags
            rest = [w for w in words[1:] if not w.norm.startswith("-")]
            if not rest:
                if head != "export":
                    unparsed(start, end, "not an assignment")
                continue
        items = []
        bad = None
        for w in rest:
            m = _ASSIGN_RE.match(w.raw)
            if m:
                items.append((m.group(1), m.group(2), w))
            elif declaring and NAME_RE.match(w.raw):
                items.append((w.raw, None, w))
            else:
                bad = w
                break
        if bad is not None:
            if declaring:
                reason = "not an assignment: %s %r" % (head, bad.raw)
            elif items:
                reason = "not an assignment: a command with variables set for it (%s)" % bad.raw
            else:
                reason = "not an assignment: command %r" % bad.raw
            unparsed(start, end, reason)
            continue
        for name, op, w in items:
            if op is None:  # export NAME
                result["exports"].append({"name": name, "line": w.line})
                if name in result["variables"]:
                    result["variables"][name]["exported"] = True
                continue
            raw_value = w.raw[len(name) + len(op):]
            if raw_value.startswith("("):
                unparsed(start, end, "array assignment %s%s(...) is not read" % (name, op))
                continue
            try:
                norm = normal_form(raw_value) if raw_value else ""
            except ShellSyntaxError as exc:
                unparsed(start, end, str(exc))
                continue
            entry = {"name": name, "value": norm, "raw": raw_value, "expands": _expands(norm),
                     "exported": exported, "line": w.line, "op": op, "conditional": depth > 0}
            result["assignments"].append(entry)
            previous = result["variables"].get(name)
            if previous is None:
                result["order"].append(name)
            var = dict(entry)
            var.pop("name")
            if previous is not None and previous["exported"]:
                var["exported"] = True  # an exported name stays exported when reassigned
            result["variables"][name] = var
    # a later `export NAME` exports an earlier plain assignment
    for item in result["exports"]:
        if item["name"] in result["variables"]:
            result["variables"][item["name"]]["exported"] = True
    return result


def config_values(parsed, raw=False):
    """{name: value} of a parse_config_sh / parse_config_tree result, in order: the normal
    form, or with ``raw`` the word as written after ``=``."""
    key = "raw" if raw else "value"
    return {name: parsed["variables"][name][key] for name in parsed["order"]}


def parse_config_tree(name, read, _seen=None):
    """Parse config ``name`` and, at each include, the file it names, recursively.

    ``read(file_name)`` returns the text of a file beside the config, or None when there is
    none. The result has parse_config_sh's shape, over all files: variables in source order
    (an included file's at the place of its include), each assignment and unparsed line
    carrying its ``file``; includes carry ``found`` (False: the file was not there, or the
    path could not be read as a file beside the config: ``file`` None).
    """
    seen = set() if _seen is None else _seen
    seen.add(name)
    text = read(name)
    merged = {"source": name, "variables": {}, "order": [], "assignments": [], "exports": [],
              "includes": [], "unparsed": []}
    if text is None:
        merged["unparsed"].append({"line": 0, "text": "", "reason": "%s: no such file" % name,
                                   "file": name})
        return merged
    own = parse_config_sh(text, name)
    events = [(a["line"], 0, "assign", a) for a in own["assignments"]]
    events += [(i["line"], 1, "include", i) for i in own["includes"]]
    events += [(e["line"], 2, "export", e) for e in own["exports"]]
    for line, _order, kind, item in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == "assign":
            _merge_assignment(merged, dict(item, file=name))
        elif kind == "export":
            merged["exports"].append(dict(item, file=name))
            if item["name"] in merged["variables"]:
                merged["variables"][item["name"]]["exported"] = True
        else:
            inc = dict(item, source_file=name, found=False)
            merged["includes"].append(inc)
            target = item["file"]
            if target is None or target in seen:
                if target in seen:
                    inc["reason"] = "include cycle"
                continue
            sub_text = read(target)
            if sub_text is None:
                continue
            inc["found"] = True
            sub = parse_config_tree(target, read, seen)
            for a in sub["assignments"]:
                _merge_assignment(merged, a)
            merged["includes"].extend(sub["includes"])
            merged["exports"].extend(sub["exports"])
            merged["unparsed"].extend(sub["unparsed"])
    merged["unparsed"].extend(dict(u, file=name) for u in own["unparsed"])
    return merged


def _merge_assignment(merged, entry):
    merged["assignments"].append(entry)
    name = entry["name"]
    previous = merged["variables"].get(name)
    if previous is None:
        merged["order"].append(name)
    var = {k: v for k, v in entry.items() if k != "name"}
    if previous is not None and previous["exported"]:
        var["exported"] = True
    merged["variables"][name] = var


def compare_config(image_env, catalog_env):
    """Compare the image's config with the catalog's, by variable name.

    ``image_env``: a parse_config_sh / parse_config_tree result, or {name: shell word as
    written after ``=``}. ``catalog_env``: {name: value as the catalog holds it, i.e. the text
    rendered inside double quotes}. Values are compared in normal form (quoting removed,
    nothing else). Returns
      added    [{"name", "image"}]             in the image, not in the catalog
      removed  [{"name", "catalog"}]           in the catalog, not in the image
      changed  [{"name", "image", "catalog"}]  in both, values differ (as written)
      same     [name, ...]
    in the image's order (then the catalog's for ``removed``).
    """
    if isinstance(image_env, dict) and "variables" in image_env and "order" in image_env:
        image = [(n, image_env["variables"][n]["raw"], image_env["variables"][n]["value"])
                 for n in image_env["order"]]
    else:
        image = [(n, str(v), normal_form(str(v))) for n, v in image_env.items()]
    catalog = {n: ("" if v is None else str(v)) for n, v in catalog_env.items()}
    out = {"added": [], "removed": [], "changed": [], "same": []}
    seen = set()
    for name, raw, norm in image:
        seen.add(name)
        if name not in catalog:
            out["added"].append({"name": name, "image": raw})
            continue
        if norm == _normal_in_double_quotes(catalog[name]):
            out["same"].append(name)
        else:
            out["changed"].append({"name": name, "image": raw, "catalog": catalog[name]})
    for name, value in catalog.items():
        if name not in seen:
            out["removed"].append({"name": name, "catalog": value})
    return out


# ---------------------------------------------------------------------------------------------
# run_with_docker.sh

#: docker run options that take a value, by every spelling; the value is the option's key.
_VALUE_OPTIONS = {
    "-v": "volume", "--volume": "volume", "--mount": "mount", "--device": "device",
    "--security-opt": "security_opt", "--cap-add": "cap_add", "--cap-drop": "cap_drop",
    "--group-add": "group_add", "--ipc": "ipc", "--net": "network", "--network": "network",
    "--pid": "pid", "--uts": "uts", "--shm-size": "shm_size", "--ulimit": "ulimit",
    "-w": "workdir", "--workdir": "workdir", "-e": "env", "--env": "env",
    "--env-file": "env_file", "--name": "name", "--entrypoint": "entrypoint", "-u": "user",
    "--user": "user", "-h": "hostname", "--hostname": "hostname", "-l": "label",
    "--label": "label", "--gpus": "gpus", "--runtime": "runtime", "-m": "memory",
    "--memory": "memory", "--memory-swap": "memory_swap", "--cpus": "cpus",
    "--cpuset-cpus": "cpuset_cpus", "--tmpfs": "tmpfs", "--add-host": "add_host",
    "--dns": "dns", "--log-driver": "log_driver", "--log-opt": "log_opt", "--restart": "restart",
    "--stop-signal": "stop_signal", "--stop-timeout": "stop_timeout", "--pull": "pull",
    "--platform": "platform", "--userns": "userns", "--cgroupns": "cgroupns",
    "--device-cgroup-rule": "device_cgroup_rule", "--sysctl": "sysctl",
    "--volumes-from": "volumes_from", "-p": "publish", "--publish": "publish", "--expose": "expose",
    "--oom-score-adj": "oom_score_adj", "--init-path": "init_path", "--cidfile": "cidfile",
    "--mac-address": "mac_address", "--ip": "ip", "--pids-limit": "pids_limit",
    "--cgroup-parent": "cgroup_parent", "--storage-opt": "storage_opt", "--isolation": "isolation",
    "--health-cmd": "health_cmd", "--attach": "attach", "-a": "attach", "--detach-keys": "detach_keys",
    "--annotation": "annotation", "--network-alias": "network_alias", "--hooks-dir": "hooks_dir",
}
#: options that are flags (no value), by every spelling.
_FLAG_OPTIONS = {
    "--rm": "rm", "--init": "init", "-d": "detach", "--detach": "detach", "-i": "interactive",
    "--interactive": "interactive", "-t": "tty", "--tty": "tty", "--privileged": "privileged",
    "--read-only": "read_only", "-P": "publish_all", "--publish-all": "publish_all",
    "--no-healthcheck": "no_healthcheck", "--oom-kill-disable": "oom_kill_disable",
    "-q": "quiet", "--quiet": "quiet", "--sig-proxy": "sig_proxy",
}
_LIST_KEYS = ("volume", "mount", "device", "security_opt", "cap_add", "cap_drop", "group_add",
              "ulimit", "env", "env_file", "label", "tmpfs", "add_host", "dns", "log_opt",
              "sysctl", "volumes_from", "publish", "expose", "device_cgroup_rule", "storage_opt",
              "annotation", "network_alias", "attach")
_EXEC_VALUE = {"-e": "env", "--env": "env", "--env-file": "env_file", "-w": "workdir",
               "--workdir": "workdir", "-u": "user", "--user": "user",
               "--detach-keys": "detach_keys"}
_EXEC_FLAGS = {"-d": "detach", "--detach": "detach", "-i": "interactive",
               "--interactive": "interactive", "-t": "tty", "--tty": "tty",
               "--privileged": "privileged"}


def split_top_level(text, sep=":"):
    """Split at ``sep`` outside ``${...}``, ``$(...)`` and quotes (``${A:-x}:/d`` is 2 parts)."""
    parts, depth, cur, i = [], 0, [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if text.startswith("${", i) or text.startswith("$(", i):
            depth += 1
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c in "({" and depth:
            depth += 1
        elif c in ")}" and depth:
            depth -= 1
        if c == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


def _volume(value):
    parts = split_top_level(value, ":")
    host = parts[0] if len(parts) > 1 else None
    container = parts[1] if len(parts) > 1 else parts[0]
    mode = ":".join(parts[2:]) if len(parts) > 2 else None
    return {"host": host, "container": container, "mode": mode, "raw": value}


def _env_item(value):
    name, sep, val = value.partition("=")
    return {"name": name, "value": val if sep else None, "raw": value}


def _empty_options():
    opts = {key: [] for key in _LIST_KEYS}
    opts.update({"other": [], "unresolved": []})
    return opts


def _parse_options(words, value_table, flag_table):
    """(options, index of the first non-option word). ``words`` are (norm, raw) pairs."""
    opts = _empty_options()
    i = 0
    while i < len(words):
        norm, raw = words[i]
        if norm == "--":
            i += 1
            break
        if not norm.startswith("-") or norm == "-":
            break
        name, eq, inline = norm.partition("=")
        if name in value_table:
            if eq:
                value = inline
            elif i + 1 < len(words):
                i += 1
                value = words[i][0]
            else:
                opts["other"].append(raw)
                i += 1
                continue
            _set_option(opts, value_table[name], value)
        elif name in flag_table:
            opts[flag_table[name]] = (inline.lower() not in ("false", "0")) if eq else True
        elif not name.startswith("--") and len(name) > 2 and all("-" + ch in flag_table for ch in name[1:]):
            for ch in name[1:]:  # -it, -dit
                opts[flag_table["-" + ch]] = True
        else:
            opts["other"].append(raw)
        i += 1
    return opts, i


def _set_option(opts, key, value):
    if key == "volume":
        opts["volume"].append(_volume(value))
    elif key == "env":
        opts["env"].append(_env_item(value))
    elif key in _LIST_KEYS:
        opts[key].append(value)
    else:
        opts[key] = value


def parse_docker_argv(argv):
    """One ``docker run`` as an argv list (the native runner's container_run_argv(spec)):
    the same shape as an entry of parse_docker_run's ``runs`` (without line numbers)."""
    words = [(str(a), str(a)) for a in argv]
    start = 0
    if words and words[0][0].rsplit("/", 1)[-1] in ("docker", "podman", "nerdctl"):
        start = 1
    if len(words) > start and words[start][0] == "run":
        start += 1
    opts, idx = _parse_options(words[start:], _VALUE_OPTIONS, _FLAG_OPTIONS)
    rest = [w[0] for w in words[start + idx:]]
    return dict(opts, program=argv[0] if argv else None, image=rest[0] if rest else None,
                command=rest[1:], argv=[str(a) for a in argv])


def _docker_program(words):
    """(index after the docker program words, program text) or None when the command is not
    docker/podman: ``docker``, ``podman``, ``sudo docker``, ``${DOCKER}``, ``$DOCKER_CMD``."""
    i = 0
    prefix = []
    while i < len(words) and words[i].norm in ("sudo", "command", "exec", "-n", "-E", "time"):
        prefix.append(words[i].raw)
        i += 1
    if i >= len(words):
        return None
    w = words[i].norm
    base = w.rsplit("/", 1)[-1]
    if base in ("docker", "podman", "nerdctl") or re.match(
            r"^\$\{?[A-Za-z_]*(DOCKER|PODMAN|RUNTIME|CONTAINER_CMD)[A-Za-z_]*\}?$", w, re.I):
        return i + 1, " ".join(prefix + [words[i].raw])
    return None


def _loop_info(tokens, start):
    """A ``for VAR in ...; do`` header: {"line", "variable", "over", "nexp", "first"}."""
    words = [t for t in tokens if not isinstance(t, str)]
    if len(words) < 3 or words[0].norm != "for" or words[2].norm != "in":
        return None
    over = [w.raw for w in words[3:] if w.norm != "do"]
    text = " ".join(over)
    info = {"line": start, "variable": words[1].norm, "over": text,
            "uses_nexp": "NEXP" in text, "first": None, "last": None}
    m = re.search(r"seq\s+(\S+)\s+(.+?)\)\s*$", text)
    if m:
        info["first"], info["last"] = m.group(1).strip('"'), m.group(2).strip().strip('"')
    return info


def parse_docker_run(script_text):
    """Read AMD's ``run_with_docker.sh`` / ``run_with_docker_slurm.sh`` without executing it.

    Returns a dict:
      runs     one per ``docker run`` (any spelling of the program, see _docker_program):
               {"line", "end_line", "text", "program", "argv" (raw words, arrays expanded),
                "image", "command", "volume" [{"host","container","mode","raw"}], "device",
                "security_opt", "cap_add", "cap_drop", "group_add", "ulimit", "env"
                [{"name","value" (None: from the caller's environment),"raw"}], "env_file",
                "mount", "label", "tmpfs", ..., "ipc", "network", "pid", "uts", "shm_size",
                "workdir", "name", "user", "entrypoint", "init", "detach", "rm", "privileged",
                "interactive", "tty" (booleans only when given), "other" (options not known
                here, as written), "unresolved" (array expansions whose items the script does
                not spell out, e.g. one filled by mapfile)}
               Values are in normal form: quoting removed, ``${VAR}`` kept symbolic.
      execs    one per ``docker exec``: {"line", "end_line", "text", "program", "container",
               "command", "env", "env_file", "workdir", "user", "interactive", "tty",
               "detach", "unresolved", "other", "in_loop" (line of the enclosing loop or None)}
      loops    ``for`` loops: {"line", "variable", "over", "uses_nexp", "first", "last"}
      arrays   {name: [items]} the script spells out (``a=(...)``, ``a+=(...)``); a name filled
               by ``mapfile``/``readarray`` maps to None
      required names the script requires (``: "${NAME:?...}"``)
      defaults {name: default} from ``: "${NAME:=default}"``
      unparsed_commands [{"line", "reason"}]: text the lexer could not read
    """
    lexer = _Lexer(script_text)
    out = {"runs": [], "execs": [], "loops": [], "arrays": {}, "assignments": {}, "required": [],
           "defaults": {}, "unparsed_commands": []}
    open_loops = []
    for start, end, tokens in lexer.commands():
        if isinstance(tokens, ShellSyntaxError):
            out["unparsed_commands"].append({"line": start, "reason": str(tokens)})
            continue
        _collect_arrays(tokens, out["arrays"], dynamic=bool(open_loops))
        words_only = [t for t in tokens if not isinstance(t, str)]
        if words_only and words_only[0].norm == ":":
            for w in words_only[1:]:
                m = re.match(r"^\$\{([A-Za-z_]\w*)(:?[?=])(.*)\}$", w.norm, re.S)
                if m and "?" in m.group(2):
                    out["required"].append(m.group(1))
                elif m:
                    out["defaults"][m.group(1)] = m.group(3)
        loop = _loop_info(tokens, start)
        if loop:
            out["loops"].append(loop)
            open_loops.append(loop)
        if words_only and words_only[0].norm == "done" and open_loops:
            open_loops.pop()
        for segment in _segments(tokens):
            _collect_assignments(segment, out["assignments"])
            found = _docker_program(segment)
            if not found:
                continue
            idx, program = found
            if idx >= len(segment):
                continue
            sub = segment[idx].norm
            expanded, unresolved = _expand_arrays(segment[idx + 1:], out["arrays"])
            text = "\n".join(lexer.s.split("\n")[start - 1:end])
            base = {"line": segment[0].line, "end_line": end, "text": text.strip(),
                    "program": program, "argv": [norm for norm, _raw in expanded]}
            if sub == "run":
                opts, i = _parse_options(expanded, _VALUE_OPTIONS, _FLAG_OPTIONS)
                rest = [norm for norm, _raw in expanded[i:]]
                opts["unresolved"] += unresolved
                base.update(opts, image=rest[0] if rest else None, command=rest[1:])
                out["runs"].append(base)
            elif sub == "exec":
                opts, i = _parse_options(expanded, _EXEC_VALUE, _EXEC_FLAGS)
                rest = [norm for norm, _raw in expanded[i:]]
                keep = {k: v for k, v in opts.items() if k in ("env", "env_file", "other",
                                                                 "unresolved") or not isinstance(v, list)}
                keep["unresolved"] = keep.get("unresolved", []) + unresolved
                base.update(keep, container=rest[0] if rest else None, command=rest[1:],
                            in_loop=open_loops[-1]["line"] if open_loops else None)
                out["execs"].append(base)
    for name in out["arrays"]:
        out["assignments"].pop(name, None)
    return out


def _segments(tokens):
    """Simple commands of one command line: split at pipes, && / ||, subshell parentheses,
    braces; a segment is a list of Words."""
    seg = []
    for t in tokens:
        if isinstance(t, str) or t.norm in ("{", "}", "then", "do", "else", "!"):
            if seg:
                yield seg
            seg = []
            continue
        seg.append(t)
    if seg:
        yield seg


def _collect_assignments(segment, assignments):
    """Plain ``NAME=word`` (also after readonly/export/declare/local) into ``assignments``."""
    words = segment[1:] if segment and segment[0].norm in ("readonly", "export", "declare",
                                                           "local", "typeset") else segment
    words = [w for w in words if not w.norm.startswith("-")]
    if not words:
        return
    found = []
    for w in words:
        m = _ASSIGN_RE.match(w.raw)
        if not m or m.group(2) != "=" or w.raw[m.end():].startswith("("):
            return  # a command with variables set for it, or an array: not a script variable
        try:
            found.append((m.group(1), normal_form(w.raw[m.end():]) if w.raw[m.end():] else ""))
        except ShellSyntaxError:
            return
    assignments.update(found)


def resolve(text, parsed, values=None, rounds=8):
    """``text`` with ``${NAME}``/``$NAME`` replaced from ``values`` (the caller's), then from the
    script's own assignments and ``: "${NAME:=default}"`` defaults (a parse_docker_run
    result); ``$(pwd)`` from ``values["PWD"]``. Whatever stays unknown stays symbolic."""
    known = dict(parsed.get("defaults", {}))
    known.update(parsed.get("assignments", {}))
    known.update(values or {})
    for _ in range(rounds):
        new = text.replace("$(pwd)", str(known["PWD"])) if "PWD" in known else text
        new = re.sub(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)",
                     lambda m: str(known.get(m.group(1) or m.group(2), m.group(0))), new)
        if new == text:
            break
        text = new
    return text


def _collect_arrays(tokens, arrays, dynamic=False):
    """``name=( ... )`` / ``name+=( ... )`` / ``mapfile -t name`` into ``arrays``; an array
    filled by mapfile or appended to in a loop (``dynamic``) is None: not spelled out."""
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if not isinstance(t, str):
            m = re.match(r"^([A-Za-z_]\w*)(\+?=)$", t.raw)
            if m and i + 1 < len(tokens) and tokens[i + 1] == "(":
                items, j = [], i + 2
                while j < len(tokens) and tokens[j] != ")":
                    if not isinstance(tokens[j], str):
                        items.append(tokens[j].norm)
                    j += 1
                name = m.group(1)
                if dynamic and m.group(2) == "+=":
                    arrays[name] = None
                elif m.group(2) == "+=" and name in arrays:
                    arrays[name] = None if arrays[name] is None else arrays[name] + items
                elif m.group(2) == "=":
                    arrays[name] = items
                else:
                    arrays.setdefault(name, None)
                i = j + 1
                continue
            if t.norm in ("mapfile", "readarray"):
                j = i + 1
                while j < len(tokens) and not isinstance(tokens[j], str):
                    word = tokens[j].norm
                    if word in ("-d", "-n", "-O", "-s", "-u", "-C", "-c"):
                        j += 2
                        continue
                    if not word.startswith("-"):
                        if NAME_RE.match(word):
                            arrays[word] = None
                        break
                    j += 1
        i += 1


def _expand_arrays(words, arrays):
    """Words as (norm, raw) with ``"${name[@]}"`` replaced by the array's items when the script
    spells them out; the others are left out and listed as unresolved (in option position
    they are options the script computes, e.g. ``--env=NAME`` for each name a config exports)."""
    out, unresolved = [], []
    for w in words:
        m = re.match(r"^\$\{([A-Za-z_]\w*)\[[@*]\]\}$", w.norm)
        if m:
            items = arrays.get(m.group(1))
            if items is not None:
                out.extend((item, item) for item in items)
            else:
                unresolved.append(w.norm)
            continue
        out.append((w.norm, w.raw))
    return out, unresolved


# ---------------------------------------------------------------------------------------------
# AMD's launch against the native runner's

def _substitute(text, values):
    """``${NAME}``, ``$NAME`` and ``$(pwd)`` replaced from ``values``; None if anything that
    expands is left."""
    if text is None:
        return None

    def repl(m):
        name = m.group(1) or m.group(2)
        return str(values[name]) if name in values else m.group(0)

    text = text.replace("$(pwd)", str(values["PWD"])) if "PWD" in values else text
    text = re.sub(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)", repl, text)
    return None if re.search(r"(?<!\\)[$`]", text) else text


def _cap(value):
    value = value.upper()
    return value[4:] if value.startswith("CAP_") else value


def _security(value):
    key, sep, val = value.partition("=")
    if not sep:
        key, sep, val = value.partition(":")
    return key + ("=" + val if sep else "")


def _device(value):
    parts = value.split(":")
    return parts[0], value


def compare_launch(amd, native, values=None):
    """How the native runner's ``docker run`` differs from AMD's, by name.

    ``amd``: a parse_docker_run result (its long-lived container: the first ``docker run``
    whose command is ``sleep infinity``, else the first) or one of its ``runs``; ``native``:
    the native runner's argv (container_run_argv(spec)) or a parse_docker_argv result.
    ``values`` ({"DATADIR": ..., "PWD": the code directory, ...}) resolves AMD's symbolic
    host paths; a host path that still expands after that is not compared (only the
    container side is).

    Returns a list of {"kind", "name", "amd", "native", "difference"}: kind is one of volume,
    device, security_opt, cap_add, cap_drop, group_add, ulimit, env, env_file, ipc, network,
    pid, uts, shm_size, workdir, user, init, detach, rm, privileged, other, image, name,
    command (image and name only when AMD's resolves to a concrete value);
    difference is "only in AMD's", "only in the native runner's" or "differs".
    """
    script = {}
    if "runs" in amd:
        script = amd
        runs = amd["runs"]
        if not runs:
            raise ValueError("AMD's script has no docker run command")
        amd = next((r for r in runs if (r.get("command") or [])[:1] == ["sleep"]), runs[0])
    if isinstance(native, (list, tuple)):
        native = parse_docker_argv(native)
    values = dict(values or {})

    def concrete(text):
        """AMD's symbolic text resolved (the caller's values, then the script's own variables);
        None while something in it still expands."""
        if text is None:
            return None
        return _substitute(resolve(text, script, values) if script else text, values)

    diffs = []

    def keyed(kind, a_items, n_items, amd_only=True):
        for name in list(a_items) + [k for k in n_items if k not in a_items]:
            a, n = a_items.get(name), n_items.get(name)
            if a is None:
                diffs.append({"kind": kind, "name": name, "amd": None, "native": n,
                              "difference": "only in the native runner's"})
            elif n is None:
                diffs.append({"kind": kind, "name": name, "amd": a, "native": None,
                              "difference": "only in AMD's"})
            elif a != n and not (isinstance(a, dict) and a.get("_same")):
                diffs.append({"kind": kind, "name": name, "amd": a, "native": n,
                              "difference": "differs"})

    # volumes, by the path the container sees
    a_vol = {}
    for v in amd.get("volume", []):
        a_vol[v["container"].rstrip("/") or "/"] = v
    n_vol = {v["container"].rstrip("/") or "/": v for v in native.get("volume", [])}
    for path in list(a_vol) + [p for p in n_vol if p not in a_vol]:
        a, n = a_vol.get(path), n_vol.get(path)
        if a is None or n is None:
            diffs.append({"kind": "volume", "name": path, "amd": a and a["raw"],
                          "native": n and n["raw"],
                          "difference": "only in AMD's" if n is None else "only in the native runner's"})
            continue
        a_host = concrete(a["host"])
        problems = []
        if a_host is not None and n["host"] is not None and \
                a_host.rstrip("/") != n["host"].rstrip("/"):
            problems.append("host")
        if (a["mode"] or "rw") != (n["mode"] or "rw"):
            problems.append("mode")
        if problems:
            diffs.append({"kind": "volume", "name": path, "amd": a["raw"], "native": n["raw"],
                          "difference": "differs", "what": problems,
                          "amd_host": a_host if a_host is not None else a["host"]})
    keyed("device", dict(_device(d) for d in amd.get("device", [])),
          dict(_device(d) for d in native.get("device", [])))
    for kind, norm in (("security_opt", _security), ("cap_add", _cap), ("cap_drop", _cap),
                       ("group_add", str), ("env_file", str), ("mount", str), ("tmpfs", str),
                       ("sysctl", str), ("add_host", str)):
        keyed(kind, {norm(v): v for v in amd.get(kind, [])},
              {norm(v): v for v in native.get(kind, [])})
    keyed("ulimit", {u.split("=")[0]: u for u in amd.get("ulimit", [])},
          {u.split("=")[0]: u for u in native.get("ulimit", [])})
    a_env = {e["name"]: e["raw"] for e in amd.get("env", [])}
    n_env = {e["name"]: e["raw"] for e in native.get("env", [])}
    keyed("env", a_env, n_env)
    for kind in ("ipc", "network", "pid", "uts", "shm_size", "workdir", "user", "entrypoint",
                 "gpus", "runtime", "userns", "cgroupns", "hostname"):
        a, n = amd.get(kind), native.get(kind)
        if a != n:
            diffs.append({"kind": kind, "name": kind, "amd": a, "native": n,
                          "difference": "only in AMD's" if n is None else
                          "only in the native runner's" if a is None else "differs"})
    for kind in ("init", "detach", "rm", "privileged", "read_only", "interactive", "tty"):
        a, n = bool(amd.get(kind)), bool(native.get(kind))
        if a != n:
            diffs.append({"kind": kind, "name": kind, "amd": a, "native": n,
                          "difference": "only in AMD's" if a else "only in the native runner's"})
    keyed("other", {o: o for o in amd.get("other", [])}, {o: o for o in native.get("other", [])})
    for kind in ("image", "name"):
        a, n = concrete(amd.get(kind)), native.get(kind)
        if n is not None and re.search(r"(?<!\\)[$`]", n):
            n = None if amd.get(kind) is None else n
            if amd.get(kind) is not None:
                continue  # both symbolic: nothing to compare
        if a is not None and n is not None and a != n:
            diffs.append({"kind": kind, "name": kind, "amd": amd.get(kind), "native": n,
                          "difference": "differs", "amd_resolved": a})
        elif (amd.get(kind) is None) != (n is None):
            diffs.append({"kind": kind, "name": kind, "amd": amd.get(kind), "native": n,
                          "difference": "only in AMD's" if n is None else "only in the native runner's"})
    if (amd.get("command") or []) != (native.get("command") or []):
        diffs.append({"kind": "command", "name": "command", "amd": amd.get("command"),
                      "native": native.get("command"), "difference": "differs"})
    return diffs
