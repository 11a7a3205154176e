"""config_<SYSTEM>.sh rendered from the catalog means, in bash, what AMD's file means."""

import subprocess
from pathlib import Path

import jinja2
import pytest

from mlperf_repro.catalog import CatalogError, load_catalog

TEMPLATES = Path(__file__).resolve().parents[2] / "roles" / "render" / "templates"


def render(spec, tmp_path):
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    text = env.get_template("config.sh.j2").render(mlperf_spec=spec, ansible_managed="managed")
    path = tmp_path / spec["config_file"]
    path.write_text(text)
    return path


def source(path, pre=""):
    script = f'{pre} set -a; . "{path}"; set +a; env -0'
    out = subprocess.run(["env", "-i", "bash", "-c", script], capture_output=True, check=True,
                         cwd=path.parent).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def test_llama31_8b_config_evaluates_like_amds(tmp_path):
    spec = load_catalog().resolve("llama31_8b", "MI355X_1x8x1")
    env = source(render(spec, tmp_path))
    assert env["DGXSYSTEM"] == "MI355X_1x8x1"
    assert env["PRIMUS_EVAL_INTERVAL"] == "384"  # $((12288 / 32))
    assert env["MLLOG_CONFIG_FILENAME"] == "config_MI355X_1x8x1.sh"
    assert env["PYTHONPATH"].startswith("/workspace/Primus:/workspace/Primus/third_party/Megatron-LM:")
    assert env["PYTORCH_ROC_ALLOC_CONF"] == "expandable_segments:True"
    assert "NEXP" not in env


def test_lora_defaults_can_be_overridden_from_outside(tmp_path):
    spec = load_catalog().resolve("llama2_70b_lora", "MI350X_1x8x1")
    path = render(spec, tmp_path)
    assert source(path)["HEALING_ITER"] == "340"
    assert source(path, "export HEALING_ITER=200;")["HEALING_ITER"] == "200"


def test_every_config_sources_cleanly(tmp_path):
    catalog = load_catalog()
    for bench in catalog.benchmarks.values():
        for name in bench.platforms:
            spec = catalog.resolve(bench.name, name)
            path = render(spec, tmp_path)
            if spec["config_preamble"]:
                (tmp_path / "config_common.sh").write_text("export FROM_COMMON=1\n")
            env = source(path)
            for key, value in spec["env"].items():
                if key not in spec["env_expressions"]:
                    assert env[key] == value, (bench.name, name, key)
            if spec["config_preamble"]:
                assert env["FROM_COMMON"] == "1"


# Site values are data: whatever they hold reaches the environment as written, and runs nothing.
SITE_VALUES = [
    "$(touch {marker})",
    "`touch {marker}`",
    "eno0; touch {marker}",
    "eno0 && touch {marker} #",
    "'; touch {marker}; '",
    "\"; touch {marker}; \"",
    "it's a \"quoted\" value",
    "first line\ntouch {marker}\nlast line",
    "back\\slash\\",
    "${{HOME}} $HOME $((1+1)) !! ~",
    "'$(touch {marker})'",
    "*",
    "",
]


@pytest.mark.parametrize("value", SITE_VALUES)
def test_site_values_are_data_never_executed(tmp_path, value):
    marker = tmp_path / "executed"
    value = value.format(marker=marker)
    spec = load_catalog().resolve("flux1", "MI325X_08x08x32",
                                  {"NCCL_IB_HCA": value, "MY_SITE_VALUE": value})
    path = render(spec, tmp_path)
    env = source(path)
    assert not marker.exists(), path.read_text()
    assert env["NCCL_IB_HCA"] == value
    assert env["MY_SITE_VALUE"] == value
    # the rest of the config is unchanged by it
    assert env["DGXSYSTEM"] == "MI325X_08x08x32"
    assert env["LEARNING_RATE"] == "0.00025"


def test_a_site_value_replaces_a_catalog_expression_literally(tmp_path):
    spec = load_catalog().resolve("llama2_70b_lora", "MI350X_1x8x1",
                                  {"HEALING_ITER": "${HEALING_ITER:-1}"})
    assert "HEALING_ITER" not in spec["env_expressions"]
    assert source(render(spec, tmp_path), "export HEALING_ITER=200;")["HEALING_ITER"] == \
        "${HEALING_ITER:-1}"


def test_only_declared_catalog_expressions_expand(tmp_path):
    spec = load_catalog().resolve("flux1", "MI325X_08x08x32")
    text = render(spec, tmp_path).read_text()
    assert "export LEARNING_RATE=\"${LEARNING_RATE:-0.00025}\"" in text
    assert "export DGXSYSTEM='MI325X_08x08x32'" in text
    exports = [line for line in text.splitlines() if line.startswith("export ")]
    assert exports and not any("$(" in line and "$((" not in line for line in exports)
    assert "export MLPERF_SUBMISSION_PLATFORM='MI325X'" in exports
    assert set(spec["env_expressions"]) >= {"LEARNING_RATE", "WALLTIME"}


def test_amds_config_filename_without_a_command(tmp_path):
    spec = load_catalog().resolve("llama2_70b_lora", "MI355X_1x8x1")
    assert spec["env"]["MLLOG_CONFIG_FILENAME"] == "${BASH_SOURCE[0]##*/}"
    assert source(render(spec, tmp_path))["MLLOG_CONFIG_FILENAME"] == "config_MI355X_1x8x1.sh"


def test_a_name_computed_with_in_arithmetic_must_be_an_integer(tmp_path):
    catalog = load_catalog()
    with pytest.raises(CatalogError, match=r"mlperf_site_env.EVAL_SAMPLES_INTERVAL: expected an integer"):
        catalog.resolve("llama31_8b", "MI355X_1x8x1", {"EVAL_SAMPLES_INTERVAL": "a[$(touch x)]"})
    spec = catalog.resolve("llama31_8b", "MI355X_1x8x1", {"EVAL_SAMPLES_INTERVAL": 24576})
    assert source(render(spec, tmp_path))["PRIMUS_EVAL_INTERVAL"] == "768"
