"""GPU platforms as data: ``platforms.yml`` loaded, validated, and the choice of one.

A platform (one entry of ``platforms.yml``) holds everything vendor-specific the chain needs: the GPU facts
module, the driver-stack role, the container options that give a container the GPUs, the
collective-library environment, version checks, PCI IDs to product names and what each product
is expected to have. Every error names the file, the key and what was expected.

The platform of a run follows from the catalog system (``platform:`` on the system) or from the
inventory (``mlperf_platform``); :func:`choose` says which, or why neither can be used.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_PLATFORMS = Path(__file__).with_name("platforms.yml")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PCI_ID_RE = re.compile(r"^0x[0-9a-f]{4}$")
VENDOR_ID_RE = re.compile(r"^[0-9a-f]{4}$")
VERSION_RE = re.compile(r"^\d+(\.\d+)*$")
#: The runtimes a platform gives container options for (mlperf_container_runtime's choices
#: that run containers).
RUNTIMES = ("docker", "podman")
#: A container option is one argv word: ``--name`` or ``--name=value`` with no shell in it.
OPTION_RE = re.compile(r"^--[a-z][a-z0-9-]*(=[A-Za-z0-9_./:=,@+-]+)?$")
#: Below the nominal memory, what the tools report is still this platform's product: the vendors'
#: tools report the usable memory, a little less than the data sheet's figure (platforms.yml).
MEMORY_TOLERANCE = 0.95
REQUIRED = ("title", "vendor", "accelerator_name", "pci_vendor_id", "gpu_facts_module", "gpu_query_commands",
            "driver_role", "collective_library", "collective_env", "container_options",
            "torch_device", "slurm_container", "version_checks", "pci_ids", "products", "health",
            "code")
#: How a Slurm job runs the benchmark's container on each node.
SLURM_CONTAINERS = ("docker", "pyxis")


class PlatformError(ValueError):
    """The platform file, a platform, or the choice of one is not what was expected."""


@dataclass(frozen=True)
class Platform:
    name: str
    title: str
    vendor: str
    accelerator_name_format: str
    pci_vendor_id: str
    gpu_facts_module: str
    gpu_query_commands: tuple[str, ...]
    driver_role: str
    collective_library: str
    collective_env: dict[str, str]
    container_options: dict[str, tuple[str, ...]]
    torch_device: str
    slurm_container: str
    version_checks: dict[str, dict[str, str]]
    pci_ids: dict[str, str]
    products: dict[str, dict[str, int]]
    health: dict[str, Any]
    #: The project's files (paths from the project root) that are this platform's own.
    code: tuple[str, ...] = ()

    def options_for(self, runtime: str) -> list[str]:
        """The options that give a ``runtime`` container this platform's GPUs."""
        if runtime not in self.container_options:
            raise PlatformError(
                f"platform {self.name!r} has no container options for {runtime!r}: expected one "
                f"of {', '.join(sorted(self.container_options))}")
        return list(self.container_options[runtime])

    def product_for_pci_id(self, device_id: str | int) -> str | None:
        """``0x2335`` / ``"2335"`` / ``9013`` -> the product ``pci_ids`` names; None if unknown."""
        key = _pci_key(device_id)
        return None if key is None else self.pci_ids.get(key)

    def accelerator_name(self, product: str) -> str:
        """A product's full name (``accelerator_name`` with ``{product}`` replaced)."""
        return self.accelerator_name_format.replace("{product}", product)

    def expected_memory_gib(self, product: str) -> float | None:
        """The least memory per GPU (GiB) a healthy ``product`` reports; None if unknown."""
        spec = self.products.get(product)
        return None if spec is None else round(spec["memory_gib"] * MEMORY_TOLERANCE, 1)

    def as_dict(self) -> dict[str, Any]:
        """Plain data (what validation puts in ``mlperf_spec.platform_spec``)."""
        return {
            "name": self.name, "title": self.title, "vendor": self.vendor,
            "accelerator_name": self.accelerator_name_format,
            "pci_vendor_id": self.pci_vendor_id, "gpu_facts_module": self.gpu_facts_module,
            "gpu_query_commands": list(self.gpu_query_commands), "driver_role": self.driver_role,
            "collective_library": self.collective_library,
            "collective_env": dict(self.collective_env),
            "container_options": {k: list(v) for k, v in self.container_options.items()},
            "torch_device": self.torch_device,
            "slurm_container": self.slurm_container,
            "version_checks": {k: dict(v) for k, v in self.version_checks.items()},
            "pci_ids": dict(self.pci_ids),
            "products": {k: dict(v) for k, v in self.products.items()},
            "health": dict(self.health),
            "code": list(self.code),
        }


