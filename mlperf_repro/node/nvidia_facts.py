"""NVIDIA GPU facts: a parser of ``nvidia-smi -q -x`` (XML) and ``nvidia-smi -q`` (text), a collector.

Runs on the nodes (shipped by Ansible as ``ansible.module_utils.nvidia_facts``) and on the controller
(``mlperf_repro.node.nvidia_facts``): standard library only, no imports of other project files,
Python 3.8+ syntax.

Three layers, as in ``gpu_facts`` (AMD's):

* **Parsers** -- ``parse_nvidia_smi(text)`` reads either form of ``nvidia-smi -q`` into the
  normalized record. The XML element names and the text labels name the same fields; one table
  (:data:`GPU_FIELDS`) lists both, and every entry was seen in a recorded real output
  (``tests/data/gpu-outputs/nvidia``, provenance in its ``PROVENANCE.tsv``). Output that cannot be
  read at all raises ``ValueError``; a field a driver does not report is ``None``.
* **collect(run)** -- runs ``nvidia-smi -q -x`` through ``run(argv) -> (rc, stdout, stderr)``;
  ``rc == 127`` means not installed (recorded, never fatal); a failing ``nvidia-smi`` (no driver
  loaded: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver") is
  recorded in ``errors``.
* **evaluate(record, ...)** -- human-readable problems for preflight: uncorrectable ECC errors,
  pending retirement or row remapping, remapping failure, MIG enabled, persistence off, a PCIe link
  narrower (or, under load, slower) than its maximum, an NVLink fabric that is not ready, fewer GPUs
  or less memory than expected, an old driver.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

NVIDIA_VENDOR_ID = "10de"
MISSING_RC = 127
CMD_NVIDIA_SMI_XML = ("nvidia-smi", "-q", "-x")
TOOL_DIRS = ["/usr/bin", "/usr/local/nvidia/bin", "/usr/lib/wsl/lib"]

#: PCI device ID -> product, the fallback when the platform definition gives none. Sources: the
#: recorded outputs (0x20B2 A100-SXM4-80GB, 0x2330 H100 80GB HBM3, 0x2335 H200, 0x1EB8 T4) and
#: NVIDIA's MIG-parted example configuration (0x233B H200 NVL, 0x2331 H100 PCIe, 0x20B0/0x20B5
#: A100 SXM4 40/80GB). A product name the tool reports always wins over this table.
PCI_DEVICE_MODELS = {
    "0x20b0": "A100", "0x20b2": "A100", "0x20b5": "A100", "0x20f1": "A100",
    "0x2330": "H100", "0x2331": "H100",
    "0x2335": "H200", "0x233b": "H200",
    "0x1eb8": "T4",
}

_NA = frozenset(["", "N/A", "NA", "n/a", "None", "none", "Not Supported", "[N/A]",
                 "Requested functionality has been deprecated", "Unknown Error"])

#: One field, two spellings: (XML path under <gpu>, text label path under "GPU <bus id>").
#: A tuple of alternatives is tried in order (schemas renamed some fields).
GPU_FIELDS = {
    "product_name": (("product_name",), ("Product Name",)),
    "architecture": (("product_architecture",), ("Product Architecture",)),
    "uuid": (("uuid",), ("GPU UUID",)),
    "serial": (("serial",), ("Serial Number",)),
    "minor_number": (("minor_number",), ("Minor Number",)),
    "vbios_version": (("vbios_version",), ("VBIOS Version",)),
    "pci_bus_id": (("pci/pci_bus_id",), ("PCI/Bus Id",)),
    "pci_device_id": (("pci/pci_device_id",), ("PCI/Device Id",)),
    "pci_sub_system_id": (("pci/pci_sub_system_id",), ("PCI/Sub System Id",)),
    "persistence_mode": (("persistence_mode",), ("Persistence Mode",)),
    "mig_mode": (("mig_mode/current_mig",), ("MIG Mode/Current",)),
    "mig_mode_pending": (("mig_mode/pending_mig",), ("MIG Mode/Pending",)),
    "ecc_mode": (("ecc_mode/current_ecc",), ("ECC Mode/Current",)),
    "ecc_mode_pending": (("ecc_mode/pending_ecc",), ("ECC Mode/Pending",)),
    "memory_total": (("fb_memory_usage/total",), ("FB Memory Usage/Total",)),
    "memory_used": (("fb_memory_usage/used",), ("FB Memory Usage/Used",)),
    "pcie_gen_max": (("pci/pci_gpu_link_info/pcie_gen/max_link_gen",),
                     ("PCI/GPU Link Info/PCIe Generation/Max",)),
    "pcie_gen_current": (("pci/pci_gpu_link_info/pcie_gen/current_link_gen",),
                         ("PCI/GPU Link Info/PCIe Generation/Current",)),
    "pcie_width_max": (("pci/pci_gpu_link_info/link_widths/max_link_width",),
                       ("PCI/GPU Link Info/Link Width/Max",)),
    "pcie_width_current": (("pci/pci_gpu_link_info/link_widths/current_link_width",),
                           ("PCI/GPU Link Info/Link Width/Current",)),
    "pcie_replays": (("pci/replay_counter",), ("PCI/Replays Since Reset",)),
    "performance_state": (("performance_state",), ("Performance State",)),
    "temperature_gpu": (("temperature/gpu_temp",), ("Temperature/GPU Current Temp",)),
    "temperature_memory": (("temperature/memory_temp",), ("Temperature/Memory Current Temp",)),
    "temperature_slowdown": (("temperature/gpu_temp_slow_threshold",),
                             ("Temperature/GPU Slowdown Temp",)),
    "power_draw": (("gpu_power_readings/power_draw", "gpu_power_readings/instant_power_draw",
                    "power_readings/power_draw"),
                   ("GPU Power Readings/Power Draw", "GPU Power Readings/Instantaneous Power Draw")),
    "power_limit": (("gpu_power_readings/current_power_limit", "power_readings/power_limit"),
                    ("GPU Power Readings/Current Power Limit",)),
    "clock_sm": (("clocks/sm_clock",), ("Clocks/SM",)),
    "clock_sm_max": (("max_clocks/sm_clock",), ("Max Clocks/SM",)),
    "clock_memory": (("clocks/mem_clock",), ("Clocks/Memory",)),
    "clock_memory_max": (("max_clocks/mem_clock",), ("Max Clocks/Memory",)),
    "retired_single_bit": (("retired_pages/multiple_single_bit_retirement/retired_count",),
                           ("Retired Pages/Single Bit ECC",)),
    "retired_double_bit": (("retired_pages/double_bit_retirement/retired_count",),
                           ("Retired Pages/Double Bit ECC",)),
    "retired_pending": (("retired_pages/pending_retirement", "retired_pages/pending_blacklist"),
                        ("Retired Pages/Pending Page Retirement", "Retired Pages/Pending Page Blacklist")),
    "remapped_correctable": (("remapped_rows/remapped_row_corr",),
                             ("Remapped Rows/Correctable Error",)),
    "remapped_uncorrectable": (("remapped_rows/remapped_row_unc",),
                               ("Remapped Rows/Uncorrectable Error",)),
    "remapped_pending": (("remapped_rows/remapped_row_pending",), ("Remapped Rows/Pending",)),
    "remapped_failure": (("remapped_rows/remapped_row_failure",),
                         ("Remapped Rows/Remapping Failure Occurred",)),
    "fabric_state": (("fabric/state",), ("Fabric/State",)),
    "fabric_status": (("fabric/status",), ("Fabric/Status",)),
    "reset_required": (("gpu_reset_status/reset_required",), ("GPU Reset Status/Reset Required",)),
    "recovery_action": (("gpu_recovery_action",), ("GPU Recovery Action",)),
}

_INT_FIELDS = ("minor_number", "pcie_gen_max", "pcie_gen_current", "pcie_replays",
               "retired_single_bit", "retired_double_bit", "remapped_correctable",
               "remapped_uncorrectable")
_FLAG_FIELDS = ("retired_pending", "remapped_pending", "remapped_failure", "reset_required")
_MODE_FIELDS = ("persistence_mode", "mig_mode", "mig_mode_pending", "ecc_mode", "ecc_mode_pending")


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------

def _clean(value):
    if value is None:
        return None
    value = " ".join(str(value).split())
    return None if value in _NA else value


def _int(value):
    value = _clean(value)
    if value is None:
        return None
    m = re.match(r"^(\d+)", value)
    return int(m.group(1)) if m else None


def _number(value):
    """``"27 C"`` -> 27, ``"67.03 W"`` -> 67.03, ``"N/A"`` -> None."""
    value = _clean(value)
    if value is None:
        return None
    m = re.match(r"^(-?\d+(?:\.\d+)?)", value)
    if not m:
        return None
    number = float(m.group(1))
    return int(number) if number.is_integer() and "." not in m.group(1) else number


def _mib(value):
    """``"81559 MiB"`` -> 81559 (GiB and KiB converted); None when not a size."""
    value = _clean(value)
    if value is None:
        return None
    m = re.match(r"^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|MB|GB)?$", value)
    if not m:
        return None
    factor = {"KiB": 1.0 / 1024, "GiB": 1024, "GB": 1000 ** 3 / 1024 ** 2, "MB": 1000 ** 2 / 1024 ** 2}
    return int(round(float(m.group(1)) * factor.get(m.group(2), 1)))


def _width(value):
    """``"16x"`` -> 16."""
    value = _clean(value)
    m = re.match(r"^x?(\d+)x?$", value or "")
    return int(m.group(1)) if m else None


def _flag(value):
    """Yes/No -> True/False; None when not reported."""
    value = _clean(value)
    if value is None:
        return None
    return value.lower() in ("yes", "true", "1", "enabled")


def _mode(value):
    """Enabled/Disabled (as reported); None when not supported."""
    return _clean(value)


def _hex_id(value):
    """A PCI ID as ``0x`` + upper-case hex whichever way the form prints it (the XML drops the
    ``0x`` the text form shows: ``18BF10DE`` / ``0x18BF10DE``); anything else as it is."""
    value = _clean(value)
    if not value:
        return value
    digits = value[2:] if value.lower().startswith("0x") else value
    return "0x" + digits.upper() if re.match(r"^[0-9A-Fa-f]+$", digits) else value


def device_id_of(pci_device_id):
    """``"0x233010DE"`` / ``"233010DE"`` -> ``"0x2330"``; None when no NVIDIA ID is in it."""
    value = (_clean(pci_device_id) or "").lower()
    if value.startswith("0x"):
        value = value[2:]
    if len(value) != 8 or not re.match(r"^[0-9a-f]{8}$", value):
        return None
    device, vendor = value[:4], value[4:]
    if vendor != NVIDIA_VENDOR_ID or device == "0000":
        return None
    return "0x" + device


_MODEL_RE = re.compile(r"\b(GB\d{3}|[ABHL]\d{2,3}[A-Z]?|T4|V100|P100|RTX\s*PRO\s*\d{4}|RTX\s*\d{4})\b")


def model_from_name(name):
    """``"NVIDIA H100 80GB HBM3"`` -> ``"H100"``; ``"NVIDIA A100-SXM4-80GB"`` -> ``"A100"``;
    ``"Tesla T4"`` -> ``"T4"``; ``"NVIDIA H200"`` -> ``"H200"``; None when no product is named."""
    m = _MODEL_RE.search(_clean(name) or "")
    return " ".join(m.group(1).split()) if m else None


def canonical_model(name):
    """A product as a user writes it (``H200``, ``NVIDIA H200``, ``h200``) -> ``H200``."""
    text = _clean(name) or ""
    return model_from_name(text.upper()) or text.upper() or None


# --------------------------------------------------------------------------------------------
# The two forms of `nvidia-smi -q`
# --------------------------------------------------------------------------------------------

class _XmlView(object):
    form = 0

    def __init__(self, element):
        self.element = element

    def value(self, path):
        found = self.element.find(path)
        if found is None or len(found):
            return None
        return found.text

    def section(self, path):
        found = self.element.find(path)
        return _XmlView(found) if found is not None else None

    def items(self):
        """(name, value-or-None, child view) of each child."""
        return [(c.tag, None if len(c) else c.text, _XmlView(c)) for c in self.element]


class _TextNode(object):
    def __init__(self, label, value=None):
        self.label, self.value_text, self.children = label, value, []


class _TextView(object):
    form = 1

    def __init__(self, node):
        self.node = node

    def _find(self, path):
        node = self.node
        for label in path.split("/"):
            node = next((c for c in node.children if c.label == label), None)
            if node is None:
                return None
        return node

    def value(self, path):
        found = self._find(path)
        return None if found is None or found.children else found.value_text

    def section(self, path):
        found = self._find(path)
        return _TextView(found) if found is not None else None

    def items(self):
        return [(c.label, None if c.children else c.value_text, _TextView(c))
                for c in self.node.children]


_TEXT_KV_RE = re.compile(r"^(\s*)(\S.*?)\s+:\s?(.*?)\s*$")


def parse_text_tree(text):
    """``nvidia-smi -q`` text -> a tree of labels (by indentation). Header and blank lines skipped."""
    root = _TextNode(None)
    stack = [(-1, root)]
    for line in text.replace("\t", "    ").splitlines():
        if not line.strip() or line.strip().startswith("====="):
            continue
        m = _TEXT_KV_RE.match(line)
        if m:
            indent, label, value = len(m.group(1)), m.group(2), m.group(3)
        else:
            indent, label, value = len(line) - len(line.lstrip()), line.strip(), None
        while stack[-1][0] >= indent:
            stack.pop()
        node = _TextNode(label, value)
        stack[-1][1].children.append(node)
        stack.append((indent, node))
    return root


def _load_xml(text):
    if re.search(r"<!ENTITY", text):
        raise ValueError("nvidia-smi XML declares entities: refused (nvidia-smi never does)")
    try:
        root = ET.fromstring(text.strip().encode("utf-8"))
    except ET.ParseError as exc:
        raise ValueError("nvidia-smi -q -x output is not well-formed XML: %s" % exc)
    if root.tag != "nvidia_smi_log":
        raise ValueError("not an nvidia-smi -q -x document: root element <%s>, expected <nvidia_smi_log>"
                         % root.tag)
    return root


def _ecc_uncorrectable(view, scope):
    """Sum of the uncorrectable counters of ``volatile`` / ``aggregate``; None when none is reported."""
    section = view.section(("ecc_errors/" + scope) if view.form == 0 else ("ECC Errors/" + scope.title()))
    return _ecc_sum(section, uncorrectable=True)


def _ecc_correctable(view, scope):
    section = view.section(("ecc_errors/" + scope) if view.form == 0 else ("ECC Errors/" + scope.title()))
    return _ecc_sum(section, uncorrectable=False)


def _ecc_sum(section, uncorrectable):
    if section is None:
        return None
    total, seen = 0, False
    for name, value, child in section.items():
        key = name.lower().replace(" ", "_")
        if value is None:   # older schemas: single_bit / double_bit sections with a total
            if ("double_bit" in key) == uncorrectable:
                count = _int(child.value("total" if child.form == 0 else "Total"))
                if count is not None:
                    total, seen = total + count, True
            continue
        if "threshold" in key:
            continue
        is_unc = "uncorrectable" in key
        if is_unc == uncorrectable and "correctable" in key:
            count = _int(value)
            if count is not None:
                total, seen = total + count, True
    return total if seen else None


def _gpu_record(view, bus_id=None):
    fields = {}
    for name, (xml_paths, text_paths) in GPU_FIELDS.items():
        raw = None
        for path in (xml_paths if view.form == 0 else text_paths):
            raw = view.value(path)
            if _clean(raw) is not None:
                break
        fields[name] = raw
    device_id = device_id_of(fields["pci_device_id"])
    model = model_from_name(fields["product_name"]) or PCI_DEVICE_MODELS.get(device_id or "")
    gpu = {
        "index": _int(fields["minor_number"]),
        "bus_id": _clean(fields["pci_bus_id"]) or bus_id,
        "name": _clean(fields["product_name"]),
        "model": model,
        "architecture": _clean(fields["architecture"]),
        "device_id": device_id,
        "sub_system_id": _hex_id(fields["pci_sub_system_id"]),
        "uuid": _clean(fields["uuid"]),
        "serial": _clean(fields["serial"]),
        "vbios_version": _clean(fields["vbios_version"]),
        "memory_mib": _mib(fields["memory_total"]),
        "memory_used_mib": _mib(fields["memory_used"]),
        "persistence_mode": _mode(fields["persistence_mode"]),
        "mig_mode": _mode(fields["mig_mode"]),
        "mig_mode_pending": _mode(fields["mig_mode_pending"]),
        "ecc_mode": _mode(fields["ecc_mode"]),
        "ecc_mode_pending": _mode(fields["ecc_mode_pending"]),
        "ecc_errors": {
            "volatile_correctable": _ecc_correctable(view, "volatile"),
            "volatile_uncorrectable": _ecc_uncorrectable(view, "volatile"),
            "aggregate_correctable": _ecc_correctable(view, "aggregate"),
            "aggregate_uncorrectable": _ecc_uncorrectable(view, "aggregate"),
        },
        "retired_pages": {
            "single_bit": _int(fields["retired_single_bit"]),
            "double_bit": _int(fields["retired_double_bit"]),
            "pending": _flag(fields["retired_pending"]),
        },
        "remapped_rows": {
            "correctable": _int(fields["remapped_correctable"]),
            "uncorrectable": _int(fields["remapped_uncorrectable"]),
            "pending": _flag(fields["remapped_pending"]),
            "failure": _flag(fields["remapped_failure"]),
        },
        "reset_required": _flag(fields["reset_required"]),
        "recovery_action": _clean(fields["recovery_action"]),
        "pcie": {
            "gen_current": _int(fields["pcie_gen_current"]),
            "gen_max": _int(fields["pcie_gen_max"]),
            "width_current": _width(fields["pcie_width_current"]),
            "width_max": _width(fields["pcie_width_max"]),
            "replays": _int(fields["pcie_replays"]),
        },
        "fabric": {"state": _clean(fields["fabric_state"]), "status": _clean(fields["fabric_status"])},
        "performance_state": _clean(fields["performance_state"]),
        "temperature_c": _number(fields["temperature_gpu"]),
        "memory_temperature_c": _number(fields["temperature_memory"]),
        "power_draw_w": _number(fields["power_draw"]),
        "power_limit_w": _number(fields["power_limit"]),
        "clocks_mhz": {"sm": _number(fields["clock_sm"]), "sm_max": _number(fields["clock_sm_max"]),
                       "memory": _number(fields["clock_memory"]),
                       "memory_max": _number(fields["clock_memory_max"])},
    }
    if view.form == 0:
        migs = view.element.findall("mig_devices/mig_device")
        gpu["mig_devices"] = len(migs)
    else:
        # The text form lists no MIG devices; with MIG off there are none (as the XML says).
        gpu["mig_devices"] = 0 if (gpu["mig_mode"] or "").lower() == "disabled" else None
    return gpu


def parse_nvidia_smi(text):
    """``nvidia-smi -q -x`` (XML) or ``nvidia-smi -q`` / ``-a`` (text) -> a partial record:
    ``driver_version``, ``cuda_version``, ``attached_gpus``, ``gpus`` (one dict per GPU), ``form``.

    Raises ``ValueError`` when ``text`` is neither form.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("nvidia-smi printed nothing")
    stripped = text.lstrip()
    if stripped.startswith("<"):
        root = _load_xml(text)
        top = _XmlView(root)
        gpus = [_gpu_record(_XmlView(g), g.get("id")) for g in root.findall("gpu")]
        return {"form": "xml", "driver_version": _clean(top.value("driver_version")),
                "cuda_version": _clean(top.value("cuda_version")),
                "attached_gpus": _int(top.value("attached_gpus")), "gpus": gpus}
    tree = parse_text_tree(text)
    top = _TextView(tree)
    blocks = [c for c in tree.children if c.children and re.match(r"^GPU [0-9A-Fa-f]{4,8}:", c.label)]
    if top.value("Driver Version") is None and not blocks:
        raise ValueError("not an nvidia-smi -q document: no 'Driver Version' and no 'GPU <bus id>' block "
                         "(first line: %r)" % stripped.splitlines()[0][:80])
    gpus = [_gpu_record(_TextView(b), b.label.split(" ", 1)[1]) for b in blocks]
    return {"form": "text", "driver_version": _clean(top.value("Driver Version")),
            "cuda_version": _clean(top.value("CUDA Version")),
            "attached_gpus": _int(top.value("Attached GPUs")), "gpus": gpus}


