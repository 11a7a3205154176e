"""The benchmark catalog: benchmarks x platforms, loaded from one YAML file and validated.

Every error names the place in the file (``benchmarks.llama31_8b.platforms.MI355X_1x8x1.env``)
and what was expected, so a bad entry fails before any host is touched.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from .node.campaign import RUNTIMES

DEFAULT_CATALOG = Path(__file__).with_name("catalog.yml")
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

#: AMD's config names: <GPU>_<nodes>x<gpus per node>x<per-GPU batch or variant>.
SYSTEM_RE = re.compile(r"^(?P<gpu>[A-Z][A-Z0-9]*)_(?P<nodes>\d+)x(?P<gpus>\d+)x(?P<variant>\d+)$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Characters a value cannot hold in a shell file (bash strings end at NUL).
UNSAFE_VALUE_RE = re.compile("\0")
#: An integer, the only value a name read by a catalog ``$(( ... ))`` may have: bash evaluates a
#: variable's value inside arithmetic again, and ``a[$(cmd)]`` there runs ``cmd``.
INTEGER_RE = re.compile(r"^[+-]?[0-9]+$")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``${NAME}``, ``${NAME[0]}``, ``${NAME:-word}`` (and ``-``, ``:=``, ``=``, ``:+``, ``+``, ``#``,
#: ``##``, ``%``, ``%%``) with a literal word: the parameter expansions an expression may hold.
_PARAM_RE = re.compile(r"\$\{(?P<name>" + _NAME + r")(?:\[[0-9]+\])?"
                       r"(?:(?::-|:=|:\+|-|=|\+|##|#|%%|%)[A-Za-z0-9_.,:/*+@%=-]*)?\}")
_VAR_RE = re.compile(r"\$" + _NAME)
_ARITH_CHARS = set("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_ \t+-*/%<>=!&|^~?:,")
_ARITH_NAME_RE = re.compile(r"(?<![0-9A-Za-z_])" + _NAME)
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
    #: Names whose catalog value is a shell expression (rendered in double quotes).
    expressions: frozenset = frozenset()
    #: Names this config reads inside ``$(( ... ))``: their values must be integers.
    arithmetic_names: frozenset = frozenset()


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
        catalog_env = dict(env)
        site = {}
        expressions = set(plat.expressions)
        for key, value in (site_env or {}).items():
            # a site value is data: always literal, rendered single-quoted (render role)
            env[str(key)] = site[str(key)] = site_value(value, f"mlperf_site_env.{key}")
            expressions.discard(str(key))
            if str(key) in plat.arithmetic_names and not INTEGER_RE.match(env[str(key)]):
                raise CatalogError(
                    f"mlperf_site_env.{key}: expected an integer ({plat.name}'s config computes "
                    f"with it in $((...))), got {env[str(key)]!r}")
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
            # the site's values, in a file of their own sourced after config_file
            "site_config_file": SITE_CONFIG_FILE,
            "env": env,
            # what the catalog expects of the image's config, and the site's own values (the
            # render stage writes them to a file of their own, sourced after the config)
            "catalog_env": catalog_env,
            "site_env": site,
            # names whose value is a shell expression; every other value is literal data
            "env_expressions": [name for name in env if name in expressions],
            "provenance": plat.provenance,
            "reference": None if plat.reference is None else {
                "score_minutes": plat.reference.score_minutes,
                "submission_id": plat.reference.submission_id,
                "expected_minutes": plat.reference.expected_minutes,
            },
            "ruleset": self.ruleset,
        }


#: The file the render stage writes the site's values to, beside config_<SYSTEM>.sh; the runs
#: source it after the config (the image's own, or the catalog's where the image has none).
SITE_CONFIG_FILE = "site_env.sh"


#: The container runtimes a site may choose: node/campaign.py's RUNTIMES.


@functools.lru_cache(maxsize=1)
def packaged_catalog() -> Catalog:
    """The catalog packaged with mlperf_repro, loaded once per process."""
    return load_catalog()


def default_ruleset() -> str:
    """The mlperf-logging training ruleset a score uses unless told otherwise: the catalog's
    ``ruleset`` (the one place it is written)."""
    return packaged_catalog().ruleset


def quality_target(benchmark: str | None) -> float | None:
    """The benchmark's quality target from the packaged catalog (``quality.target``), or None
    for a benchmark the catalog does not know."""
    bench = packaged_catalog().benchmarks.get(str(benchmark)) if benchmark else None
    target = (bench.quality or {}).get("target") if bench else None
    return float(target) if isinstance(target, (int, float)) and not isinstance(target, bool) else None


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
    common_env, common_expressions = _env(spec.get("common_env", {}), f"{where}.common_env", path)
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
                                                common_expressions, f"{where}.platforms.{pname}",
                                                path)
    return bench


def _platform(name: str, spec: Any, bench: Benchmark, common_env: dict[str, str],
              common_expressions: set[str], where: str, path: Path) -> Platform:
    spec = _mapping(spec, where, path)
    match = SYSTEM_RE.match(name)
    if not match:
        raise CatalogError(
            f"{path}: {where}: expected a config name like MI355X_1x8x1 or MI325X_08x08x32")
    env, expressions = dict(common_env), set(common_expressions)
    own_env, own_expressions = _env(spec.get("env", {}), f"{where}.env", path)
    expressions = (expressions - set(own_env)) | own_expressions
    env.update(own_env)
    site_env, site_expressions = _env(spec.get("site_env", {}), f"{where}.site_env", path)
    expressions = (expressions - set(site_env)) | site_expressions
    arithmetic = set()
    for key in expressions:
        arithmetic |= expression_arithmetic_names(site_env.get(key, env.get(key, "")))
    merged = dict(env, **site_env)
    for key in sorted(arithmetic):
        if key in merged and key not in expressions and not INTEGER_RE.match(merged[key]):
            origin = (f"{where}.site_env" if key in site_env else f"{where}.env" if key in own_env
                      else f"{where.rsplit('.platforms.', 1)[0]}.common_env")
            raise CatalogError(
                f"{path}: {origin}.{key}: expected an integer (read inside $((...)) by "
                f"{where}), got {merged[key]!r}")
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
        site_env=site_env,
        provenance=_string(spec.get("provenance"), f"{where}.provenance", path),
        reference=reference,
        expressions=frozenset(expressions),
        arithmetic_names=frozenset(arithmetic),
    )


def _mapping(value: Any, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise CatalogError(f"{path}: {where}: expected a mapping, got {type_name(value)}")
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


def _env(value: Any, where: str, path: Path) -> tuple[dict[str, str], set[str]]:
    """``(env, names whose value is a shell expression)`` of one env mapping."""
    value = _mapping(value, where, path)
    env, expressions = {}, set()
    for key, val in value.items():
        if not isinstance(key, str) or not ENV_NAME_RE.match(key):
            raise CatalogError(f"{path}: {where}: {key!r} is not a valid environment variable name")
        if key == "NEXP":
            raise CatalogError(
                f"{path}: {where}.NEXP: NEXP must not be in a config (AMD's LoRA config resets it "
                "when sourced); set mlperf_nexp in the inventory instead")
        if isinstance(val, dict):
            if set(val) != {"expr"} or not isinstance(val["expr"], str):
                raise CatalogError(
                    f"{path}: {where}.{key}: expected a string or {{expr: \"<shell expression>\"}}, "
                    f"got {val!r}")
            problem = expression_problem(val["expr"])
            if problem:
                raise CatalogError(f"{path}: {where}.{key}.expr: {problem}")
            env[key] = val["expr"]
            expressions.add(key)
            continue
        env[key] = _env_value(val, f"{where}.{key}", path)
        if "$" in env[key]:
            raise CatalogError(
                f"{path}: {where}.{key}: value {env[key]!r} holds a $ but is literal data "
                "(rendered single-quoted); declare it {expr: \"...\"} if the shell must expand it")
    return env, expressions


def _env_value(value: Any, where: str, path: Path) -> str:
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise CatalogError(
            f"{path}: {where}: expected a string (quote YAML booleans and numbers), got {value!r}")
    text = str(value)
    if UNSAFE_VALUE_RE.search(text):
        raise CatalogError(f"{path}: {where}: value {text!r} contains a NUL character")
    return text


def site_value(value: Any, where: str) -> str:
    """A site value (``mlperf_site_env``) as the literal text a config file will hold.

    Any character but NUL: the value is data, rendered single-quoted, never expanded.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise CatalogError(f"{where}: expected a string or a number, got {type_name(value)}")
    text = str(value)
    if UNSAFE_VALUE_RE.search(text):
        raise CatalogError(f"{where}: contains a NUL character, which a shell variable cannot hold")
    return text


