"""The guide's values as written (issue 14, item 5): DATADIR, MODEL and LOGDIR.

- The mounts each benchmark's campaign renders from the guide's literal DATADIR/MODEL are the ones
  AMD's launcher mounts (amd-benchmark-code.md section 2.1), and the files the data stage expects
  are where the guide's "verify" trees put them.
- The campaign directory's mode is an explicit option: created with it whatever the umask,
  world-writable only when asked, a bad one refused before anything is created.
"""

import os
import stat
from pathlib import Path

import pytest

from mlperf_repro.catalog import load_catalog
from mlperf_repro.node import campaign
from mlperf_repro.inventory_check import site_problems

ROOT = Path(__file__).resolve().parents[2]

#: (benchmark, system, the guide's "Setup Environment" values, AMD's launcher mounts for them,
#:  where the guide's data tree puts one expected file)
GUIDE = [
    ("llama31_8b", "MI355X_1x8x1",
     {"DATADIR": "/data/mlperf_llama31_8b/data", "MODEL": "/data/mlperf_llama31_8b/model/"},
     ["/data/mlperf_llama31_8b/data:/data", "/data/mlperf_llama31_8b/model/:/model"],
     "/data/mlperf_llama31_8b/data/c4-train.en_6_text_document.bin"),
    ("llama31_8b", "MI350X_1x8x1",
     {"DATADIR": "/data/mlperf_llama31_8b/data", "MODEL": "/data/mlperf_llama31_8b/model/"},
     ["/data/mlperf_llama31_8b/data:/data", "/data/mlperf_llama31_8b/model/:/model"],
     "/data/mlperf_llama31_8b/data/c4-validation-91205-samples.en_text_document.idx"),
    ("llama2_70b_lora", "MI355X_1x8x1", {"DATADIR": "/data/mlperf_llama2"},
     ["/data/mlperf_llama2/data:/data", "/data/mlperf_llama2/data:/ckpt"],
     "/data/mlperf_llama2/data/train.npy"),
    ("llama2_70b_lora", "MI350X_1x8x1", {"DATADIR": "/data/mlperf_llama2"},
     ["/data/mlperf_llama2/data:/data"],
     "/data/mlperf_llama2/data/megatron_checkpoints/Llama-2-70b-hf/iter_0000000/common.pt"),
    ("flux1", "MI325X_08x08x32", {"DATADIR": "/data/mlperf_flux1/data"},
     ["/data/mlperf_flux1/data:/dataset"], "/data/mlperf_flux1/data/energon/train"),
]


def guide_spec(benchmark, system, values, tmp_path):
    spec = load_catalog().resolve(benchmark, system, {})
    return {"benchmark": benchmark, "system": system, "nexp": 10, "runtime": "docker",
            "code_dir": str(tmp_path / "code"), "config_file": str(tmp_path / "code" / "c.sh"),
            "image": spec["image"], "container_name": spec["container_name"],
            "mounts": spec["mounts"]}, spec


@pytest.mark.parametrize("benchmark,system,values,volumes,staged", GUIDE,
                         ids=[f"{b}-{s}" for b, s, *_ in GUIDE])