def parse_gpu_section(text):
    """One GPU's section of ``nvidia-smi -q`` text (or a fragment of one) -> its GPU dict."""
    return _gpu_record(_TextView(parse_text_tree(text)))


# --------------------------------------------------------------------------------------------
# The record and the collector
# --------------------------------------------------------------------------------------------

def empty_record():
    return {
        "gpu_count": 0, "attached_gpus": None, "model": None, "models": [], "device_id": None,
        "vram_mib_per_gpu": None, "driver_version": None, "cuda_version": None,
        "persistence_mode": None, "mig_enabled": None, "ecc_enabled": None,
        "fabric_state": None, "source": None, "commands": {}, "missing_commands": [], "errors": [],
        "notes": [], "gpus": [],
    }


def summarize(parsed, source="nvidia-smi -q -x"):
    """A parsed document (``parse_nvidia_smi``) -> the normalized record (same shape as AMD's where
    the meaning is the same: gpu_count, model, models, device_id, vram_mib_per_gpu, driver_version)."""
    record = empty_record()
    gpus = parsed["gpus"]
    record.update(driver_version=parsed["driver_version"], cuda_version=parsed["cuda_version"],
                  attached_gpus=parsed["attached_gpus"], gpus=gpus, gpu_count=len(gpus),
                  source=source if gpus else None)
    models = sorted(set(g["model"] or g["name"] or "unknown" for g in gpus))
    record["models"] = models
    record["model"] = models[0] if len(models) == 1 and models[0] != "unknown" else None
    ids = set(g["device_id"] for g in gpus)
    record["device_id"] = ids.pop() if len(ids) == 1 else None
    sizes = [g["memory_mib"] for g in gpus if g["memory_mib"] is not None]
    record["vram_mib_per_gpu"] = min(sizes) if sizes else None
    for key, field, on in (("persistence_mode", "persistence_mode", None),
                           ("mig_enabled", "mig_mode", "Enabled"), ("ecc_enabled", "ecc_mode", "Enabled")):
        values = set(g[field] for g in gpus if g[field] is not None)
        if not values:
            continue
        if on is None:
            record[key] = values.pop() if len(values) == 1 else "mixed"
        else:
            record[key] = on in values
    states = set(g["fabric"]["state"] for g in gpus if g["fabric"]["state"])
    record["fabric_state"] = (states.pop() if len(states) == 1 else "mixed") if states else None
    if parsed["attached_gpus"] is not None and parsed["attached_gpus"] != len(gpus):
        record["errors"].append("nvidia-smi reports %d attached GPUs but describes %d"
                                % (parsed["attached_gpus"], len(gpus)))
    return record