def type_name(value: Any) -> str:
    """A plain name for a value's type (never Ansible's internal class names)."""
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (Mapping, "mapping"), (list, "list"), (tuple, "list"), (set, "list")):
        if isinstance(value, kind):
            return name
    return "value of another kind"


def expression_problem(text: str) -> str | None:
    """Why ``text`` is not an allowed shell expression, or None.

    Allowed: literal text, ``$NAME``, the parameter expansions of ``_PARAM_RE`` with literal
    words, and ``$(( arithmetic ))`` over names, numbers and those expansions. Refused: command
    substitution (``$(``, backquotes), process substitution, backslashes, double quotes,
    newlines and any other ``$`` form: nothing in a catalog value may run a command.
    """
    i = 0
    while i < len(text):
        if text.startswith("$((", i):
            end = _arithmetic_end(text, i + 3)
            if isinstance(end, str):
                return f"{end} in {text!r}"
            i = end
        elif text.startswith("${", i):
            match = _PARAM_RE.match(text, i)
            if not match:
                return (f"{text[i:]!r}: only ${{NAME}}, ${{NAME[0]}} and ${{NAME:-word}}-style "
                        "expansions with a literal word are allowed")
            i = match.end()
        elif text[i] == "$":
            match = _VAR_RE.match(text, i)
            if not match:
                return (f"{text[i:]!r}: only $NAME, ${{NAME...}} and $((...)) may expand "
                        "(no command substitution)")
            i = match.end()
        elif text[i] in '`\\"\n\r\0':
            return f"{text!r} holds {text[i]!r}, which could run a command or end the quoting"
        elif text.startswith(("<(", ">("), i):
            return f"{text!r} holds a process substitution"
        else:
            i += 1
    return None


