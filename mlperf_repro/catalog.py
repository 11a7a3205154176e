"""The benchmark catalog: benchmarks x platforms, loaded from one YAML file and validated.

Every error names the place in the file (``benchmarks.llama31_8b.platforms.MI355X_1x8x1.env``)
and what was expected, so a bad entry fails before any host is touched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yml")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: AMD's config names: <GPU>_<nodes>x<gpus per node>x<per-GPU batch or variant>.
SYSTEM_RE = re.compile(r"^(?P<gpu>[A-Z][A-Z0-9]*)_(?P<nodes>\d+)x(?P<gpus>\d+)x(?P<variant>\d+)$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Characters that would break out of the double quotes the template renders values in.
UNSAFE_VALUE_RE = re.compile(r'["`\\\n\r]')
LAUNCH_MODES = ("docker", "slurm", "local")
DIRECTIONS = ("lower", "higher")
RECIPES = ("container_script", "r2", "r2_then_convert", "synthetic")


class CatalogError(ValueError):
    """A catalog file, benchmark or platform is not what was expected."""


@dataclass(frozen=True)
class Reference:
    score_minutes: float
    submission_id: str
    expected_minutes: float | None = None


@dataclass(frozen=True)
class Platform:
    name: str
    gpu: str
    nodes: int
    gpus_per_node: int
    launch: str
    env: dict[str, str]
    site_env: dict[str, str]
    provenance: str
    reference: Reference | None


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    image: str
    launch: str
    container_name: str
    code_path_in_image: str
    runs: int
    disk_gb: float
    quality: dict[str, Any]
    evaluation: dict[str, Any]
    typical_samples_to_converge: int
    mounts: list[dict[str, str]]
    required_env: list[str]
    dataset: dict[str, Any]
    config_preamble: str
    platforms: dict[str, Platform] = field(default_factory=dict)

    def platform(self, name: str) -> Platform:
        try:
            return self.platforms[name]
        except KeyError:
            raise CatalogError(
                f"benchmark {self.name!r} has no platform {name!r}: AMD published "
                f"{', '.join(sorted(self.platforms))}"
            ) from None


@dataclass(frozen=True)
class Catalog:
    path: Path
    ruleset: str
    benchmarks: dict[str, Benchmark]

    def benchmark(self, name: str) -> Benchmark:
        try:
            return self.benchmarks[name]
        except KeyError:
            raise CatalogError(
                f"unknown benchmark {name!r}: expected one of {', '.join(sorted(self.benchmarks))}"
            ) from None

    def resolve(self, benchmark: str, platform: str,
                site_env: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One benchmark on one platform as plain data (what roles and the CLI consume).

        ``env`` is the config's environment in order: the benchmark's common values, the
        platform's values, the platform's site values, then ``site_env`` from the inventory.
        """
        bench = self.benchmark(benchmark)
        plat = bench.platform(platform)
        env = dict(plat.env)
        env.update(plat.site_env)
        for key, value in (site_env or {}).items():
            env[str(key)] = _env_value(value, f"site_env.{key}", Path("inventory"))
        return {
            "benchmark": bench.name,
            "title": bench.title,
            "system": plat.name,
            "gpu": plat.gpu,
            "nodes": plat.nodes,
            "gpus_per_node": plat.gpus_per_node,
            "launch": plat.launch,
            "image": bench.image,
            "container_name": bench.container_name,
            "code_path_in_image": bench.code_path_in_image,
            "runs": bench.runs,
            "disk_gb": bench.disk_gb,
            "quality": dict(bench.quality),
            "evaluation": dict(bench.evaluation),
            "typical_samples_to_converge": bench.typical_samples_to_converge,
            "mounts": [dict(m) for m in bench.mounts],
            "required_env": list(bench.required_env),
            "dataset": dict(bench.dataset),
            "config_preamble": bench.config_preamble,
            "config_file": f"config_{plat.name}.sh",
            "env": env,
            "provenance": plat.provenance,
            "reference": None if plat.reference is None else {
                "score_minutes": plat.reference.score_minutes,
                "submission_id": plat.reference.submission_id,
                "expected_minutes": plat.reference.expected_minutes,
            },
            "ruleset": self.ruleset,
        }


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Load and validate the catalog (the packaged one by default)."""
    path = Path(path) if path else DEFAULT_CATALOG
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read the catalog: {exc.strerror}") from None
    try:
        # libyaml when present: ~20x faster, and each Ansible worker that resolves a benchmark
        # parses the catalog again (bench/fleet_bench.py)
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        try:
            data = yaml.safe_load(text)  # the pure-Python parser's message shows the line
        except yaml.YAMLError as exc:
            raise CatalogError(f"{path}: not valid YAML: {exc}") from None
    return parse_catalog(data, path)


def parse_catalog(data: Any, path: Path) -> Catalog:
    _mapping(data, "(top level)", path)
    if data.get("schema_version") != 1:
        raise CatalogError(f"{path}: schema_version: expected 1, got {data.get('schema_version')!r}")
    ruleset = _string(data.get("ruleset"), "ruleset", path)
    if not re.fullmatch(r"\d+\.\d+\.\d+", ruleset):
        raise CatalogError(f"{path}: ruleset: expected a version like 6.0.0, got {ruleset!r}")
    benchmarks = _mapping(data.get("benchmarks"), "benchmarks", path)
    if not benchmarks:
        raise CatalogError(f"{path}: benchmarks: expected at least one benchmark")
    parsed = {name: _benchmark(str(name), spec, path) for name, spec in benchmarks.items()}
    return Catalog(path=path, ruleset=ruleset, benchmarks=parsed)


def _benchmark(name: str, spec: Any, path: Path) -> Benchmark:
    where = f"benchmarks.{name}"
    spec = _mapping(spec, where, path)
    launch = _choice(spec.get("launch"), LAUNCH_MODES, f"{where}.launch", path)
    quality = _mapping(spec.get("quality"), f"{where}.quality", path)
    _number(quality.get("target"), f"{where}.quality.target", path)
    _choice(quality.get("direction"), DIRECTIONS, f"{where}.quality.direction", path)
    _string(quality.get("metric"), f"{where}.quality.metric", path)
    evaluation = _mapping(spec.get("evaluation"), f"{where}.evaluation", path)
    _positive_int(evaluation.get("every_samples"), f"{where}.evaluation.every_samples", path)
    dataset = _mapping(spec.get("dataset"), f"{where}.dataset", path)
    _choice(dataset.get("recipe"), RECIPES, f"{where}.dataset.recipe", path)
    mounts = spec.get("mounts", [])
    if not isinstance(mounts, list) or not all(
        isinstance(m, dict) and isinstance(m.get("host"), str) and isinstance(m.get("container"), str)
        for m in mounts
    ):
        raise CatalogError(f"{path}: {where}.mounts: expected a list of {{host: ..., container: ...}}")
    required_env = spec.get("required_env", [])
    if not isinstance(required_env, list) or not all(
        isinstance(v, str) and ENV_NAME_RE.match(v) for v in required_env
    ):
        raise CatalogError(f"{path}: {where}.required_env: expected a list of variable names")
    common_env = _env(spec.get("common_env", {}), f"{where}.common_env", path)
    platforms = _mapping(spec.get("platforms"), f"{where}.platforms", path)
    if not platforms:
        raise CatalogError(f"{path}: {where}.platforms: expected at least one platform")
    image = spec.get("image", "")
    if launch != "local":
        image = _string(image, f"{where}.image", path)
        if ":" not in image:
            raise CatalogError(f"{path}: {where}.image: expected repository:tag, got {image!r}")
    bench = Benchmark(
        name=name,
        title=_string(spec.get("title"), f"{where}.title", path),
        image=image,
        launch=launch,
        container_name=_string(spec.get("container_name"), f"{where}.container_name", path),
        code_path_in_image=_string(spec.get("code_path_in_image"), f"{where}.code_path_in_image", path),
        runs=_positive_int(spec.get("runs"), f"{where}.runs", path),
        disk_gb=_number(spec.get("disk_gb"), f"{where}.disk_gb", path),
        quality=quality,
        evaluation=evaluation,
        typical_samples_to_converge=_positive_int(
            spec.get("typical_samples_to_converge"), f"{where}.typical_samples_to_converge", path),
        mounts=mounts,
        required_env=required_env,
        dataset=dataset,
        config_preamble=str(spec.get("config_preamble", "")),
    )
    for pname, pspec in platforms.items():
        bench.platforms[str(pname)] = _platform(str(pname), pspec, bench, common_env,
                                                f"{where}.platforms.{pname}", path)
    return bench


def _platform(name: str, spec: Any, bench: Benchmark, common_env: dict[str, str],
              where: str, path: Path) -> Platform:
    spec = _mapping(spec, where, path)
    match = SYSTEM_RE.match(name)
    if not match:
        raise CatalogError(
            f"{path}: {where}: expected a config name like MI355X_1x8x1 or MI325X_08x08x32")
    env = dict(common_env)
    env.update(_env(spec.get("env", {}), f"{where}.env", path))
    if env.get("DGXSYSTEM") != name:
        raise CatalogError(
            f"{path}: {where}.env.DGXSYSTEM: expected {name!r} (the config name), "
            f"got {env.get('DGXSYSTEM')!r}")
    reference = None
    if spec.get("reference") is not None:
        ref = _mapping(spec["reference"], f"{where}.reference", path)
        sub = _string(ref.get("submission_id"), f"{where}.reference.submission_id", path)
        if not re.fullmatch(r"\d+\.\d+-\d{4}", sub):
            raise CatalogError(
                f"{path}: {where}.reference.submission_id: expected like 6.0-0036, got {sub!r}")
        expected = ref.get("expected_minutes")
        reference = Reference(
            score_minutes=_number(ref.get("score_minutes"), f"{where}.reference.score_minutes", path),
            submission_id=sub,
            expected_minutes=None if expected is None else _number(
                expected, f"{where}.reference.expected_minutes", path),
        )
    launch = _choice(spec.get("launch", bench.launch), LAUNCH_MODES, f"{where}.launch", path)
    return Platform(
        name=name,
        gpu=_string(spec.get("gpu"), f"{where}.gpu", path),
        nodes=int(match.group("nodes")),
        gpus_per_node=int(match.group("gpus")),
        launch=launch,
        env=env,
        site_env=_env(spec.get("site_env", {}), f"{where}.site_env", path),
        provenance=_string(spec.get("provenance"), f"{where}.provenance", path),
        reference=reference,
    )


def _mapping(value: Any, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise CatalogError(f"{path}: {where}: expected a mapping, got {type(value).__name__}")
    return value


def _string(value: Any, where: str, path: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{path}: {where}: expected a non-empty string, got {value!r}")
    return value


def _number(value: Any, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise CatalogError(f"{path}: {where}: expected a non-negative number, got {value!r}")
    return float(value)


def _positive_int(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CatalogError(f"{path}: {where}: expected a positive integer, got {value!r}")
    return value


def _choice(value: Any, choices: tuple[str, ...], where: str, path: Path) -> str:
    if value not in choices:
        raise CatalogError(f"{path}: {where}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def _env(value: Any, where: str, path: Path) -> dict[str, str]:
    value = _mapping(value, where, path)
    env = {}
    for key, val in value.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            raise CatalogError(f"{path}: {where}: {key!r} is not a valid environment variable name")
        if key == "NEXP":
            raise CatalogError(
                f"{path}: {where}.NEXP: NEXP must not be in a config (AMD's LoRA config resets it "
                "when sourced); set mlperf_nexp in the inventory instead")
        env[key] = _env_value(val, f"{where}.{key}", path)
    return env


def _env_value(value: Any, where: str, path: Path) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise CatalogError(
            f"{path}: {where}: expected a string (quote YAML booleans and numbers), got {value!r}")
    text = str(value)
    if UNSAFE_VALUE_RE.search(text):
        raise CatalogError(
            f"{path}: {where}: value {text!r} contains a double quote, backquote, backslash or "
            "newline, which cannot be rendered safely into a config file")
    return text
