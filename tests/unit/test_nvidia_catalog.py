"""The NVIDIA catalog entries are the published v5.1 configs, value for value (issue 16, item 4).

The published files (mlcommons/training_results_v5.1 at 441d65f, copied to tests/data/nvidia-v5.1
with the files they source) are read as data (tests/infra/shell_assignments.py: nothing in them
runs), and compared with:
- the catalog's resolved config for each of the three systems;
- what ``plan`` on ``inventory/h200`` renders for the node: the config_<SYSTEM>.sh of its diff,
  read as data and sourced by bash beside the published file (same exported environment);
and the catalog's reference score is what the project's scorer computes from the published set.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlperf_repro import api
from mlperf_repro.catalog import load_catalog
from mlperf_repro.node.pyxis_job import srun_lines
from mlperf_repro.scoring import score_directory
from tests.infra.shell_assignments import published_assignments

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "nvidia-v5.1"

#: (benchmark, system, the published config, names the catalog leaves to the image with why)
PUBLISHED = [
    ("llama2_70b_lora", "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1",
     DATA / "lora_h200" / "config_XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1.sh", {}),
    ("llama31_8b", "DGXB200_1x8x2xtp1pp1cp1_8b",
     DATA / "llama31_8b_b200" / "config_DGXB200_1x8x2xtp1pp1cp1_8b.sh", {}),
    ("flux1", "DGXB200_04x08x32", DATA / "flux1_b200" / "config_DGXB200_04x08x32.sh",
     {"EXP_NAME": "a command substitution ($(date ...)): a catalog value never runs a command"}),
]


def published_expected(system, config, left_out):
    env = published_assignments(config)
    # DGXSYSTEM is computed there from the file's own name: config_<system>.sh
    assert "basename" in env.pop("DGXSYSTEM")
    expected = {"DGXSYSTEM": system}
    expected.update({k: v for k, v in env.items() if k not in left_out})
    return expected


@pytest.mark.parametrize("benchmark,system,config,left_out", PUBLISHED,
                         ids=[s for _, s, _, _ in PUBLISHED])
def test_the_catalog_holds_the_published_config_value_for_value(benchmark, system, config, left_out):
    spec = load_catalog().resolve(benchmark, system)
    expected = published_expected(system, config, left_out)
    assert spec["catalog_env"] == expected
    assert spec["platform"] == "nvidia" and spec["platform_spec"]["driver_role"] == "nvidia_driver"
    # what the catalog cannot hold is only what the entry says it leaves to the image
    assert set(published_assignments(config)) - set(spec["catalog_env"]) == set(left_out)
    nodes, gpus = int(expected["DGXNNODES"]), int(expected["DGXNGPU"])
    assert (spec["nodes"], spec["gpus_per_node"]) == (nodes, gpus)
    # the image the README builds (FROM nvcr.io/nvidia/pytorch:25.09-py3)
    assert spec["image"].startswith("mlperf-nvidia:") and spec["reference"]["result_set"]


def test_the_h200_reference_is_what_the_scorer_computes_from_the_published_set():
    spec = load_catalog().resolve("llama2_70b_lora", "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1")
    score = score_directory(DATA / "lora_h200" / "results", ruleset="5.1.0")
    data = score.to_dict() if hasattr(score, "to_dict") else score
    assert data["valid"], data
    assert round(data["score_minutes"], 2) == spec["reference"]["score_minutes"] == 23.53
    assert spec["reference"]["submitter"] == "Dell"


def _inventory(tmp_path, name):
    """inventory/<name> as shipped, its hosts reached locally (every other value as written)."""
    inv = tmp_path / "inventory"
    shutil.copytree(ROOT / "inventory" / name, inv)
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    python = str(Path(sys.executable))
    for group in hosts["all"]["children"].values():
        for host, values in list((group.get("hosts") or {}).items()):
            if values and values.get("ansible_host") == "FILL_IN":
                group["hosts"][host] = {"ansible_connection": "local",
                                        "ansible_python_interpreter": python}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return inv


def _rendered(diff_text):
    lines = [line[1:] for line in diff_text.splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    return "\n".join(lines) + "\n"


def _sourced(path, cwd):
    """The environment bash exports after sourcing ``path`` (an empty environment around it)."""
    out = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "bash", "-c",
                          '. "$1" >/dev/null; env -0', "bash", str(path)],
                         cwd=cwd, capture_output=True, check=True).stdout
    env = dict(item.split("=", 1) for item in out.decode().split("\0") if item)
    for name in ("PWD", "SHLVL", "_", "OLDPWD", "PATH"):
        env.pop(name, None)
    return env


#: (inventory, benchmark, system, the published config): what plan renders on each inventory
PLANNED = [("h200", "llama2_70b_lora", "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1",
            DATA / "lora_h200" / "config_XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1.sh"),
           ("b200", "llama31_8b", "DGXB200_1x8x2xtp1pp1cp1_8b",
            DATA / "llama31_8b_b200" / "config_DGXB200_1x8x2xtp1pp1cp1_8b.sh")]


@pytest.mark.parametrize("name,benchmark,system,config", PLANNED, ids=[p[0] for p in PLANNED])
def test_plan_on_the_inventory_renders_the_published_config_value_for_value(
        tmp_path, name, benchmark, system, config):
    inv = _inventory(tmp_path, name)
    work = tmp_path / "work"
    # The node's code directory as the render stage leaves it after copying the code out of an
    # image that has no config for this system (the image is built by the site, README 3.1): the
    # catalog's config is rendered, and plan shows it.
    code = work / "code" / benchmark
    code.mkdir(parents=True)
    (code / ".copied-from-image").touch()
    extravars = {"ansible_user": os.environ.get("USER", "root"),
                 "mlperf_datadir": str(tmp_path / "data"), "mlperf_logdir": str(tmp_path / "logs"),
                 "mlperf_workdir": str(work), "mlperf_results_dir": str(tmp_path / "results"),
                 "mlperf_container_runtime": "podman"}
    plan = api.plan(str(inv), tags="render", extravars=extravars,
                    private_data_dir=tmp_path / "runner")
    assert plan.ok, plan.failed_tasks
    diffs = [d for d in plan.diffs if (d.path or "").endswith(f"config_{system}.sh")]
    assert len(diffs) == 1, [d.path for d in plan.diffs]
    rendered = tmp_path / f"config_{system}.sh"
    rendered.write_text(_rendered(diffs[0].diff))
    assert not (code / f"config_{system}.sh").exists()  # plan changed nothing
    # as data: every published assignment, the same value, nothing else
    assert published_assignments(rendered) == published_expected(system, config, {})
    # as the shell sees them: the same exported environment as the published file sourced
    assert _sourced(rendered, tmp_path) == _sourced(config, config.parent)


def test_the_published_h200_logs_are_held_against_dells_reference():
    # the logs call themselves 1xXE9680Lx8H200-SXM-141GB: the catalog's one 1-node H200 system
    out = subprocess.run([str(Path(sys.executable).parent / "mlperf-repro"), "score", "--ruleset",
                          "5.1.0", "--json", str(DATA / "lora_h200" / "results")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["platform"]["catalog_platform"] == "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1"
    versus = data["versus_reference"]
    assert versus["sentence"].startswith("1.00x the time of Dell's H200 submission (results "
                                         "Dell/results/1xXE9680Lx8H200-SXM-141GB/llama2_70b_lora)")


def test_a_submission_package_names_the_nvidia_accelerator():
    from mlperf_repro.package import system_description

    desc, _ = system_description("Dell", "XE9680Lx8H200-SXM-141G_1x8x1xtp1pp1cp1", "llama2_70b_lora")
    assert desc["accelerator_model_name"] == "NVIDIA H200"
    assert (desc["number_of_nodes"], desc["accelerators_per_node"]) == ("1", "8")


def test_plan_on_inventory_b200_renders_run_sub_for_flux_not_job_sh(tmp_path):
    inv = _inventory(tmp_path, "b200")
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())
    nodes = hosts["all"]["children"]["mlperf_nodes"]["hosts"]
    for k in (2, 3, 4):  # Flux.1's system runs on four nodes; render never reaches these three
        nodes[f"b200-node{k}"] = {"ansible_host": f"192.0.2.{k}"}
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    work, logs = tmp_path / "shared" / "work", tmp_path / "shared" / "logs"
    extravars = {"ansible_user": os.environ.get("USER", "root"), "mlperf_benchmark": "flux1",
                 "mlperf_system": "DGXB200_04x08x32", "mlperf_shared_storage": True,
                 "mlperf_datadir": str(tmp_path / "shared" / "data"), "mlperf_logdir": str(logs),
                 "mlperf_workdir": str(work), "mlperf_results_dir": str(tmp_path / "results"),
                 "mlperf_slurm_partition": "batch", "mlperf_container_runtime": "podman"}
    plan = api.plan(str(inv), tags="render", extravars=extravars,
                    private_data_dir=tmp_path / "runner")
    assert plan.ok, plan.failed_tasks
    paths = [d.path or "" for d in plan.diffs]
    assert not any(p.endswith("/job.sh") for p in paths), paths  # AMD's launcher is not rendered
    (diff,) = [d for d in plan.diffs if (d.path or "").endswith("/run.sub")]
    text = _rendered(diff.diff)
    assert "#SBATCH --nodes=4" in text and "#SBATCH --partition=batch" in text
    root = logs / "flux1" / "DGXB200_04x08x32"
    assert f'export LOGDIR={root}/job-"${{SLURM_JOB_ID:?run this script with sbatch}}"' in text
    setup, run = srun_lines(text)
    assert "--container-image=mlperf-nvidia:flux1-pyt" in setup
    assert f"--container-mounts={tmp_path}/shared/data/energon:/dataset/energon,${{LOGDIR}}:/results," \
           f"{work}/code/flux1:/workspace/flux" in run
    assert not (work / "code" / "flux1").exists()  # plan changed nothing
