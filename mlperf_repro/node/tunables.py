"""AMD's runtime_tunables.sh as data: read, apply, check and reset the ten settings.

Standard library only (shipped as ``ansible.module_utils.tunables``). ``root`` prefixes every
/proc and /sys path so tests can work on a copy: sysctls are global to a machine.

The settings, in the order of AMD's script (amd-benchmark-code.md section 2.4):
  1 drop_caches          echo 3 > /proc/sys/vm/drop_caches         (an action, not a state)
  2 amdgpu_module        modprobe amdgpu                           (loaded or not)
  3 rocm_agents          rocm_agent_enumerator                     (a probe: GPUs visible)
Steps 1 and 3 are actions, done at a campaign's start (:func:`start_actions`), never states.
  4 cpu_idle_state2      cpupower idle-set -d 2                    (deep C-state disabled)
  5 cpu_governor         cpupower frequency-set -g performance
  6 nmi_watchdog         /proc/sys/kernel/nmi_watchdog = 0
  7 numa_balancing       /proc/sys/kernel/numa_balancing = 0
  8 randomize_va_space   /proc/sys/kernel/randomize_va_space = 0
  9 thp_enabled          /sys/kernel/mm/transparent_hugepage/enabled = always
 10 thp_defrag           /sys/kernel/mm/transparent_hugepage/defrag = always
"""

import glob
import json
import os
import re
import shutil
import subprocess


def _write_atomic(path, data, mode):
    # Imported when needed: the campaign runner loads this file on its own (read_state), where
    # neither render_files nor Ansible is importable.
    try:  # shipped to the nodes as ansible.module_utils.tunables beside fileio
        from ansible.module_utils.fileio import write_atomic
    except ImportError:  # imported from the package (tests, the controller)
        from mlperf_repro.node.fileio import write_atomic
    write_atomic(path, data, mode)

FILE_SETTINGS = [
    ("nmi_watchdog", "proc/sys/kernel/nmi_watchdog", "0"),
    ("numa_balancing", "proc/sys/kernel/numa_balancing", "0"),
    ("randomize_va_space", "proc/sys/kernel/randomize_va_space", "0"),
    ("thp_enabled", "sys/kernel/mm/transparent_hugepage/enabled", "always"),
    ("thp_defrag", "sys/kernel/mm/transparent_hugepage/defrag", "always"),
]
GOVERNOR_GLOB = "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"
IDLE2_GLOB = "sys/devices/system/cpu/cpu[0-9]*/cpuidle/state2/disable"
SYSCTL_NAMES = {"nmi_watchdog": "kernel.nmi_watchdog", "numa_balancing": "kernel.numa_balancing",
                "randomize_va_space": "kernel.randomize_va_space"}


def _path(root, rel):
    return os.path.join(root or "/", rel)


def _read(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    except OSError:
        return None


def selected(text):
    """The bracketed choice of a /sys multi-choice file: 'always [madvise] never' -> madvise."""
    if text is None:
        return None
    match = re.search(r"\[([^\]]+)\]", text)
    return match.group(1) if match else text.strip()


def read_state(root="/"):
    """Current value of every stateful setting (None where the node lacks it)."""
    state = {}
    for name, rel, _want in FILE_SETTINGS:
        state[name] = selected(_read(_path(root, rel)))
    governors = sorted({_read(p) for p in glob.glob(_path(root, GOVERNOR_GLOB))} - {None})
    state["cpu_governor"] = governors[0] if len(governors) == 1 else (",".join(governors) or None)
    idle = sorted({_read(p) for p in glob.glob(_path(root, IDLE2_GLOB))} - {None})
    state["cpu_idle_state2_disabled"] = idle[0] if len(idle) == 1 else (",".join(idle) or None)
    state["amdgpu_module"] = "loaded" if os.path.isdir(_path(root, "sys/module/amdgpu")) else "absent"
    return state


def wanted():
    want = {name: value for name, _rel, value in FILE_SETTINGS}
    want.update(cpu_governor="performance", cpu_idle_state2_disabled="1", amdgpu_module="loaded")
    return want


def drift(state):
    """Settings whose value differs from AMD's (skipping those the node does not have)."""
    want = wanted()
    return {name: {"current": state.get(name), "wanted": value}
            for name, value in want.items()
            if state.get(name) is not None and state.get(name) != value}


def _write(path, value):
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def _run(argv):
    if shutil.which(argv[0]) is None:
        return 127, "%s: command not found" % argv[0]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stderr or proc.stdout).strip()