@dataclass(frozen=True)
class Platforms:
    path: Path
    platforms: dict[str, Platform]

    def get(self, name: str) -> Platform:
        try:
            return self.platforms[name]
        except KeyError:
            raise PlatformError(
                f"unknown platform {name!r}: expected one of {', '.join(sorted(self.platforms))} "
                f"({self.path})") from None

    def for_product(self, product: str) -> Platform | None:
        """The platform whose products (or PCI ID names) include ``product``, or None."""
        for platform in self.platforms.values():
            if product in platform.products or product in platform.pci_ids.values():
                return platform
        return None


def load_platforms(path: str | Path | None = None) -> Platforms:
    """Load and validate the platform definitions (the packaged ``platforms.yml`` by default)."""
    path = Path(path) if path else DEFAULT_PLATFORMS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlatformError(f"{path}: cannot read the platform definitions: {exc.strerror}") from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise PlatformError(f"{path}: not valid YAML: {exc}") from None
    return parse_platforms(data, path)


def parse_platforms(data: Any, path: Path) -> Platforms:
    top = _mapping(data, "(top level)", path)
    if top.get("schema_version") != 1:
        raise PlatformError(f"{path}: schema_version: expected 1, got {top.get('schema_version')!r}")
    unknown = sorted(set(top) - {"schema_version", "platforms"})
    if unknown:
        raise PlatformError(f"{path}: unknown top-level key(s) {', '.join(map(str, unknown))}: "
                            "expected schema_version and platforms")
    specs = _mapping(top.get("platforms"), "platforms", path)
    if not specs:
        raise PlatformError(f"{path}: platforms: expected at least one platform")
    parsed = {}
    for name, spec in specs.items():
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PlatformError(f"{path}: platforms: {name!r} is not a platform name (lower case "
                                "letters, digits and _)")
        parsed[name] = _platform(name, spec, path)
    owners: dict[str, str] = {}
    for name, platform in parsed.items():
        for product in list(platform.products) + list(platform.pci_ids.values()):
            if owners.setdefault(product, name) != name:
                raise PlatformError(f"{path}: product {product!r} is named by both platform "
                                    f"{owners[product]!r} and {name!r}: a product has one platform")
    return Platforms(path=path, platforms=parsed)