def _arithmetic_end(text: str, i: int) -> int | str:
    """The index after the ``))`` closing ``$((`` (body starts at ``i``), or why not allowed."""
    depth = 0
    while i < len(text):
        if text.startswith("))", i) and depth == 0:
            return i + 2
        char = text[i]
        if char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return "an unbalanced ')' in $((...))"
            depth -= 1
        elif text.startswith("${", i):
            match = _PARAM_RE.match(text, i)
            if not match:
                return f"{text[i:]!r} inside $((...)) is not a plain ${{NAME...}} expansion"
            i = match.end()
            continue
        elif char == "$":
            match = _VAR_RE.match(text, i)
            if not match:
                return "a $ inside $((...)) that is not $NAME (no command substitution)"
            i = match.end()
            continue
        elif char not in _ARITH_CHARS:
            return f"{char!r} inside $((...)): only names, numbers and operators are allowed"
        i += 1
    return "a $(( without its closing ))"


def expression_arithmetic_names(text: str) -> set[str]:
    """The names an expression reads inside ``$(( ... ))`` (their values are evaluated again)."""
    names: set[str] = set()
    i = 0
    while True:
        start = text.find("$((", i)
        if start < 0:
            return names
        end = _arithmetic_end(text, start + 3)
        if isinstance(end, str):
            return names
        body = text[start + 3:end - 2]
        # the words of ${NAME:-word} are literal, but a name there is still a name to check
        names |= set(_ARITH_NAME_RE.findall(body))
        i = end