def set_values(values, root="/", use_commands=True):
    """Write each setting to its value. Returns a list of errors (empty when all succeeded)."""
    errors = []
    paths = {name: rel for name, rel, _ in FILE_SETTINGS}
    for name, value in values.items():
        if value is None:
            continue
        try:
            if name in paths:
                _write(_path(root, paths[name]), value)
            elif name == "cpu_governor":
                if use_commands:
                    rc, msg = _run(["cpupower", "frequency-set", "-g", value])
                    if rc:
                        errors.append("cpupower frequency-set -g %s: %s" % (value, msg))
                else:
                    for path in glob.glob(_path(root, GOVERNOR_GLOB)):
                        _write(path, value)
            elif name == "cpu_idle_state2_disabled":
                if use_commands:
                    flag = "-d" if value == "1" else "-e"
                    rc, msg = _run(["cpupower", "idle-set", flag, "2"])
                    if rc:
                        errors.append("cpupower idle-set %s 2: %s" % (flag, msg))
                else:
                    for path in glob.glob(_path(root, IDLE2_GLOB)):
                        _write(path, value)
            elif name == "amdgpu_module" and value == "loaded" and use_commands:
                rc, msg = _run(["modprobe", "amdgpu"])
                if rc:
                    errors.append("modprobe amdgpu: %s" % msg)
        except OSError as exc:
            errors.append("%s: %s" % (name, exc))
    return errors


def drop_caches(root="/"):
    os.sync()
    try:
        _write(_path(root, "proc/sys/vm/drop_caches"), "3")
        return None
    except OSError as exc:
        return "drop_caches: %s" % exc


def save_before(state_file, state):
    """Record what was there before the first apply (never overwritten by a later apply)."""
    if os.path.exists(state_file):
        return False
    directory = os.path.dirname(state_file)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
        os.chmod(directory, 0o755)  # whatever the umask
    _write_atomic(state_file, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode("utf-8"), 0o644)
    return True