def _platform(name: str, spec: Any, path: Path) -> Platform:
    where = f"platforms.{name}"
    spec = _mapping(spec, where, path)
    missing = [key for key in REQUIRED if key not in spec]
    if missing:
        raise PlatformError(f"{path}: {where}: missing {', '.join(missing)}")
    unknown = sorted(set(spec) - set(REQUIRED))
    if unknown:
        raise PlatformError(f"{path}: {where}: unknown key(s) {', '.join(map(str, unknown))}: "
                            f"expected {', '.join(REQUIRED)}")
    accelerator = _string(spec["accelerator_name"], f"{where}.accelerator_name", path)
    if "{product}" not in accelerator:
        raise PlatformError(f"{path}: {where}.accelerator_name: expected a name holding "
                            f"{{product}}, got {accelerator!r}")
    vendor_id = _string(spec["pci_vendor_id"], f"{where}.pci_vendor_id", path)
    if not VENDOR_ID_RE.match(vendor_id):
        raise PlatformError(f"{path}: {where}.pci_vendor_id: expected 4 lower-case hex digits "
                            f"(as lspci -d takes it), got {vendor_id!r}")
    for key in ("gpu_facts_module", "driver_role"):
        value = _string(spec[key], f"{where}.{key}", path)
        if not NAME_RE.match(value):
            raise PlatformError(f"{path}: {where}.{key}: expected a module or role name "
                                f"(lower case, digits, _), got {value!r}")
    commands = spec["gpu_query_commands"]
    if not isinstance(commands, list) or not commands or not all(
            isinstance(c, str) and re.fullmatch(r"[A-Za-z0-9._-]+", c) for c in commands):
        raise PlatformError(f"{path}: {where}.gpu_query_commands: expected a non-empty list of "
                            f"command names, got {commands!r}")
    collective_env = _mapping(spec["collective_env"], f"{where}.collective_env", path)
    for key, value in collective_env.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            raise PlatformError(f"{path}: {where}.collective_env: {key!r} is not a variable name")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise PlatformError(f"{path}: {where}.collective_env.{key}: expected a string "
                                f"(quote YAML booleans), got {value!r}")
    options = _mapping(spec["container_options"], f"{where}.container_options", path)
    parsed_options = {}
    for runtime, words in options.items():
        if runtime not in RUNTIMES:
            raise PlatformError(f"{path}: {where}.container_options: {runtime!r} is not a "
                                f"container runtime: expected {', '.join(RUNTIMES)}")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise PlatformError(f"{path}: {where}.container_options.{runtime}: expected a list "
                                f"of options, got {words!r}")
        for word in words:
            if not OPTION_RE.match(word):
                raise PlatformError(
                    f"{path}: {where}.container_options.{runtime}: {word!r} is not one option "
                    "word (--name or --name=value; no spaces, quotes or shell)")
        parsed_options[runtime] = tuple(words)
    missing_runtimes = [r for r in RUNTIMES if r not in parsed_options]
    if missing_runtimes:
        raise PlatformError(f"{path}: {where}.container_options: missing "
                            f"{', '.join(missing_runtimes)}")
    checks = _mapping(spec["version_checks"], f"{where}.version_checks", path)
    parsed_checks = {}
    for component, check in checks.items():
        check = _mapping(check, f"{where}.version_checks.{component}", path)
        version = _string(check.get("min_version"), f"{where}.version_checks.{component}.min_version", path)
        if not VERSION_RE.match(version):
            raise PlatformError(f"{path}: {where}.version_checks.{component}.min_version: "
                                f"expected a version like 7.2.2, got {version!r}")
        _string(check.get("source"), f"{where}.version_checks.{component}.source", path)
        parsed_checks[str(component)] = {k: str(v) for k, v in check.items()}
    pci_ids = _mapping(spec["pci_ids"], f"{where}.pci_ids", path)
    for device_id, product in pci_ids.items():
        if not isinstance(device_id, str) or not PCI_ID_RE.match(device_id):
            raise PlatformError(f"{path}: {where}.pci_ids: {device_id!r} is not a PCI device ID "
                                "(0x and 4 lower-case hex digits, quoted)")
        _string(product, f"{where}.pci_ids.{device_id}", path)
    products = _mapping(spec["products"], f"{where}.products", path)
    parsed_products = {}
    for product, facts in products.items():
        facts = _mapping(facts, f"{where}.products.{product}", path)
        memory = facts.get("memory_gib")
        count = facts.get("gpus_per_node")
        if isinstance(memory, bool) or not isinstance(memory, (int, float)) or memory <= 0:
            raise PlatformError(f"{path}: {where}.products.{product}.memory_gib: expected a "
                                f"positive number, got {memory!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise PlatformError(f"{path}: {where}.products.{product}.gpus_per_node: expected a "
                                f"positive integer, got {count!r}")
        parsed_products[str(product)] = {"memory_gib": memory, "gpus_per_node": count}
    unnamed = sorted(set(pci_ids.values()) - set(parsed_products))
    if unnamed:
        raise PlatformError(f"{path}: {where}.pci_ids: {', '.join(unnamed)} not in "
                            f"{where}.products (memory and count expected for each product)")
    return Platform(
        name=name,
        title=_string(spec["title"], f"{where}.title", path),
        vendor=_string(spec["vendor"], f"{where}.vendor", path),
        accelerator_name_format=accelerator,
        pci_vendor_id=vendor_id,
        gpu_facts_module=spec["gpu_facts_module"],
        gpu_query_commands=tuple(commands),
        driver_role=spec["driver_role"],
        collective_library=_string(spec["collective_library"], f"{where}.collective_library", path),
        collective_env={str(k): str(v) for k, v in collective_env.items()},
        container_options=parsed_options,
        torch_device=_string(spec["torch_device"], f"{where}.torch_device", path),
        slurm_container=_slurm_container(spec["slurm_container"], f"{where}.slurm_container", path),
        version_checks=parsed_checks,
        pci_ids=dict(pci_ids),
        products=parsed_products,
        health=dict(_mapping(spec["health"], f"{where}.health", path)),
        code=_code(spec["code"], f"{where}.code", path),
    )


