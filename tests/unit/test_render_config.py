"""config_<SYSTEM>.sh rendered from the catalog means, in bash, what AMD's file means."""

import subprocess
from pathlib import Path

import jinja2
import pytest

from mlperf_repro.catalog import load_catalog

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
                if "$" not in value:
                    assert env[key] == value, (bench.name, name, key)
            if spec["config_preamble"]:
                assert env["FROM_COMMON"] == "1"


def test_site_values_are_quoted_not_executed(tmp_path):
    with pytest.raises(Exception, match="double quote"):
        load_catalog().resolve("flux1", "MI325X_08x08x32", {"NCCL_IB_HCA": 'x"; rm -rf /; "'})
