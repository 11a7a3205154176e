"""AMD Instinct GPU / ROCm facts: parsers for the vendor tools' output and a collector.

Runs on the nodes (shipped by Ansible as ``ansible.module_utils.gpu_facts``) and on the controller
(``mlperf_repro.node.gpu_facts``): standard library only, no imports of other project files, Python
3.8+ syntax.

Three layers:

* **Parsers** (text in, plain dicts/lists out) for what :func:`collect` runs: ``amd-smi static
  --json``, ``amd-smi list`` (JSON and text), ``amd-smi version`` (JSON and text), ``rocm-smi
  --json``, ``rocminfo``, ``lspci -d 1002:<id>``,
  ``/sys/module/amdgpu/version``, ``/opt/rocm/.info/version`` and ``dkms status``.  Every field name
  used here was seen in a recorded real output (``tests/data/gpu-outputs``, provenance in its
  ``SOURCES.tsv``) or is the documented lower-case JSON form of a recorded text key
  (amd-smi's logger prints JSON keys upper-cased as text).  Parsers raise ``ValueError`` for output
  they cannot read at all, and return ``[]`` / ``None`` for well-formed "nothing there".
* **collect(run)** -- drives the tools through ``run(argv) -> (rc, stdout, stderr)``: amd-smi JSON
  first, then rocm-smi JSON, then ``lspci``; then the version sources.  ``rc == 127`` means the
  command is not installed; that is recorded, never fatal.  Returns the normalized record.
* **Checks** -- ``version_at_least`` and ``evaluate`` (human-readable problems for preflight).
"""

from __future__ import annotations

import json
import re

# --------------------------------------------------------------------------------------------
# Identification tables (sources: tests/data/gpu-outputs/README.md "Fields that identify facts")
# --------------------------------------------------------------------------------------------

AMD_VENDOR_ID = "1002"

#: PCI device ID -> product.  From ROCm/system-acceptance-docs docs/common/health-checks.md and the
#: recorded lspci outputs (74a1, 74a5, 75a0, 75a3), amd-smi ``DEVICE_ID`` (74a0, 74a1, 74a2, 75a0)
#: and k8s-device-plugin issue #112 / rocm-smi ``Card Model`` (74b5, an MI300X SR-IOV VF).
PCI_DEVICE_MODELS = {
    "0x74a0": "MI300A",
    "0x74a1": "MI300X",
    "0x74a2": "MI308X",
    "0x74a5": "MI325X",
    "0x74b5": "MI300X",
    "0x75a0": "MI350X",
    "0x75a3": "MI355X",
}

#: Device IDs that are SR-IOV virtual functions, not bare-metal devices.
VF_DEVICE_IDS = frozenset(["0x74b5"])

#: Model -> LLVM gfx target, used only when no tool reported the target.  gfx942: MI300X, MI300A,
#: MI308X (recorded amd-smi / rocm-smi / rocminfo outputs) and MI325X (AMD "GPU specifications"
#: table, rocm.docs.amd.com reference/gpu-specs).  gfx950: MI350X (recorded amd-smi static) and
#: MI355X (same AMD table).
MODEL_GFX_TARGETS = {
    "MI300A": "gfx942",
    "MI300X": "gfx942",
    "MI308X": "gfx942",
    "MI325X": "gfx942",
    "MI350X": "gfx950",
    "MI355X": "gfx950",
}

#: Exit status that ``run`` returns for a command that is not installed (the shell's convention).
MISSING_RC = 127

# Commands the collector runs, in order.  Kept as data so tests can replay recorded outputs.
CMD_AMDSMI_STATIC = ("amd-smi", "static", "--json")
CMD_AMDSMI_LIST = ("amd-smi", "list", "--json")
CMD_AMDSMI_VERSION_JSON = ("amd-smi", "version", "--json")
CMD_AMDSMI_VERSION = ("amd-smi", "version")
CMD_ROCMSMI = ("rocm-smi", "--showproductname", "--showid", "--showmeminfo", "vram",
               "--showdriverversion", "--json")
CMD_ROCMINFO = ("rocminfo",)
CMD_ROCM_VERSION_FILE = ("cat", "/opt/rocm/.info/version")
CMD_SYS_AMDGPU_VERSION = ("cat", "/sys/module/amdgpu/version")
CMD_SYS_AMDGPU_SRCVERSION = ("cat", "/sys/module/amdgpu/srcversion")
CMD_DKMS_STATUS = ("dkms", "status")


def cmd_lspci(device_id):
    """``lspci -d 1002:<id>`` for one device ID (the form AMD's acceptance docs use)."""
    return ("lspci", "-d", "%s:%s" % (AMD_VENDOR_ID, _hex4(device_id)))


# --------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^v?(\d+(?:\.\d+)*)(?:[-+~_][0-9A-Za-z.+~_-]*)?$")


