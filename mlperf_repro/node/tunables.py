"""AMD's runtime_tunables.sh as data: read, apply, check and reset the ten settings.

Standard library only (shipped as ``ansible.module_utils.tunables``). ``root`` prefixes every
/proc and /sys path so tests can work on a copy: sysctls are global to a machine.

The settings, in the order of AMD's script (amd-benchmark-code.md section 2.4):
  1 drop_caches          echo 3 > /proc/sys/vm/drop_caches         (an action, not a state)
  2 amdgpu_module        modprobe amdgpu                           (loaded or not)
  3 rocm_agents          rocm_agent_enumerator                     (a probe: GPUs visible)
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

try:  # shipped to the nodes as ansible.module_utils.tunables beside render_files
    from ansible.module_utils.render_files import write_atomic
except ImportError:  # imported from the package (tests, the controller)
    from mlperf_repro.node.render_files import write_atomic

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
    os.makedirs(os.path.dirname(state_file), exist_ok=True)
    with open(state_file, "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
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
            write_atomic(sysctl_file, after.encode("utf-8"), 0o644)
        else:
            os.unlink(sysctl_file)
    return True, before, after


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