def test_the_guides_values_mount_as_amds_launcher_mounts_them(benchmark, system, values, volumes,
                                                              staged, tmp_path):
    spec, resolved = guide_spec(benchmark, system, values, tmp_path)
    env = dict(values, CODEDIR=str(tmp_path / "code"), CONT=resolved["image"])
    env.setdefault("MODEL", "/data/model")
    env["MODELDIR"] = env["MODEL"]
    root = tmp_path / "logs" / benchmark / system
    action, campaign_dir, _, commands = campaign.ensure_started(
        str(root), "c1", spec, "/unused/runner.py", env=env, check_mode=True)
    assert action == "started" and not root.exists()  # check mode creates nothing
    # the run stage's `docker run`, as the plan shows it and as the runner runs it
    expanded = dict(spec, mounts=campaign.expand_mounts(spec["mounts"],
                                                        dict(env, LOGDIR=campaign_dir)))
    argv = campaign.container_run_argv(expanded)
    pairs = [argv[i + 1] for i, word in enumerate(argv) if word == "--volume"]
    for volume in volumes:
        assert volume in pairs, pairs
    assert f"{campaign_dir}:/results" in pairs
    assert not any("/data/data" in p or "/data/mlperf_llama31_8b/data/model" in p for p in pairs)
    plan = "\n".join(commands)
    assert "${DATADIR}" in plan and "/data/mlperf_" not in plan.replace(str(tmp_path), "")
    if benchmark == "llama31_8b":
        assert "--volume ${DATADIR}:/data --volume ${MODEL}:/model" in plan, plan
        assert {"DATADIR", "MODEL", "MODELDIR"} <= set(resolved["required_env"])
    # the data stage expects its files where the guide's data tree has them
    expected = [p.replace("{MODEL}", values.get("MODEL", "")) for p in
                resolved["dataset"]["expected_files"]]
    assert staged in [os.path.join(values["DATADIR"], p) for p in expected]


def test_llama31_8b_downloads_go_where_the_guides_commands_put_them():
    """`cd /data/mlperf_llama31_8b; ... -d data <dataset>; ... -d model <tokenizer>`: with
    DATADIR=.../data and MODEL=.../model, the dataset is DATADIR itself, the tokenizer MODEL."""
    dataset = load_catalog().resolve("llama31_8b", "MI355X_1x8x1", {})["dataset"]
    dests = {d["uri"].rsplit("/", 1)[1]: d["dest"] for d in dataset["downloads"]}
    assert dests == {"llama-3-1-8b-preprocessed-c4-dataset.uri": ".",
                     "llama-3-1-8b-tokenizer.uri": "{MODEL}"}
    assert dataset["renames"] == [{"from": "llama3_1_8b_tokenizer", "to": "{MODEL}"}]
    assert not any(p.startswith("data/") for p in dataset["expected_files"])


# ---------------------------------------------------------------------------------------------
# the LOGDIR mode
@pytest.fixture
def umask_000():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("given,expected", [(None, 0o2770), ("2770", 0o2770), ("0750", 0o750),
                                            ("2750", 0o2750), ("770", 0o770)])