def load_before(state_file):
    try:
        with open(state_file, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def sysctl_conf():
    """Contents of a sysctl.d file making the three kernel settings persistent."""
    lines = ["# mlperf-repro: AMD's runtime tunables (kernel settings)"]
    for name, key in SYSCTL_NAMES.items():
        lines.append("%s = %s" % (key, wanted()[name]))
    return "\n".join(lines) + "\n"


def persist(sysctl_file, present, check_mode=False):
    """Make the sysctl.d file hold ``sysctl_conf()`` (``present``) or not exist.

    Returns ``(changed, before, after)``: the file's text before and after (None when absent),
    for a diff. Written atomically, as the render stage writes its files.
    """
    before = _read_text(sysctl_file)
    after = sysctl_conf() if present else None
    if before == after:
        return False, before, after
    if not check_mode:
        if present:
            _write_atomic(sysctl_file, after.encode("utf-8"), 0o644)
        else:
            os.unlink(sysctl_file)
    return True, before, after


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# AMD's steps 1 and 3 at a campaign's start: actions, not states (never a change)

#: Where ROCm installs rocm_agent_enumerator; sudo's secure_path seldom has it.
ROCM_BIN = "opt/rocm/bin"
#: The gfx target each GPU of the catalog reports (a different one is said, not refused).
GPU_GFX = {"MI300X": "gfx942", "MI325X": "gfx942", "MI350X": "gfx950", "MI355X": "gfx950"}
#: The catalog's ``gpu`` values of platforms that need no GPU agent (the smoke benchmark).
NO_GPU = ("none", "any", "")


def find_agent_enumerator(root="/"):
    """rocm_agent_enumerator's path: on PATH or in /opt/rocm/bin; under a test prefix ``root``
    only ``<root>/opt/rocm/bin`` (a copy of a machine holds its own). None when there is none."""
    if root in ("/", ""):
        found = shutil.which("rocm_agent_enumerator")
        if found:
            return found
    path = _path(root, os.path.join(ROCM_BIN, "rocm_agent_enumerator"))
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


def probe_agents(root="/", gpu=None):
    """AMD's step 3: run rocm_agent_enumerator and record the gfx targets it lists.

    Returns ``{"name", "command", "gfx", "error", "note"}``: ``gfx`` the GPU targets (gfx000, the
    CPU agent, left out); ``error`` a sentence when the command is missing, fails or lists no GPU
    agent; ``note`` when the targets are not those of ``gpu`` (the catalog's GPU).
    """
    result = {"name": "rocm_agent_enumerator", "command": find_agent_enumerator(root), "gfx": [],
              "error": None, "note": None}
    if result["command"] is None:
        where = "PATH or /opt/rocm/bin" if root in ("/", "") else _path(root, ROCM_BIN)
        result["error"] = ("rocm_agent_enumerator: command not found (looked in %s): ROCm is not "
                           "installed on the host, which AMD's runtime_tunables.sh needs" % where)
        return result
    try:
        proc = subprocess.run([result["command"]], capture_output=True, text=True, check=False,
                              timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result["error"] = "rocm_agent_enumerator: %s" % exc
        return result
    targets = []
    for target in re.findall(r"\bgfx[0-9a-z]+\b", proc.stdout):
        if target != "gfx000" and target not in targets:
            targets.append(target)
    result["gfx"] = targets
    result["agents"] = len([t for t in re.findall(r"\bgfx[0-9a-z]+\b", proc.stdout) if t != "gfx000"])
    if proc.returncode != 0:
        result["error"] = "rocm_agent_enumerator exited %d: %s" % (
            proc.returncode, (proc.stderr or proc.stdout).strip()[-500:])
    elif not targets:
        result["error"] = ("rocm_agent_enumerator lists no GPU agent (%s): the amdgpu driver does "
                           "not see a GPU" % (proc.stdout.strip() or "no output"))
    elif gpu in GPU_GFX and GPU_GFX[gpu] not in targets:
        result["note"] = "rocm_agent_enumerator lists %s, not %s's %s" % (
            ", ".join(targets), gpu, GPU_GFX[gpu])
    return result


def start_actions(gpu, root="/", dry_run=False, which=("drop_caches", "rocm_agent_enumerator")):
    """AMD's steps 1 (``sync; echo 3 > /proc/sys/vm/drop_caches``) and 3 (rocm_agent_enumerator)
    at a campaign's start, in the script's order. The probe is skipped where the catalog's
    ``gpu`` needs none (``none``, ``any``). ``dry_run`` (check mode) does neither; ``which``
    names the actions to do.

    Returns ``(actions, errors)``: one record per action, and the sentences of those that failed.
    """
    gpu = str(gpu or "")
    actions, errors = [], []
    if "drop_caches" not in which:
        pass
    elif dry_run:
        actions.append({"name": "drop_caches", "done": False, "why": "check mode"})
    else:
        error = drop_caches(root)
        actions.append({"name": "drop_caches", "done": error is None, "error": error})
        if error:
            errors.append(error)
    if "rocm_agent_enumerator" not in which:
        pass
    elif gpu in NO_GPU:
        actions.append({"name": "rocm_agent_enumerator", "done": False,
                        "why": "the platform's GPU is %s: no GPU agent needed" % (gpu or "none")})
    elif dry_run:
        actions.append({"name": "rocm_agent_enumerator", "done": False, "why": "check mode"})
    else:
        probe = probe_agents(root, gpu)
        probe["done"] = probe["error"] is None
        actions.append(probe)
        if probe["error"]:
            errors.append(probe["error"])
    return actions, errors


def run_record(root="/"):
    """What a campaign's runner records at each run's start: the settings (read only), their
    drift from AMD's values, and whether they were as AMD sets them."""
    state = read_state(root)
    found = drift(state)
    return {"state": state, "drift": found, "as_amd": not found}


# ---------------------------------------------------------------------------------------------
# The mlperf_tunables module's one call

#: :func:`drop_caches`, under a name :func:`ensure`'s ``drop_caches`` argument does not hide.
_drop_page_cache = drop_caches


class TunablesError(Exception):
    """The tunables could not be checked, set or restored; ``result`` goes with the message."""

    def __init__(self, msg, warnings=(), **result):
        super().__init__(msg)
        self.warnings = list(warnings)
        self.result = result


def say_drift(found):
    """``name is current (AMD: wanted), ...`` for a :func:`drift` result."""
    return ", ".join("%s is %s (AMD: %s)" % (name, item.get("current"), item.get("wanted"))
                     if isinstance(item, dict) else name for name, item in sorted(found.items()))


def ensure(mode="apply", state_file="/var/lib/mlperf-repro/tunables-before.json",
           drop_caches=False, use_commands=True, root="/", persistent=False,
           sysctl_file="/etc/sysctl.d/90-mlperf-repro.conf", fail_on_drift=False,
           node_name="this node", actions=(), gpu="any", check_mode=False):
    """Check (``mode=check``), set AMD's values (``apply``; the values before are saved in
    ``state_file``) or restore those values (``reset``), then run AMD's start ``actions``.

    Returns the module's result with ``warnings`` (a list of sentences); raises TunablesError.
    """
    warnings = []

    def finish(**result):
        """``result`` after AMD's start actions when asked (never counted as a change)."""
        done, errors = [], []
        if actions and mode in ("apply", "check"):
            done, errors = start_actions(gpu, root, dry_run=check_mode, which=actions)
        gfx = [target for action in done for target in action.get("gfx") or []]
        for action in done:
            if action.get("note"):
                warnings.append("%s: %s" % (node_name, action["note"]))
        result.update(actions=done, gfx_targets=gfx)
        if errors:
            raise TunablesError("%s: %s" % (node_name, "; ".join(errors)), warnings, **result)
        result["warnings"] = warnings
        return result

    before = read_state(root)
    current_drift = drift(before)
    if mode == "check":
        if current_drift and fail_on_drift:
            raise TunablesError("%s: tunables drift: %s" % (node_name, say_drift(current_drift)),
                                warnings, before=before, drift=current_drift)
        if current_drift:
            warnings.append("%s: %d setting(s) differ from AMD's: %s"
                            % (node_name, len(current_drift), say_drift(current_drift)))
        return finish(changed=False, before=before, after=before, drift=current_drift,
                      sysctl_file_changed=False)
    if mode == "apply":
        target = {name: value for name, value in wanted().items() if before.get(name) is not None}
        if not use_commands:
            target.pop("amdgpu_module", None)  # only modprobe can load it
    else:
        recorded = load_before(state_file)
        if recorded is None:
            raise TunablesError("mode=reset: no record of the values before apply in %s; "
                                "nothing to restore" % state_file, warnings)
        target = {k: v for k, v in recorded.items() if v is not None and k != "amdgpu_module"}
    changes = {k: v for k, v in target.items() if before.get(k) != v}
    after = dict(before)
    after.update(changes)
    diff = [{"before_header": "tunables", "after_header": "tunables", "before": before,
             "after": after}]
    # apply + persistent writes the sysctl.d file, reset removes it; apply alone leaves it be
    sysctl_changed = False
    if mode == "reset" or persistent:
        try:
            sysctl_changed, file_before, file_after = persist(sysctl_file, mode == "apply",
                                                              check_mode)
        except OSError as exc:
            raise TunablesError("%s: %s" % (sysctl_file, exc), warnings, before=before) from None
        if sysctl_changed:
            diff.append({"before_header": sysctl_file, "after_header": sysctl_file,
                         "before": file_before or "", "after": file_after or ""})
    changed = bool(changes) or drop_caches or sysctl_changed
    if check_mode:
        return finish(changed=changed, before=before, after=after, drift=current_drift,
                      diff=diff, sysctl_file_changed=sysctl_changed)
    if mode == "apply":
        save_before(state_file, before)
    errors = set_values(changes, root, use_commands)
    if drop_caches:
        error = _drop_page_cache(root)
        if error:
            errors.append(error)
    if errors:
        raise TunablesError("; ".join(errors), warnings, before=before)
    after = read_state(root)
    left = drift(after)
    if left and mode == "apply":
        warnings.append("%s: %d setting(s) still differ from AMD's after apply: %s"
                        % (node_name, len(left), say_drift(left)))
    return finish(changed=changed, before=before, after=after, drift=left, diff=diff,
                  sysctl_file_changed=sysctl_changed)