def parse_version(value):
    """``"7.2.0-48"`` -> ``(7, 2, 0)``; ``"6.3.3.60303"`` -> ``(6, 3, 3, 60303)``.

    A suffix after ``-``, ``+``, ``~`` or ``_`` (build number, ``rc5+``, git hash) is ignored.
    Anything else -- non-strings, ``"N/A"``, ``"7.x"``, a dpkg epoch ``"1:6.12.12"``, a kernel
    banner -- raises ``ValueError`` naming the value.
    """
    if not isinstance(value, str):
        raise ValueError("invalid version %r: expected a string such as '7.2.2' (quote it in YAML)"
                         % (value,))
    m = _VERSION_RE.match(value.strip())
    if not m:
        raise ValueError("invalid version %r: expected dotted numbers such as '7.2.2' or '7.2.0-48'"
                         % (value,))
    return tuple(int(part) for part in m.group(1).split("."))


def _padded(a, b):
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def version_at_least(a, b):
    """True when version ``a`` >= ``b``; missing components count as 0 (``"7.2"`` == ``"7.2.0"``)."""
    pa, pb = _padded(parse_version(a), parse_version(b))
    return pa >= pb


def _version_or_none(value):
    """The clean ``X.Y.Z`` form of a version-shaped string, else None."""
    if not isinstance(value, str):
        return None
    try:
        return ".".join(str(p) for p in parse_version(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

_NA = frozenset(["", "N/A", "NA", "n/a", "None", "none", "null"])
_MODEL_RE = re.compile(r"\bMI\d{3}[A-Z]\b")
_TRUNCATION_RE = re.compile(r"^\s*(\.\.\.|\[output truncated\])\s*$", re.M)


def _clean(value):
    """Strip strings; map ``N/A`` and friends to None."""
    if isinstance(value, str):
        value = value.strip()
        return None if value in _NA else value
    return value


def _hex4(value):
    """``"0x74A1"`` / ``"74a1"`` / ``29857`` -> ``"74a1"``; None if not a 16-bit id."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return "%04x" % value if 0 <= value <= 0xFFFF else None
    m = re.match(r"^\s*(?:0x)?([0-9a-fA-F]{1,4})\s*$", str(value))
    return m.group(1).lower().zfill(4) if m else None


def _device_id(value):
    h = _hex4(_clean(value))
    return "0x" + h if h else None


def _bdf(value):
    """Normalize a PCI address to ``dddd:bb:dd.f`` (lspci omits the domain)."""
    value = _clean(value)
    if not isinstance(value, str):
        return None
    value = value.lower()
    if re.match(r"^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", value):
        return "0000:" + value
    if re.match(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", value):
        return value
    return None


def model_from_name(name):
    """``"AMD Instinct MI300X OAM"`` / ``"MI300X-O"`` / ``"MI308X"`` -> the ``MIxxxY`` token.

    Needs the trailing letter, so ``"AMD Instinct MI350 OAM"`` (FRU board name shared by MI350X
    and MI355X) gives None rather than a guess.
    """
    if not isinstance(name, str):
        return None
    m = _MODEL_RE.search(name.upper())
    return m.group(0) if m else None


def model_from_device_id(device_id):
    return PCI_DEVICE_MODELS.get(_device_id(device_id) or "")


def looks_truncated(text):
    """True when the text carries a cut marker (``...`` or ``[output truncated]`` line)."""
    return bool(_TRUNCATION_RE.search(text or ""))


def _load_json(text, what):
    """json.loads that tolerates banner/warning lines printed before the document."""
    text = (text or "").strip()
    if not text:
        raise ValueError("%s: empty output" % what)
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in re.finditer(r"^[\[{]", text, re.M):
        try:
            obj, _end = decoder.raw_decode(text[m.start():])
            return obj
        except ValueError:
            continue
    raise ValueError("%s: output is not JSON (starts %r)" % (what, text[:60]))


def _mib(quantity):
    """VRAM size -> MiB.  Accepts ``{"value": 196592, "unit": "MB"}``, ``"64289 MB"`` or a number.

    amd-smi's "MB" is MiB: the recorded MI300X amd-smi ``196592 MB`` equals rocm-smi's
    ``206141652992`` bytes / 2**20 exactly.
    """
    quantity = _clean(quantity)
    value, unit = quantity, "MB"
    if isinstance(quantity, dict):
        value, unit = _clean(quantity.get("value")), (quantity.get("unit") or "MB")
    elif isinstance(quantity, str):
        m = re.match(r"^([\d.]+)\s*([KMGT]?i?B)?$", quantity, re.I)
        if not m:
            return None
        value, unit = m.group(1), (m.group(2) or "MB")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    factor = {"B": 1.0 / 2 ** 20, "KB": 1.0 / 1024, "MB": 1.0, "GB": 1024.0, "TB": 1024.0 ** 2}
    unit = str(unit).upper().replace("IB", "B")
    if unit not in factor:
        return None
    return int(round(value * factor[unit]))


# --------------------------------------------------------------------------------------------
# amd-smi
# --------------------------------------------------------------------------------------------

_AMDSMI_HEADER_RE = re.compile(r"^(GPU|CPU):\s*(\d+)\s*$")
_AMDSMI_KV_RE = re.compile(r"^(\s*)([^:]+?):(?:\s+(.*?))?\s*$")


def parse_amdsmi_blocks(text):
    """Parse amd-smi's human-readable output into ``[{"kind": "gpu"|"cpu", "index": n, ...}]``.

    Sections nest by indentation; keys are lower-cased (the documented text<->JSON key mapping),
    so the result has the shape of one ``--json`` entry.  A key repeated inside one section
    (``POLICY_ID`` in ``SOC_PSTATE``) becomes a list.  Lines outside any block (``[output
    truncated]``) are ignored.
    """
    devices = []
    stack = None  # [(indent, dict)]
    for raw in (text or "").splitlines():
        if not raw.strip():
            continue
        header = _AMDSMI_HEADER_RE.match(raw)
        if header:
            dev = {"kind": header.group(1).lower(), "index": int(header.group(2))}
            devices.append(dev)
            stack = [(-1, dev)]
            continue
        if stack is None:
            continue
        m = _AMDSMI_KV_RE.match(raw)
        if not m:
            continue
        indent, key, value = len(m.group(1)), m.group(2).strip().lower(), m.group(3)
        if indent == 0:  # "[output truncated]" and other trailers
            continue
        while len(stack) > 1 and stack[-1][0] >= indent:
            stack.pop()
        parent = stack[-1][1]
        if value is None or value == "":
            child = {}
            parent[key] = child
            stack.append((indent, child))
        elif key in parent and not isinstance(parent[key], dict):
            if not isinstance(parent[key], list):
                parent[key] = [parent[key]]
            parent[key].append(value)
        else:
            parent[key] = value
    return devices


def _amdsmi_gpu_entries(data, what):
    """Accept both top-level shapes: ``[...]`` (amd-smi < 26) and ``{"gpu_data": [...]}`` (26+)."""
    if isinstance(data, dict):
        if "gpu_data" in data:
            data = data["gpu_data"]
        elif "gpu" in data:
            data = [data]
        else:
            raise ValueError("%s: JSON object without 'gpu_data' (keys: %s)"
                             % (what, ", ".join(sorted(data))[:200]))
    if not isinstance(data, list):
        raise ValueError("%s: expected a list of GPUs, got %s" % (what, type(data).__name__))
    return [d for d in data if isinstance(d, dict)]


def _gpu_from_amdsmi(d, position):
    asic = d.get("asic") if isinstance(d.get("asic"), dict) else {}
    bus = d.get("bus") if isinstance(d.get("bus"), dict) else {}
    board = d.get("board") if isinstance(d.get("board"), dict) else {}
    driver = d.get("driver") if isinstance(d.get("driver"), dict) else {}
    vram = d.get("vram") if isinstance(d.get("vram"), dict) else {}
    part = d.get("partition") if isinstance(d.get("partition"), dict) else {}
    index = d.get("gpu", d.get("index", position))
    device_id = _device_id(asic.get("device_id"))
    name = _clean(asic.get("market_name"))
    return _gpu(
        index=index, device_id=device_id, name=name, gfx_target=_clean(asic.get("target_graphics_version")),
        bdf=_bdf(bus.get("bdf")), vram_mib=_mib(vram.get("size")),
        compute_partition=_clean(part.get("compute_partition")),
        memory_partition=_clean(part.get("memory_partition")),
        driver_version=_clean(driver.get("version")), board_name=_clean(board.get("product_name")),
        xgmi="xgmi_plpd" in d,
    )


def _gpu(index=None, device_id=None, name=None, gfx_target=None, bdf=None, vram_mib=None,
         compute_partition=None, memory_partition=None, driver_version=None, board_name=None,
         uuid=None, xgmi=False):
    """One GPU, same keys whatever the source."""
    try:
        index = int(index)
    except (TypeError, ValueError):
        index = None
    model = model_from_device_id(device_id) or model_from_name(name)
    return {
        "index": index,
        "model": model,
        "name": name,
        "device_id": device_id,
        "vf": device_id in VF_DEVICE_IDS,
        "gfx_target": gfx_target,
        "bdf": bdf,
        "uuid": uuid,
        "vram_mib": vram_mib,
        "compute_partition": compute_partition,
        "memory_partition": memory_partition,
        "driver_version": driver_version,
        "board_name": board_name,
        "xgmi": xgmi,
    }


def parse_amdsmi_static_json(text):
    """``amd-smi static --json`` -> list of GPUs (list form or ``gpu_data`` wrapper)."""
    data = _load_json(text, "amd-smi static --json")
    return [_gpu_from_amdsmi(d, i) for i, d in enumerate(_amdsmi_gpu_entries(data, "amd-smi static --json"))]


_UUID_DEVICE_RE = re.compile(r"^[0-9a-f]{2}ff([0-9a-f]{4})-", re.I)


def _gpu_from_amdsmi_list(d, position):
    uuid = _clean(d.get("uuid"))
    m = _UUID_DEVICE_RE.match(uuid or "")
    # Recorded MI300X UUIDs read "XXff74a1-0000-1000-80XX-...": the device ID is embedded.
    device_id = "0x" + m.group(1).lower() if m else None
    gpu = _gpu(index=d.get("gpu", position), device_id=device_id, bdf=_bdf(d.get("bdf")), uuid=uuid)
    for key in ("kfd_id", "node_id", "partition_id"):
        if key in d:
            gpu[key] = _clean(d[key])
    return gpu


def parse_amdsmi_list(text):
    """``amd-smi list`` in JSON or text form -> list of GPUs (index, bdf, uuid, device id)."""
    stripped = (text or "").lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        entries = _amdsmi_gpu_entries(_load_json(text, "amd-smi list --json"), "amd-smi list --json")
    else:
        entries = [dict(d, gpu=d["index"]) for d in parse_amdsmi_blocks(text) if d["kind"] == "gpu"]
    return [_gpu_from_amdsmi_list(d, i) for i, d in enumerate(entries)]


# Text labels of `amd-smi version` -> the JSON keys of the same fields.
_AMDSMI_VERSION_LABELS = {
    "amdsmi tool": "version",
    "amdsmi library version": "amdsmi_library_version",
    "rocm version": "rocm_version",
    "amdgpu version": "amdgpu_version",
    "amd_hsmp version": "amd_hsmp_driver_version",
    "hsmp version": "amd_hsmp_driver_version",
}
_INBOX_BANNER_RE = re.compile(r"^Linuxversion(\S+?)\(")


def parse_amdsmi_version(text):
    """``amd-smi version`` (one ``Label: value | ...`` line) or ``--json`` (a list of one dict).

    Returns ``{"tool_version", "library_version", "rocm_version", "amdgpu_version",
    "amdgpu_version_raw", "inbox_kernel"}``.  ``amdgpu_version`` is None unless version-shaped:
    with the kernel's inbox driver amd-smi prints a whitespace-stripped ``/proc/version`` banner
    there (recorded, ROCm 6.4.0), whose kernel release goes to ``inbox_kernel``.
    """
    text = (text or "").strip()
    if text.startswith("[") or text.startswith("{"):
        data = _load_json(text, "amd-smi version --json")
        if isinstance(data, list):
            data = data[0] if data and isinstance(data[0], dict) else {}
        if not isinstance(data, dict):
            raise ValueError("amd-smi version --json: unexpected %s" % type(data).__name__)
        fields = dict((k, _clean(v) if isinstance(v, str) else v) for k, v in data.items())
        if fields.get("amdgpu_version") is None and "kernel_version" in fields:
            fields["amdgpu_version"] = fields["kernel_version"]  # older variant
    else:
        fields = {}
        line = next((ln for ln in text.splitlines() if "AMDSMI" in ln or "ROCm version" in ln), "")
        for part in line.split("|"):
            if ":" not in part:
                continue
            label, value = part.split(":", 1)
            key = _AMDSMI_VERSION_LABELS.get(label.strip().lower())
            if key:
                fields[key] = _clean(value)
        if not fields:
            raise ValueError("amd-smi version: no 'Label: value' fields in %r" % text[:80])
    raw = fields.get("amdgpu_version")
    banner = _INBOX_BANNER_RE.match(raw or "")
    return {
        "tool_version": fields.get("version"),
        "library_version": fields.get("amdsmi_library_version"),
        "rocm_version": _version_or_none(fields.get("rocm_version")),
        "amdgpu_version": _version_or_none(raw),
        "amdgpu_version_raw": raw,
        "inbox_kernel": banner.group(1) if banner else None,
    }


# --------------------------------------------------------------------------------------------
# rocm-smi
# --------------------------------------------------------------------------------------------

def _gpu_from_rocmsmi(index, f):
    device_id = _device_id(f.get("Device ID"))
    if device_id is None:
        card_model = _clean(f.get("Card Model"))
        if card_model and re.match(r"^0x[0-9a-fA-F]{4}$", card_model):
            device_id = card_model.lower()
    name = _clean(f.get("Device Name")) or _clean(f.get("Card Series")) or _clean(f.get("Card series"))
    vram = _clean(f.get("VRAM Total Memory (B)"))
    return _gpu(index=index, device_id=device_id, name=name, gfx_target=_clean(f.get("GFX Version")),
                vram_mib=_mib({"value": vram, "unit": "B"}) if vram is not None else None)


def parse_rocm_smi_json(text):
    """``rocm-smi ... --json`` -> ``{"gpus": [...], "driver_version": str|None}``.

    Cards are the ``cardN`` keys; ``system`` carries ``Driver version``.
    """
    data = _load_json(text, "rocm-smi --json")
    if not isinstance(data, dict):
        raise ValueError("rocm-smi --json: expected an object, got %s" % type(data).__name__)
    gpus = []
    for key, fields in data.items():
        m = re.match(r"^card(\d+)$", key)
        if m and isinstance(fields, dict):
            gpus.append(_gpu_from_rocmsmi(int(m.group(1)), fields))
    gpus.sort(key=lambda g: g["index"])
    system = data.get("system") if isinstance(data.get("system"), dict) else {}
    return {"gpus": gpus, "driver_version": _clean(system.get("Driver version"))}


# --------------------------------------------------------------------------------------------
# rocminfo
# --------------------------------------------------------------------------------------------

_ROCMINFO_AGENT_RE = re.compile(r"^Agent\s+\d+\s*$")
_ROCMINFO_KV_RE = re.compile(r"^( {0,2})([A-Za-z][^:]*?):\s*(.*?)\s*$")


def parse_rocminfo(text):
    """GPU agents of ``rocminfo`` -> list of ``{gfx_target, marketing_name, device_id, uuid, node}``.

    Only an agent's own top-level fields are read (the first ``Name:`` is the agent's; the
    nested ISA ``Name: amdgcn-...`` lines are deeper).  An agent is a GPU when ``Device Type`` is
    ``GPU`` or, in excerpts without that line, when its name is a ``gfx`` target.
    """
    agents, current = [], None
    for line in (text or "").splitlines():
        if _ROCMINFO_AGENT_RE.match(line.strip()) and not line.startswith(" "):
            current = {}
            agents.append(current)
            continue
        m = _ROCMINFO_KV_RE.match(line)
        if not m:
            continue
        if current is None:  # excerpt without an "Agent N" header
            current = {}
            agents.append(current)
        current.setdefault(m.group(2).strip(), m.group(3))
    gpus = []
    for a in agents:
        name = _clean(a.get("Name"))
        dtype = _clean(a.get("Device Type"))
        if not (dtype == "GPU" or (dtype is None and name and name.startswith("gfx"))):
            continue
        chip = re.search(r"\((0x[0-9a-fA-F]+)\)", a.get("Chip ID", ""))
        node = _clean(a.get("Node"))
        gpus.append({
            "gfx_target": name,
            "marketing_name": _clean(a.get("Marketing Name")),
            "model": model_from_device_id(chip.group(1)) if chip else None,
            "device_id": _device_id(chip.group(1)) if chip else None,
            "uuid": _clean(a.get("Uuid")),
            "node": int(node) if node and node.isdigit() else None,
        })
        if gpus[-1]["model"] is None:
            gpus[-1]["model"] = model_from_name(gpus[-1]["marketing_name"])
    return gpus


# --------------------------------------------------------------------------------------------
# lspci, version files, dkms
# --------------------------------------------------------------------------------------------

_LSPCI_RE = re.compile(
    r"^(?:\S+/)?(?P<bdf>(?:[0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7])\s+"
    r"(?P<cls>[^:]+):\s+(?P<desc>.*?)\s*$")


def parse_lspci(text, device_id=None):
    """``lspci -d 1002:<id>`` (also ``-PP`` paths, ``| grep``) -> ``[{bdf, device_id, model, name}]``.

    The device ID is the one queried (``device_id``), else the ``[1002:xxxx]`` of ``-nn``, else the
    ``Device xxxx`` that lspci prints when pci.ids has no name.  A pci.ids name (``[Instinct
    MI300X]``) only fills ``model`` when no ID is known.  ``...`` lines (cut by the source) are
    skipped; see ``looks_truncated``.
    """
    forced = _device_id(device_id) if device_id is not None else None
    out = []
    for line in (text or "").splitlines():
        m = _LSPCI_RE.match(line.strip())
        if not m:
            continue
        desc = m.group("desc")
        dev = forced
        if dev is None:
            nn = re.search(r"\[%s:([0-9a-fA-F]{4})\]" % AMD_VENDOR_ID, desc)
            bare = re.search(r"\bDevice ([0-9a-fA-F]{4})\b", desc)
            dev = _device_id((nn or bare).group(1)) if (nn or bare) else None
        model = model_from_device_id(dev) if dev else None
        if model is None:
            named = re.search(r"\[Instinct (MI\d{3}[A-Z])\]", desc)
            model = named.group(1) if named else None
        out.append({"bdf": _bdf(m.group("bdf")), "device_id": dev, "model": model,
                    "vf": dev in VF_DEVICE_IDS, "class": m.group("cls").strip(), "name": desc})
    return out


def parse_sys_module_version(text):
    """Content of ``/sys/module/amdgpu/version`` (DKMS driver only) -> ``"6.12.12"`` or None."""
    first = (text or "").strip().splitlines()
    return _version_or_none(first[0].strip()) if first else None


def parse_rocm_version_file(text):
    """``/opt/rocm/.info/version`` (``6.4.0-47``), or a ``grep -H`` line of it ->
    ``{"version": "6.4.0", "build": "47", "raw": "6.4.0-47"}``; None when empty/unreadable."""
    for line in (text or "").splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" in line and line.startswith("/"):
            line = line.split(":", 1)[1].strip()
        version = _version_or_none(line)
        if version is None:
            return None
        m = re.match(r"^[\d.]+-(\w+)", line)
        return {"version": version, "build": m.group(1) if m else None, "raw": line}
    return None


_DKMS_RE = re.compile(r"^(?P<module>[^/,\s]+)/(?P<version>[^,]+),\s*(?P<kernel>[^,]+),\s*"
                      r"(?P<arch>[^:,]+):\s*(?P<status>.+?)\s*$")


def parse_dkms_status(text):
    """``dkms status`` -> ``[{module, version, driver_version, build, distro, kernel, arch, status}]``.

    ``amdgpu/6.14.14-2222715.24.04`` gives driver_version 6.14.14, build 2222715, distro 24.04
    (``el10``, ``el9`` on RHEL-likes; absent on SLES).
    """
    out = []
    for line in (text or "").splitlines():
        m = _DKMS_RE.match(line.strip())
        if not m:
            continue
        version = m.group("version").strip()
        v = re.match(r"^([\d.]+?)(?:-(\d+)(?:\.(.+))?)?$", version)
        out.append({
            "module": m.group("module"), "version": version,
            "driver_version": _version_or_none(v.group(1)) if v else None,
            "build": v.group(2) if v else None, "distro": v.group(3) if v else None,
            "kernel": m.group("kernel").strip(), "arch": m.group("arch").strip(),
            "status": m.group("status"),
        })
    return out


# --------------------------------------------------------------------------------------------
# Collector
# --------------------------------------------------------------------------------------------

def _summary(gpus):
    """Aggregate per-GPU entries into the record's top-level fields."""
    def one(key):
        vals = sorted(set(g[key] for g in gpus if g.get(key) is not None))
        return vals[0] if len(vals) == 1 else None

    vram = [g["vram_mib"] for g in gpus if g.get("vram_mib")]
    bdfs = [g.get("bdf") for g in gpus]
    physical = None
    if gpus and all(bdfs):
        physical = len(set(b.rsplit(".", 1)[0] for b in bdfs))  # partitions share a device
    return {
        "gpu_count": len(gpus),
        "physical_count": physical,
        "model": one("model"),
        "models": sorted(set(g["model"] for g in gpus if g.get("model"))),
        "device_id": one("device_id"),
        "gfx_target": one("gfx_target"),
        "vram_mib_per_gpu": min(vram) if vram else None,
        "compute_partition": one("compute_partition"),
        "memory_partition": one("memory_partition"),
        "xgmi": True if any(g.get("xgmi") for g in gpus) else None,
    }


def _empty_record():
    return {
        "gpu_count": 0, "physical_count": None, "pci_count": None,
        "model": None, "models": [], "device_id": None,
        "gfx_target": None, "gfx_target_inferred": False,
        "vram_mib_per_gpu": None, "xgmi": None,
        "compute_partition": None, "memory_partition": None,
        "rocm_version": None, "driver_version": None, "driver_kind": None,
        "inbox_kernel": None, "driver_dkms_installed": [],
        "source": None, "sources": {}, "commands": {}, "missing_commands": [], "errors": [],
        "gpus": [],
    }


class _Runner(object):
    """Wraps ``run`` and records what each command did."""

    def __init__(self, run, record):
        self._run, self._record, self._missing = run, record, set()

    def __call__(self, argv):
        argv = tuple(argv)
        label = " ".join(argv)
        if argv[0] in self._missing:
            return None
        try:
            rc, out, err = self._run(list(argv))
        except OSError as exc:  # a run() that raises instead of returning 127
            rc, out, err = MISSING_RC, "", str(exc)
        if rc == MISSING_RC:
            self._missing.add(argv[0])
            if argv[0] not in self._record["missing_commands"]:
                self._record["missing_commands"].append(argv[0])
            self._record["commands"][label] = "missing"
            return None
        self._record["commands"][label] = "rc=%d" % rc
        return rc, out or "", err or ""

    def error(self, argv, message):
        self._record["errors"].append("%s: %s" % (" ".join(argv), message))


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


def _try_parse(runner, argv, parser):
    """Run argv and parse its stdout (even on rc != 0: rocm-smi exits non-zero with good output)."""
    res = runner(argv)
    if res is None:
        return None
    rc, out, err = res
    if not out.strip():
        runner.error(argv, "rc=%d, no output%s" % (rc, (": " + _first_line(err)) if err.strip() else ""))
        return None
    try:
        return parser(out)
    except ValueError as exc:
        runner.error(argv, "rc=%d, %s" % (rc, exc))
        return None


#: Where ROCm installs its tools, besides PATH (and the sbin directories get_bin_path adds).
TOOL_DIRS = ["/opt/rocm/bin"]


def module_runner(module, tool_dirs=None):
    """The ``run(argv) -> (rc, stdout, stderr)`` callable ``collect`` drives, for a module.

    ``module``: an AnsibleModule (its ``get_bin_path`` and ``run_command``); a missing tool
    gives ``MISSING_RC``.
    """
    dirs = TOOL_DIRS if tool_dirs is None else tool_dirs

    def run(argv):
        exe = module.get_bin_path(argv[0], opt_dirs=dirs)
        if exe is None:
            return MISSING_RC, "", "%s: command not found" % argv[0]
        try:
            return module.run_command([exe] + list(argv[1:]), check_rc=False, handle_exceptions=False,
                                      errors="surrogate_or_replace")
        except OSError as exc:
            return MISSING_RC, "", "%s: %s" % (argv[0], exc)

    return run


def collect(run):
    """Gather GPU / ROCm facts through ``run(argv) -> (rc, stdout, stderr)``.

    Inventory: ``amd-smi static --json`` (then ``amd-smi list --json`` for the count when static
    fails), else ``rocm-smi --showproductname --showid --showmeminfo vram --showdriverversion
    --json``, else ``lspci -d 1002:<id>`` per known Instinct device ID.  ``lspci`` also runs after a
    successful inventory, to give ``pci_count`` (devices on the bus, whether or not the driver
    bound them).  ``rocminfo`` fills the gfx target / device ID when the inventory lacked them.

    Versions: ROCm from ``amd-smi version`` (JSON, then text), else ``/opt/rocm/.info/version``.
    amdgpu from ``/sys/module/amdgpu/version`` (exists only for the DKMS driver); when that is
    absent but ``/sys/module/amdgpu/srcversion`` exists the loaded driver is the kernel's inbox
    one and ``driver_version`` stays None (tools would report the kernel release there).
    """
    record = _empty_record()
    runner = _Runner(run, record)
    gpus, source = [], None

    static = _try_parse(runner, CMD_AMDSMI_STATIC, parse_amdsmi_static_json)
    if static:
        gpus, source = static, "amd-smi"
    elif "amd-smi" not in record["missing_commands"]:
        listed = _try_parse(runner, CMD_AMDSMI_LIST, parse_amdsmi_list)
        if listed:
            gpus, source = listed, "amd-smi list"

    rocmsmi_driver = None
    if not gpus:
        parsed = _try_parse(runner, CMD_ROCMSMI, parse_rocm_smi_json)
        if parsed:
            rocmsmi_driver = parsed["driver_version"]
            if parsed["gpus"]:
                gpus, source = parsed["gpus"], "rocm-smi"

    pci = []
    for device_id in sorted(PCI_DEVICE_MODELS):
        res = runner(cmd_lspci(device_id))
        if res is None:
            break
        rc, out, err = res
        pci.extend(parse_lspci(out, device_id=device_id))
    if "lspci" not in record["missing_commands"]:
        record["pci_count"] = len(pci)
    if not gpus and pci:
        gpus, source = [_gpu(index=i, device_id=p["device_id"], bdf=p["bdf"]) for i, p in enumerate(pci)], "lspci"

    record["gpus"], record["source"] = gpus, source
    record["sources"]["gpus"] = source
    record.update(_summary(gpus))

    if gpus and (record["gfx_target"] is None or record["device_id"] is None):
        agents = _try_parse(runner, CMD_ROCMINFO, parse_rocminfo)
        if agents:
            targets = sorted(set(a["gfx_target"] for a in agents if a["gfx_target"]))
            if record["gfx_target"] is None and len(targets) == 1:
                record["gfx_target"] = targets[0]
                record["sources"]["gfx_target"] = "rocminfo"
            ids = sorted(set(a["device_id"] for a in agents if a["device_id"]))
            if record["device_id"] is None and len(ids) == 1:
                record["device_id"] = ids[0]
            models = sorted(set(a["model"] for a in agents if a["model"]))
            if record["model"] is None and len(models) == 1:
                record["model"], record["models"] = models[0], models
                record["sources"]["model"] = "rocminfo"
    if record["gfx_target"] is not None:
        record["sources"].setdefault("gfx_target", source)
    elif record["model"] in MODEL_GFX_TARGETS:
        record["gfx_target"] = MODEL_GFX_TARGETS[record["model"]]
        record["gfx_target_inferred"] = True
        record["sources"]["gfx_target"] = "model table"
    if record["model"] is not None:
        record["sources"].setdefault("model", source)

    # ROCm version
    version = None
    if "amd-smi" not in record["missing_commands"]:
        version = _try_parse(runner, CMD_AMDSMI_VERSION_JSON, parse_amdsmi_version)
        if version is None:
            version = _try_parse(runner, CMD_AMDSMI_VERSION, parse_amdsmi_version)
    if version and version["rocm_version"]:
        record["rocm_version"] = version["rocm_version"]
        record["sources"]["rocm_version"] = "amd-smi version"
    else:
        res = runner(CMD_ROCM_VERSION_FILE)
        info = parse_rocm_version_file(res[1]) if res and res[0] == 0 else None
        if info:
            record["rocm_version"] = info["version"]
            record["sources"]["rocm_version"] = CMD_ROCM_VERSION_FILE[1]

    # amdgpu driver.  /sys/module/amdgpu/version exists only for the DKMS driver; with the kernel's
    # inbox driver the tools print the kernel release where the driver version would be, so no
    # tool value is trusted once the driver is known to be the inbox one.
    res = runner(CMD_SYS_AMDGPU_VERSION)
    sys_version = parse_sys_module_version(res[1]) if res and res[0] == 0 else None
    if sys_version:
        record["driver_version"], record["driver_kind"] = sys_version, "dkms"
        record["sources"]["driver_version"] = CMD_SYS_AMDGPU_VERSION[1]
    elif res is not None:
        src = runner(CMD_SYS_AMDGPU_SRCVERSION)
        loaded = bool(src and src[0] == 0 and src[1].strip())
        record["driver_kind"] = "inbox" if loaded else "not loaded"
    if record["driver_kind"] is None and version and version.get("inbox_kernel"):
        record["driver_kind"] = "inbox"
    if record["driver_kind"] is None:
        # /sys could not be read: fall back to what the tools say, if version-shaped
        static_driver = next((g["driver_version"] for g in gpus if g.get("driver_version")), None)
        for name, value in (("amd-smi version", version["amdgpu_version"] if version else None),
                            ("rocm-smi", _version_or_none(rocmsmi_driver)),
                            ("amd-smi static", _version_or_none(static_driver))):
            if value:
                record["driver_version"] = value
                record["sources"]["driver_version"] = name
                break
    if version and version.get("inbox_kernel"):
        record["inbox_kernel"] = version["inbox_kernel"]

    # DKMS packages installed (not necessarily the loaded driver: that is driver_version)
    res = runner(CMD_DKMS_STATUS)
    if res is not None and res[0] == 0:
        record["driver_dkms_installed"] = sorted(set(
            e["driver_version"] for e in parse_dkms_status(res[1])
            if e["module"] == "amdgpu" and e["driver_version"]))
    elif res is not None:
        runner.error(CMD_DKMS_STATUS, "rc=%d: %s" % (res[0], _first_line(res[2])))
    return record


# --------------------------------------------------------------------------------------------
# Problems for preflight
# --------------------------------------------------------------------------------------------

def _canonical_model(name):
    return model_from_name(name) or (name or "").strip().upper()


def check_expectations(min_rocm_version=None):
    """Raise ``ValueError`` on a malformed expectation (a caller mistake, not a host problem).

    Modules call it before running anything; ``evaluate`` calls it too.
    """
    if min_rocm_version is not None:
        parse_version(min_rocm_version)


def evaluate(record, expected_count=None, expected_model=None, min_rocm_version=None,
             rocm_pending=False):
    """Human-readable problems with ``record`` against the expectations (empty list: none).

    ``rocm_pending``: ROCm is about to be installed, so GPUs seen only on the PCI bus are expected.

    ``min_rocm_version`` is validated first: a malformed one raises ``ValueError`` (a caller
    mistake, not a host problem).
    """
    check_expectations(min_rocm_version)

    problems = []
    count, source = record.get("gpu_count", 0), record.get("source")
    where = "source: %s" % (source or "none")
    if record.get("missing_commands"):
        where += "; not installed: %s" % ", ".join(record["missing_commands"])
    partition = record.get("compute_partition")
    if partition and partition != "SPX":
        where += "; compute partition %s multiplies logical GPUs" % partition
    if expected_count is not None and count != int(expected_count):
        problems.append("expected %d GPUs, found %d (%s)" % (int(expected_count), count, where))
    pci = record.get("pci_count")
    if pci is not None and source not in (None, "lspci") and pci > count:
        problems.append("lspci shows %d AMD Instinct devices but %s reports only %d GPUs"
                        % (pci, source, count))
    if source == "lspci" and not rocm_pending:
        problems.append("GPUs are visible only on the PCI bus: neither amd-smi nor rocm-smi reported "
                        "them (ROCm not installed or amdgpu not loaded)")
    if expected_model:
        want = _canonical_model(expected_model)
        models = record.get("models") or []
        if len(models) > 1:
            problems.append("expected model %s, found a mix: %s" % (want, ", ".join(models)))
        elif record.get("model") is None:
            if count:
                problems.append("expected model %s, but the model is unknown (%s)" % (want, where))
        elif record["model"] != want:
            problems.append("expected model %s, found %s" % (want, record["model"]))
    rocm = record.get("rocm_version")
    if min_rocm_version is not None:
        if rocm is None:
            problems.append("ROCm %s or later required, but no ROCm version was found" % min_rocm_version)
        elif not version_at_least(rocm, min_rocm_version):
            problems.append("ROCm %s is older than the required %s" % (rocm, min_rocm_version))
    return problems
