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
    spec = load_catalog().resolve("flux1", "MI325X_08x08x32", {"SITE": "a$b 'c'"})
    text = render(spec, tmp_path).read_text()
    exports = [line for line in text.splitlines() if line.startswith("export ")]
    assert 'export LEARNING_RATE="${LEARNING_RATE:-0.00025}"' in exports
    # a plain value is written as in AMD's files; one with any other character single-quoted
    assert 'export DGXSYSTEM="MI325X_08x08x32"' in exports
    assert "export SITE='a$b '\\''c'\\'''" in exports
    assert not any("$(" in line and "$((" not in line for line in exports)
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


def test_the_render_stage_writes_site_values_that_run_nothing(tmp_path):
    """The real thing: ansible-playbook renders config_CPU_1x1x1.sh on inventory/local with
    hostile site values; bash sources it; nothing runs and every value arrives as written."""
    import json
    import os
    import sys

    root = Path(__file__).resolve().parents[2]
    bin_dir = Path(sys.executable).parent
    marker = tmp_path / "executed"
    values = {f"SITE_{i}": v.format(marker=marker) for i, v in enumerate(SITE_VALUES) if v.strip()}
    extra = {"mlperf_local_root": str(tmp_path / "root"), "mlperf_results_dir": str(tmp_path / "results"),
             "mlperf_site_env": values}
    proc = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "site.yml", "-i", "inventory/local", "--tags", "render",
         "-e", json.dumps(extra)], cwd=root, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1"))
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert not marker.exists()
    config = tmp_path / "root" / "work" / "code" / "smoke" / "config_CPU_1x1x1.sh"
    site = config.parent / "site_env.sh"
    # the site's values are in their own file, sourced after the config (as the runs do)
    assert not any(name in config.read_text() for name in values)
    env = source(site, pre=f'set -a; . "{config}"; set +a;')
    assert not marker.exists(), site.read_text()
    for name, value in values.items():
        assert env[name] == value, name
    assert env["DGXSYSTEM"] == "CPU_1x1x1"