def _slurm_container(value: Any, where: str, path: Path) -> str:
    if value not in SLURM_CONTAINERS:
        raise PlatformError(f"{path}: {where}: expected one of {', '.join(SLURM_CONTAINERS)}, "
                            f"got {value!r}")
    return value


def _code(value: Any, where: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PlatformError(f"{path}: {where}: expected a list of paths, got {value!r}")
    for item in value:
        parts = item.split("/")
        if item.startswith("/") or ".." in parts or "" in parts:
            raise PlatformError(f"{path}: {where}: {item!r} is not a path inside the project "
                                "(relative, no .., no empty part)")
    return tuple(value)


def choose(system_platform: str | None, inventory_platform: Any, system: str,
           platforms: Platforms | None = None) -> Platform | None:
    """The platform of a run: the catalog system's, or the inventory's ``mlperf_platform``.

    ``system_platform`` is what the catalog system names (None for a vendor-neutral system such
    as the smoke benchmark's); ``inventory_platform`` is ``mlperf_platform`` (None or "" when
    unset). Both set and different is an error; neither set gives None (no GPU platform).
    """
    platforms = platforms or load_platforms()
    chosen = None
    if inventory_platform not in (None, ""):
        if not isinstance(inventory_platform, str):
            raise PlatformError(f"mlperf_platform: expected a platform name "
                                f"({', '.join(sorted(platforms.platforms))}), got {inventory_platform!r}")
        if inventory_platform not in platforms.platforms:
            raise PlatformError(f"mlperf_platform: unknown platform {inventory_platform!r}: "
                                f"expected one of {', '.join(sorted(platforms.platforms))}")
        chosen = inventory_platform
    if system_platform:
        if chosen and chosen != system_platform:
            raise PlatformError(
                f"mlperf_platform: {chosen!r} disagrees with the catalog system {system}, which "
                f"runs on {system_platform!r}: remove mlperf_platform or choose a {chosen} system")
        chosen = system_platform
    return None if chosen is None else platforms.get(chosen)


def wiring_problems(platform: Platform, root: str | Path | None = None) -> list[str]:
    """What a chosen platform names that this project does not have (its role, its module)."""
    root = Path(root) if root else PROJECT_ROOT
    problems = []
    if not (root / "roles" / platform.driver_role / "tasks" / "main.yml").is_file():
        problems.append(f"platform {platform.name!r}: its driver role {platform.driver_role!r} "
                        f"is not in {root / 'roles'}")
    if not (root / "library" / f"{platform.gpu_facts_module}.py").is_file():
        problems.append(f"platform {platform.name!r}: its GPU facts module "
                        f"{platform.gpu_facts_module!r} is not in {root / 'library'}")
    return problems


def _pci_key(device_id: str | int) -> str | None:
    if isinstance(device_id, bool):
        return None
    if isinstance(device_id, int):
        return "0x%04x" % device_id if 0 <= device_id <= 0xFFFF else None
    text = str(device_id).strip().lower()
    text = text[2:] if text.startswith("0x") else text
    return "0x" + text if re.fullmatch(r"[0-9a-f]{4}", text) else None


def _mapping(value: Any, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise PlatformError(f"{path}: {where}: expected a mapping, got {_type(value)}")
    return value


def _string(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PlatformError(f"{path}: {where}: expected a non-empty string, got {value!r}")
    return value


def _type(value: Any) -> str:
    for kind, name in ((type(None), "null"), (bool, "boolean"), (int, "integer"),
                       (float, "number"), (str, "string"), (Mapping, "mapping"), (list, "list")):
        if isinstance(value, kind):
            return name
    return "value of another kind"