def collect(run):
    """Run ``nvidia-smi -q -x`` through ``run(argv) -> (rc, stdout, stderr)``; the record."""
    label = " ".join(CMD_NVIDIA_SMI_XML)
    try:
        rc, out, err = run(list(CMD_NVIDIA_SMI_XML))
    except OSError as exc:
        rc, out, err = MISSING_RC, "", str(exc)
    if rc == MISSING_RC:
        record = empty_record()
        record["commands"][label] = "missing"
        record["missing_commands"].append("nvidia-smi")
        return record
    if rc != 0:
        record = empty_record()
        record["commands"][label] = "rc=%d" % rc
        record["errors"].append("%s: rc=%d: %s" % (label, rc, _first_line(out or err)))
        return record
    try:
        record = summarize(parse_nvidia_smi(out or ""))
    except ValueError as exc:
        record = empty_record()
        record["errors"].append("%s: %s" % (label, exc))
    record["commands"][label] = "rc=0"
    return record


def _first_line(text):
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:200]
    return "no output"


def module_runner(module, tool_dirs=None):
    """``run(argv)`` for an AnsibleModule: its ``get_bin_path`` and ``run_command``."""
    dirs = TOOL_DIRS if tool_dirs is None else tool_dirs

    def run(argv):
        exe = module.get_bin_path(argv[0], opt_dirs=dirs)
        if exe is None:
            return MISSING_RC, "", "%s: command not found" % argv[0]
        return module.run_command([exe] + list(argv[1:]), check_rc=False, errors="surrogate_or_replace")

    return run


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^(\d+(?:\.\d+)*)$")