def test_campaign_directory_gets_the_given_mode_under_umask_000(given, expected, tmp_path,
                                                                umask_000):
    spec = {"nexp": 1, "campaign_id": "c1", "runtime": "none", "code_dir": "/x",
            "config_file": "/x/c.sh"}
    if given is not None:
        spec["logdir_mode"] = given
    mode, group = campaign.logdir_mode(campaign.check_spec(spec))
    directory = tmp_path / "root" / "c1"
    campaign.prepare(str(directory), spec, {"DATADIR": "/d"}, mode=mode, group=group)
    assert stat.S_IMODE(directory.stat().st_mode) == expected
    assert stat.S_IMODE((directory / "env.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((directory / "state.json").stat().st_mode) == 0o644


def test_campaign_directory_takes_the_given_group(tmp_path, umask_000):
    others = [g for g in os.getgroups() if g != os.getgid()]
    if os.geteuid() != 0 and not others:
        pytest.skip("needs root or a supplementary group")
    gid = 4242 if os.geteuid() == 0 else others[0]  # not the primary group: a real chown
    spec = {"nexp": 1, "campaign_id": "c1", "runtime": "none", "code_dir": "/x", "config_file": "/x/c.sh",
            "logdir_mode": "2770", "logdir_group": str(gid)}
    mode, group = campaign.logdir_mode(spec)
    directory = tmp_path / "c1"
    campaign.prepare(str(directory), spec, {}, mode=mode, group=group)
    st = directory.stat()
    assert st.st_gid == gid and stat.S_IMODE(st.st_mode) == 0o2770  # setgid kept after chown


@pytest.mark.parametrize("spec,words", [
    ({"logdir_mode": "0777"}, "world-writable"),
    ({"logdir_mode": "2772"}, "world-writable"),
    ({"logdir_mode": "0570"}, "owner can read, write and enter"),
    ({"logdir_mode": "rwx"}, "like 2770"),
    ({"logdir_mode": "2770", "logdir_group": "no-such-group-xyz"}, "does not exist"),
])
def test_a_bad_logdir_mode_is_refused_before_anything_is_created(spec, words, tmp_path):
    spec = dict(spec, nexp=1, runtime="none", code_dir="/x", config_file="/x/c.sh")
    root = tmp_path / "logs"
    with pytest.raises(campaign.CampaignError, match=words):
        campaign.ensure_started(str(root), "c1", spec, "/unused/runner.py", env={})
    assert not root.exists()


def test_world_writable_only_when_asked(tmp_path, umask_000):
    spec = {"nexp": 1, "campaign_id": "c1", "runtime": "none", "code_dir": "/x", "config_file": "/x/c.sh",
            "logdir_mode": "0777", "logdir_world_writable": True}
    mode, group = campaign.logdir_mode(spec)
    campaign.prepare(str(tmp_path / "c1"), spec, {}, mode=mode, group=group)
    assert stat.S_IMODE((tmp_path / "c1").stat().st_mode) == 0o777


GOOD = {
    "mlperf_benchmark": "smoke", "mlperf_system": "CPU_1x1x1", "mlperf_nexp": 10,
    "mlperf_container_runtime": "none", "mlperf_datadir": "/srv/mlperf/data",
    "mlperf_logdir": "/srv/mlperf/logs", "mlperf_workdir": "/srv/mlperf/work",
    "mlperf_results_dir": "/srv/mlperf/results", "mlperf_shared_storage": False,
    "mlperf_provision": False, "mlperf_site_env": {}, "tunables_mode": "off",
}
GROUPS = {"mlperf_nodes": ["n1"], "mlperf_staging": ["n1"]}


@pytest.mark.parametrize("values", [
    {"mlperf_logdir_mode": "2770"}, {"mlperf_logdir_mode": "0750"},
    {"mlperf_logdir_mode": "2770", "mlperf_logdir_group": "mlperf"},
    {"mlperf_logdir_group": 1000},
    {"mlperf_logdir_mode": "0777", "mlperf_logdir_world_writable": True},
    {"mlperf_datadir": "/data/mlperf_llama31_8b/data", "mlperf_modeldir": "/data/mlperf_llama31_8b/model/"},
])
def test_good_logdir_and_guide_values_pass(values):
    assert site_problems(dict(GOOD, **values), GROUPS) == []


def slurm_module(tmp_path, *args, check=False):
    """The real mlperf_slurm_job module, through `ansible localhost -m` (no sbatch is reached)."""
    import json
    import subprocess
    import sys
    campaign_dir = tmp_path / "r" / "c1"
    script = f"#!/bin/bash\n#SBATCH --output={campaign_dir}/x_%j.out\nexport LOGDIR={campaign_dir}\n"
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-m", "mlperf_slurm_job",
            "-a", json.dumps({"root": str(tmp_path / "r"), "campaign_id": "c1", "script": script,
                              "nexp": 1, "root_seed": 1, "output": "x_%j.out",
                              **dict(a.split("=", 1) for a in args)})]
    if check:
        argv.append("--check")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="0",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_slurm_module_refuses_a_world_writable_mode_unless_asked(tmp_path):
    refused = slurm_module(tmp_path, "mode=0777")
    assert refused.returncode != 0 and "world-writable" in refused.stdout, refused.stdout
    assert not (tmp_path / "r").exists()
    owner = slurm_module(tmp_path, "mode=0570")
    assert owner.returncode != 0 and "owner can read, write and enter" in owner.stdout
    asked = slurm_module(tmp_path, "mode=0777", "world_writable=true", check=True)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "world-writable" not in asked.stdout