def parse_version(value):
    """``"570.133.20"`` -> (570, 133, 20); anything else raises ``ValueError`` naming the value."""
    if not isinstance(value, str) or not _VERSION_RE.match(value.strip()):
        raise ValueError("invalid driver version %r: expected dotted numbers such as '570' or "
                         "'570.133.20' (quote it in YAML)" % (value,))
    return tuple(int(p) for p in value.strip().split("."))


def check_expectations(min_driver_version=None, expected_count=None, min_memory_mib=None,
                       pci_models=None):
    """Caller mistakes, before anything runs."""
    if min_driver_version is not None:
        parse_version(min_driver_version)
    for name, value in (("expected_count", expected_count), ("min_memory_mib", min_memory_mib)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError("%s: expected a whole number >= 0, got %r" % (name, value))
    for key, product in (pci_models or {}).items():
        if device_id_of("%s%s" % (str(key).lower().replace("0x", ""), NVIDIA_VENDOR_ID)) is None \
                or not isinstance(product, str) or not product:
            raise ValueError("pci_models: expected entries such as '0x2335': H200, got %r: %r"
                             % (key, product))


def gather(run, **expectations):
    """What the module returns: ``{changed, ansible_facts: {nvidia_gpu: record}, problems}``.

    ``expectations``: :func:`evaluate`'s keywords. A caller's mistake raises ``ValueError``
    ("invalid option: ...") before ``nvidia-smi`` runs.
    """
    try:
        check_expectations(expectations.get("min_driver_version"), expectations.get("expected_count"),
                           expectations.get("min_memory_mib"), expectations.get("pci_models"))
    except ValueError as exc:
        raise ValueError("invalid option: %s" % exc)
    record = collect(run)
    problems = evaluate(record, **expectations)
    return {"changed": False, "ansible_facts": {"nvidia_gpu": record}, "problems": problems}


def _where(gpu):
    return "GPU %s (%s)" % (gpu["index"] if gpu["index"] is not None else "?", gpu["bus_id"] or "bus ?")


def evaluate(record, expected_count=None, expected_model=None, min_driver_version=None,
             min_memory_mib=None, require_persistence=True, allow_mig=False, require_ecc=True,
             pci_models=None, driver_pending=False):
    """Problems (human-readable) of ``record`` against the expectations; also fills ``record['notes']``
    with what is worth knowing but is no fault (an idle GPU's slower PCIe link, lifetime ECC counts)."""
    problems = []
    if pci_models:
        table = dict((("0x" + str(k).lower().replace("0x", "")), v) for k, v in pci_models.items())
        for gpu in record["gpus"]:
            if gpu["device_id"] in table:
                gpu["model"] = table[gpu["device_id"]]
        models = sorted(set(g["model"] or g["name"] or "unknown" for g in record["gpus"]))
        record["models"] = models
        record["model"] = models[0] if len(models) == 1 and models[0] != "unknown" else None
    if not record["gpus"]:
        if record["missing_commands"]:
            if not driver_pending:
                problems.append("nvidia-smi is not installed: the NVIDIA driver is missing "
                                "(the nvidia_driver role installs it)")
        elif record["errors"]:
            problems.append("nvidia-smi sees no GPU: %s" % "; ".join(record["errors"]))
        if expected_count and not (driver_pending and record["missing_commands"]):
            problems.append("expected %d GPUs, found 0" % expected_count)
        return problems
    if expected_count is not None and record["gpu_count"] != expected_count:
        problems.append("expected %d GPUs, found %d" % (expected_count, record["gpu_count"]))
    if expected_model:
        want = canonical_model(expected_model)
        if record["model"] is None or canonical_model(record["model"]) != want:
            problems.append("expected %s GPUs, found %s" % (want, ", ".join(record["models"]) or "none"))
    if min_driver_version:
        have = record["driver_version"]
        try:
            ok = have is not None and parse_version(have) >= parse_version(min_driver_version)
        except ValueError:
            ok = False
        if not ok:
            problems.append("NVIDIA driver %s is older than the required %s"
                            % (have or "(unknown version)", min_driver_version))
    if record["errors"]:
        problems.extend(record["errors"])
    for gpu in record["gpus"]:
        where = _where(gpu)
        if min_memory_mib and (gpu["memory_mib"] is None or gpu["memory_mib"] < min_memory_mib):
            problems.append("%s has %s MiB of memory, at least %d MiB expected"
                            % (where, gpu["memory_mib"] if gpu["memory_mib"] is not None else "unknown",
                               min_memory_mib))
        ecc = gpu["ecc_errors"]
        if ecc["volatile_uncorrectable"]:
            problems.append("%s: %d uncorrectable ECC errors since the driver loaded"
                            % (where, ecc["volatile_uncorrectable"]))
        if ecc["aggregate_uncorrectable"]:
            record["notes"].append("%s: %d uncorrectable ECC errors over its lifetime"
                                   % (where, ecc["aggregate_uncorrectable"]))
        if require_ecc and gpu["ecc_mode"] == "Disabled":
            problems.append("%s: ECC is disabled (nvidia-smi -e 1, then a reset)" % where)
        rows = gpu["remapped_rows"]
        if rows["failure"]:
            problems.append("%s: row remapping failed: the GPU's memory cannot be repaired "
                            "(NVIDIA's RMA criterion)" % where)
        if rows["pending"]:
            problems.append("%s: row remapping pending (%s uncorrectable rows): reset the GPU or "
                            "reboot the node before a run" % (where, rows["uncorrectable"]
                                                              if rows["uncorrectable"] is not None else "?"))
        if gpu["retired_pages"]["pending"]:
            problems.append("%s: page retirement pending: reset the GPU or reboot the node" % where)
        if gpu["reset_required"]:
            problems.append("%s: nvidia-smi says a GPU reset is required" % where)
        if gpu["recovery_action"]:   # newer drivers: None when healthy (read as not reported)
            problems.append("%s: the driver asks for a recovery action: %s" % (where, gpu["recovery_action"]))
        if gpu["mig_mode"] == "Enabled" and not allow_mig:
            problems.append("%s: MIG is enabled (%s MIG devices): the benchmarks need whole GPUs "
                            "(nvidia-smi -mig 0)" % (where, gpu["mig_devices"] if gpu["mig_devices"]
                                                     is not None else "?"))
        if require_persistence and gpu["persistence_mode"] == "Disabled":
            problems.append("%s: persistence mode is off (nvidia-smi -pm 1 or nvidia-persistenced)" % where)
        link = gpu["pcie"]
        if link["width_current"] and link["width_max"] and link["width_current"] < link["width_max"]:
            problems.append("%s: PCIe link x%d of x%d (downgraded width)"
                            % (where, link["width_current"], link["width_max"]))
        if link["gen_current"] and link["gen_max"] and link["gen_current"] < link["gen_max"]:
            text = "PCIe gen %d of %d" % (link["gen_current"], link["gen_max"])
            if gpu["performance_state"] == "P0":
                problems.append("%s: %s under load (P0): downgraded link speed" % (where, text))
            else:
                record["notes"].append("%s: %s at %s (an idle GPU lowers its link speed)"
                                       % (where, text, gpu["performance_state"] or "unknown P-state"))
        fabric = gpu["fabric"]
        if fabric["state"] and (fabric["state"] != "Completed"
                                or (fabric["status"] and fabric["status"] != "Success")):
            problems.append("%s: NVLink fabric %s (status %s): is nvidia-fabricmanager running?"
                            % (where, fabric["state"], fabric["status"] or "?"))
    return problems
