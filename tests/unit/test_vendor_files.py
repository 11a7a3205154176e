"""mlperf_repro.node.vendor_files: AMD's config_<SYSTEM>.sh and run_with_docker*.sh read as data.

Test data: the stand-in files of tests/infra/amd_layout, and lines of AMD's published v6.0 files
quoted below (Richardyu114/training_results_v6.0 @ eabf23a07b2a0c60a289ff871dc3a46fff0d0421,
under AMD/benchmarks/; the file of each excerpt is named above it). Nothing is executed: a test
below also checks that a config whose lines would have side effects is only read.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlperf_repro.node import campaign, vendor_files as vf

LAYOUT = Path(__file__).resolve().parents[1] / "infra" / "amd_layout"

# flux1/implementations/8xMI325X_EPYC_9575F_pytorch/config_MI325X_08x08x32.sh (lines 1-16)
FLUX_CONFIG_HEAD = """\
# Load default settings
source $(dirname ${BASH_SOURCE[0]})/config_common.sh
export CONFIG_FILENAME=$(basename "$(readlink -f "${BASH_SOURCE[0]}")")

export MAX_STEPS=${MAX_STEPS:--1}
export WARMUP_STEPS=${WARMUP_STEPS:-0}

export BATCHSIZE=2048
export LEARNING_RATE=${LEARNING_RATE:-"0.00025"}
export MBS=32
export FP8_RECIPE="delayed"
export DGXNNODES=8
export DGXNGPU=8
export SEGMENT=${DGXNNODES:-8}
"""
# the same file, its walltime lines
FLUX_WALLTIME = """\
# Walltime
export WALLTIME_RUNANDTIME=200
export WALLTIME=$((5 + ${NEXP:-1} * ($WALLTIME_RUNANDTIME + 5)))
"""
# llama31_8b/implementations/MI355X_EPYC_9575F_primus/config_MI355X_1x8x1.sh (excerpts; the
# trailing blanks are AMD's)
LLAMA8B_LINES = """\
export PYTHONPATH="${PRIMUS_PATH}:${PRIMUS_PATH}/third_party/Megatron-LM:${PYTHONPATH}"
export EVAL_SAMPLES_INTERVAL=12288         
export PRIMUS_EVAL_INTERVAL=$((EVAL_SAMPLES_INTERVAL / PRIMUS_GLOBAL_BATCH_SIZE))  # Auto-computed
export NVTE_FUSED_ATTN=1
export NVTE_FLASH_ATTN=0
export NVTE_FUSED_ATTN=1
export ENABLE_TRANSPOSE_CACHE=1  
export MLLOG_CONFIG_FILENAME=$(basename "${BASH_SOURCE[0]}")
export MLLOG_LOWEST_NUMERICAL_PRECISION_LINEAR='mxfp4'
export MLPERF_VERBOSE_LOGS=${MLPERF_VERBOSE_LOGS:-0}
"""
# llama2_70b_lora/implementations/MI350X_EPYC_9575F_primus/config_MI350X_1x8x1.sh (excerpts)
LORA_LINES = """\
export HEALING_PRECISION=${HEALING_PRECISION:-FP8_DS} 
export NCCL_MIN_CTAS=${NCCL_MIN_CTAS:-32} 
export FP8_DPA=0    
export MAX_STEPS=550
export NEXP=1
"""

# flux1/implementations/8xMI325X_EPYC_9575F_pytorch/run_with_docker.sh (excerpts, in order)
FLUX_RUN_WITH_DOCKER = """\
set -euxo pipefail

# Vars without defaults
: "${DGXSYSTEM:?DGXSYSTEM not set}"
: "${CONT:?CONT not set}"
: "${DATADIR:?DATADIR not set}"
: "${LOGDIR:?LOGDIR not set}"

# Vars with defaults
: "${NEXP:=1}"
: "${CONT_NAME:=mlperf_flux1}"

# Other vars
readonly _config_file="./config_${DGXSYSTEM}.sh"
readonly _logfile_base="${LOGDIR}/${DATESTAMP}"
readonly _cont_name="${CONT_NAME}"
_cont_mounts=("--volume=${DATADIR}:/dataset" "--volume=$(pwd):/workspace/code" "--volume=${LOGDIR}:/results")

# Get list of envvars to pass to docker
mapfile -t _config_env < <(env -i bash -c ". ${_config_file} && compgen -e" | grep -E -v '^(PWD|SHLVL)')
_config_env+=(DATADIR)
_config_env+=(DGXSYSTEM)
_config_env+=(LOGDIR)


mapfile -t _config_env < <(for v in "${_config_env[@]}"; do echo "--env=$v"; done)

# Setup container
 docker run --rm --init --detach \\
    --net=host --uts=host \\
    --ipc=host --device /dev/dri --device /dev/kfd \\
    --security-opt=seccomp=unconfined \\
    --name="${_cont_name}" "${_cont_mounts[@]}" \\
    -e IMAGE_NAME="${CONT}" \\
    "${CONT}" sleep infinity

# Make sure container has time to finish initialization
sleep 5
bash runtime_tunables.sh
docker exec "${_cont_name}" true

# Run experiments
for _experiment_index in $(seq 1 "${NEXP}"); do
  (
    echo "Beginning trial ${_experiment_index} of ${NEXP}"
    if [[ $CLEAR_CACHES == 1 ]]; then
      bash -c "echo -n 'Clearing cache on ' && hostname && sync && sudo /sbin/sysctl vm.drop_caches=3"
      docker exec ${_cont_name} python -c "
from mlperf_logging import mllog
mllogger = mllog.get_mllogger()
mllogger.event(key=mllog.constants.CACHE_CLEAR, value=True)"
    fi
    _config_env+=(--env=SEED=$RANDOM) # Reset random seed
    docker exec ${_config_env[@]} --env=HYDRA_FULL_ERROR ${_cont_name} ./run_and_time.sh
  ) 2>&1 | tee "${_logfile_base}_${_experiment_index}.log"

done
"""

# flux1/implementations/2xMI355X_EPYC_9575F_pytorch/run_with_docker_slurm.sh (excerpts, in order)
FLUX_SLURM = """\
if docker info >/dev/null 2>&1; then
    DOCKER="docker"
else
    echo "Docker not accessible directly, using sudo docker"
    DOCKER="sudo docker"
fi
: "${ROOT_SEED:?ROOT_SEED not set}"
: "${NEXP:=10}"
_cont_mounts=(
    "--volume=${DATADIR}:/dataset"
    "--volume=${LOGDIR}:/results"
    "--volume=$(pwd):/workspace/code"
    "--volume=$(pwd)/../../utilities:/workspace/utilities"
)
${DOCKER} run --rm --init --detach \\
      --net=host --uts=host \\
      --ipc=host \\
      --device /dev/dri \\
      --device /dev/kfd \\
      --device /dev/infiniband \\
      --group-add video \\
      --cap-add SYS_PTRACE \\
      --cap-add IPC_LOCK \\
      --privileged \\
      --ulimit memlock=-1:-1 \\
      --ulimit nofile=1048576:1048576 \\
      --security-opt seccomp=unconfined \\
      --name="${_cont_name}" "${_cont_mounts[@]}" \\
      -e IMAGE_NAME="${CONT}" \\
      "${CONT}" sleep infinity
for _experiment_index in $(seq 1 $NEXP); do
{
  export SEED=$(( ROOT_SEED + 10#${SLURM_ARRAY_TASK_ID:-0} * 100 + 10#${_experiment_index} ))
  ${DOCKER} exec \\
    -e MASTER_ADDR=$MASTER_ADDR \\
    -e MASTER_PORT=$MASTER_PORT \\
    -e SLURM_NNODES=$SLURM_NNODES \\
    -e SLURM_NODEID=$SLURM_NODEID \\
    ${_all_env[@]} \\
    --env=SEED=$SEED \\
    ${_cont_name} \\
    bash ./run_and_time.sh
}
done
"""

# llama31_8b/implementations/MI308X_MI325X_CDNA3_primus/run_with_docker.sh @ 7daa3815 (the fork
# owner's derived script, not the submission): two docker runs, chosen by DGXSYSTEM
FORK_TWO_RUNS = """\
if [[ "${DGXSYSTEM}" == MI* ]]; then
  echo "Using AMD/ROCm container flags"
  docker run --rm --init --detach \\
      --net=host --uts=host --ipc=host \\
      --device /dev/dri --device /dev/kfd --device=/dev/infiniband \\
      --cap-add=SYS_PTRACE --cap-add=CAP_SYS_ADMIN \\
      --security-opt=seccomp=unconfined \\
      --group-add video \\
      --privileged \\
      --name="${_cont_name}" "${_cont_mounts[@]}" \\
      -e IMAGE_NAME="${CONT}" \\
      "${CONT}" sleep infinity
else
  echo "Using NVIDIA container flags"
  docker run --rm --init --detach \\
      --net=host --uts=host \\
      --ipc=host --gpus all \\
      --ulimit memlock=-1 \\
      --ulimit stack=67108864 \\
      --device=/dev/infiniband \\
      --security-opt=seccomp=unconfined \\
      --name="${_cont_name}" "${_cont_mounts[@]}" \\
      -e IMAGE_NAME="${CONT}" \\
      "${CONT}" sleep infinity
fi
"""


def line_of(text: str, needle: str) -> int:
    return text[:text.index(needle)].count("\n") + 1


def standin(benchmark: str, name: str) -> str:
    return (LAYOUT / benchmark / "code" / name).read_text()


# ---------------------------------------------------------------------------------------------
# config_<SYSTEM>.sh

def test_published_config_shapes_are_read_without_executing():
    parsed = vf.parse_config_sh(FLUX_CONFIG_HEAD + FLUX_WALLTIME + LLAMA8B_LINES + LORA_LINES)
    v = parsed["variables"]
    assert parsed["unparsed"] == []
    # the include, with the file it names beside the config
    assert parsed["includes"] == [{"line": 2, "command": "source",
                                   "path": "$(dirname ${BASH_SOURCE[0]})/config_common.sh",
                                   "raw": "$(dirname ${BASH_SOURCE[0]})/config_common.sh",
                                   "file": "config_common.sh", "args": []}]
    # ${VAR:-default}, quotes inside it, command substitutions, arithmetic: kept, quoting removed
    first_max_steps = next(a for a in parsed["assignments"] if a["name"] == "MAX_STEPS")
    assert first_max_steps["value"] == "${MAX_STEPS:--1}" and first_max_steps["expands"]
    assert v["MAX_STEPS"]["value"] == "550"  # LORA_LINES assigns it again: the last one wins
    assert v["LEARNING_RATE"]["raw"] == '${LEARNING_RATE:-"0.00025"}'
    assert v["LEARNING_RATE"]["value"] == "${LEARNING_RATE:-0.00025}"
    assert v["CONFIG_FILENAME"]["value"] == "$(basename $(readlink -f ${BASH_SOURCE[0]}))"
    assert v["WALLTIME"]["value"] == "$((5 + ${NEXP:-1} * (${WALLTIME_RUNANDTIME} + 5)))"
    assert v["PRIMUS_EVAL_INTERVAL"]["raw"] == "$((EVAL_SAMPLES_INTERVAL / PRIMUS_GLOBAL_BATCH_SIZE))"
    assert v["PYTHONPATH"]["value"] == ("${PRIMUS_PATH}:${PRIMUS_PATH}/third_party/Megatron-LM:"
                                        "${PYTHONPATH}")
    assert v["FP8_RECIPE"] == {"value": "delayed", "raw": '"delayed"', "expands": False,
                               "exported": True, "line": 11, "op": "=", "conditional": False}
    assert v["MLLOG_LOWEST_NUMERICAL_PRECISION_LINEAR"]["value"] == "mxfp4"
    # trailing blanks and comments are not part of a value
    assert v["EVAL_SAMPLES_INTERVAL"]["raw"] == "12288" and v["FP8_DPA"]["raw"] == "0"
    assert v["HEALING_PRECISION"]["value"] == "${HEALING_PRECISION:-FP8_DS}"
    # a name assigned twice: the last one wins, both are in the assignments
    assert [a["line"] for a in parsed["assignments"] if a["name"] == "NVTE_FUSED_ATTN"] == [21, 23]
    assert v["NVTE_FUSED_ATTN"]["line"] == 23
    assert v["NEXP"]["value"] == "1"
    assert parsed["order"][:3] == ["CONFIG_FILENAME", "MAX_STEPS", "WARMUP_STEPS"]


def test_what_is_not_an_assignment_is_reported_by_line(tmp_path):
    marker = tmp_path / "executed"
    text = f"""#!/bin/bash
export A=1
if [ -n "$FAST" ]; then
  export B=2
fi
echo hello > {marker}
touch {marker}; export C=3
arr=(one two)
D=4 python3 -c 'print(1)'
export E="unclosed
. ./site_values.sh
export -n A
F=5
export F
G='$HOME'
"""
    parsed = vf.parse_config_sh(text)
    lines = {u["line"]: u["reason"] for u in parsed["unparsed"]}
    assert sorted(lines) == [3, 5, 6, 7, 8, 9, 10, 12]
    assert "block (if)" in lines[3] and "end of a block" in lines[5]
    assert "command 'echo' (with a pipe or redirection)" in lines[6]
    assert "command 'touch'" in lines[7]
    assert "array" in lines[8] and "a command with variables set for it" in lines[9]
    assert "unclosed double quote" in lines[10] and "export -n" in lines[12]
    v = parsed["variables"]
    assert v["B"]["conditional"] and not v["A"]["conditional"]
    assert v["C"]["value"] == "3" and v["C"]["line"] == 7  # after `;` on the same line
    assert "D" not in v and "E" not in v
    assert v["F"]["exported"] and not v["G"]["exported"]  # `export F` on a later line
    assert v["G"]["value"] == "\\$HOME" and not v["G"]["expands"]  # single quotes: literal
    assert parsed["includes"][0]["file"] == "site_values.sh" and parsed["includes"][0]["line"] == 11
    assert not marker.exists()  # read, never run


def test_crlf_and_several_assignments_a_line():
    parsed = vf.parse_config_sh("export A=1 B='two words'\r\nC=3; export D=\"$C\"\r\n")
    assert vf.config_values(parsed) == {"A": "1", "B": "two words", "C": "3", "D": "${C}"}
    assert vf.config_values(parsed, raw=True)["D"] == '"$C"'
    assert [parsed["variables"][n]["line"] for n in "ABCD"] == [1, 1, 2, 2]
    assert parsed["variables"]["D"]["expands"] and not parsed["variables"]["C"]["exported"]


def test_includes_are_followed_and_a_missing_one_is_said(tmp_path):
    code = LAYOUT / "flux1" / "code"

    def read(name):
        path = code / name
        return path.read_text() if path.exists() else None

    tree = vf.parse_config_tree("config_MI325X_08x08x32.sh", read)
    assert tree["unparsed"] == []
    assert tree["includes"][0]["found"] and tree["includes"][0]["file"] == "config_common.sh"
    v = tree["variables"]
    # config_common.sh's variables come at the include, before the config's own
    assert tree["order"][0] == "GPUS_PER_NODE" and v["GPUS_PER_NODE"]["file"] == "config_common.sh"
    assert v["TARGET_ACCURACY"]["value"] == "0.586"
    assert v["LEARNING_RATE"]["file"] == "config_MI325X_08x08x32.sh"
    assert tree["order"].index("SEED") < tree["order"].index("CONFIG_FILENAME")

    only = vf.parse_config_tree("config_MI325X_08x08x32.sh",
                                lambda n: read(n) if n != "config_common.sh" else None)
    assert only["includes"][0]["found"] is False and "GPUS_PER_NODE" not in only["variables"]
    cycle = vf.parse_config_tree("a.sh", {"a.sh": ". ./b.sh\nexport A=1\n",
                                          "b.sh": "source ./a.sh\nexport B=2\n"}.get)
    assert cycle["order"] == ["B", "A"]
    assert [i.get("reason") for i in cycle["includes"]] == [None, "include cycle"]


@pytest.mark.parametrize("benchmark, system", [
    ("llama2_70b_lora", "MI355X_1x8x1"), ("llama2_70b_lora", "MI350X_1x8x1"),
    ("llama31_8b", "MI355X_1x8x1"), ("llama31_8b", "MI350X_1x8x1"),
    ("flux1", "MI325X_08x08x32")])
def test_stand_in_configs_read_completely(benchmark, system):
    parsed = vf.parse_config_sh(standin(benchmark, f"config_{system}.sh"))
    assert parsed["unparsed"] == []
    v = vf.config_values(parsed)
    assert v.get("DGXSYSTEM", system) == system  # flux's file has no DGXSYSTEM (job.sh sets it)
    assert all(var["exported"] for var in parsed["variables"].values())
    assert len(v) >= 45


def test_stand_in_configs_hold_the_published_values():
    """The published differences between the systems (reference section 3.1) and the values
    of the excerpts above."""
    def values(benchmark, system):
        return vf.config_values(vf.parse_config_sh(standin(benchmark, f"config_{system}.sh")))

    a, b = values("llama31_8b", "MI355X_1x8x1"), values("llama31_8b", "MI350X_1x8x1")
    assert {k for k in a if a[k] != b[k]} == {"DGXSYSTEM", "PRIMUS_LR", "PRIMUS_MIN_LR",
                                             "MLLOG_SUBMISSION_PLATFORM"}
    assert (a["PRIMUS_LR"], b["PRIMUS_LR"], a["PRIMUS_MIN_LR"], b["PRIMUS_MIN_LR"]) == \
        ("8e-4", "1e-3", "8e-5", "1e-4")
    excerpt = vf.config_values(vf.parse_config_sh(LLAMA8B_LINES))
    assert all(a[k] == excerpt[k] for k in excerpt)
    lora355, lora350 = values("llama2_70b_lora", "MI355X_1x8x1"), values("llama2_70b_lora", "MI350X_1x8x1")
    assert {k for k in lora350 if lora350[k] != lora355[k]} == {"DGXSYSTEM", "MLLOG_SUBMISSION_PLATFORM"}
    excerpt = vf.config_values(vf.parse_config_sh(LORA_LINES))
    assert all(lora350[k] == excerpt[k] for k in excerpt)
    flux = values("flux1", "MI325X_08x08x32")
    excerpt = vf.config_values(vf.parse_config_sh(FLUX_CONFIG_HEAD + FLUX_WALLTIME))
    assert all(flux[k] == excerpt[k] for k in excerpt)


def test_compare_config_by_name_normalising_only_quoting():
    image = vf.parse_config_sh(
        "export A='x'\nexport B=\"${P}:$Q\"\nexport C=0.00025\nexport D=$HOME\n"
        "export E='$HOME'\nexport ONLY_IMAGE=1\nexport F=${F:-\"7\"}\n")
    catalog = {"A": "x", "B": "$P:${Q}", "C": "0.000250", "D": "${HOME}", "E": "$HOME",
               "ONLY_CATALOG": "2", "F": "${F:-7}"}
    diff = vf.compare_config(image, catalog)
    assert diff["same"] == ["A", "B", "D", "F"]
    assert diff["added"] == [{"name": "ONLY_IMAGE", "image": "1"}]
    assert diff["removed"] == [{"name": "ONLY_CATALOG", "catalog": "2"}]
    assert diff["changed"] == [{"name": "C", "image": "0.00025", "catalog": "0.000250"},
                               {"name": "E", "image": "'$HOME'", "catalog": "$HOME"}]
    # a plain {name: word} works the same
    assert vf.compare_config({"A": "'x'", "C": "1"}, {"A": "x", "C": "2"})["changed"] == \
        [{"name": "C", "image": "1", "catalog": "2"}]


# ---------------------------------------------------------------------------------------------
# run_with_docker*.sh

def test_amd_flux_run_with_docker_is_read():
    parsed = vf.parse_docker_run(FLUX_RUN_WITH_DOCKER)
    assert parsed["unparsed_commands"] == []
    (run,) = parsed["runs"]
    first = line_of(FLUX_RUN_WITH_DOCKER, " docker run --rm")
    assert (run["line"], run["end_line"]) == (first, first + 6)  # continuation lines joined
    assert run["rm"] and run["init"] and run["detach"] and not run.get("privileged")
    assert (run["network"], run["uts"], run["ipc"]) == ("host", "host", "host")
    assert run["device"] == ["/dev/dri", "/dev/kfd"]
    assert run["security_opt"] == ["seccomp=unconfined"]
    assert run["name"] == "${_cont_name}" and run["image"] == "${CONT}"
    assert run["command"] == ["sleep", "infinity"]
    # the mounts come from the array the script spells out, ${VAR} kept symbolic
    assert [(m["host"], m["container"], m["mode"]) for m in run["volume"]] == [
        ("${DATADIR}", "/dataset", None), ("$(pwd)", "/workspace/code", None),
        ("${LOGDIR}", "/results", None)]
    assert run["env"] == [{"name": "IMAGE_NAME", "value": "${CONT}", "raw": "IMAGE_NAME=${CONT}"}]
    assert run["unresolved"] == []
    assert parsed["required"] == ["DGXSYSTEM", "CONT", "DATADIR", "LOGDIR"]
    assert parsed["defaults"] == {"NEXP": "1", "CONT_NAME": "mlperf_flux1"}
    assert vf.resolve(run["name"], parsed) == "mlperf_flux1"
    assert parsed["arrays"]["_config_env"] is None  # filled by mapfile: not spelled out
    (loop,) = parsed["loops"]
    assert loop["variable"] == "_experiment_index" and loop["uses_nexp"]
    assert (loop["first"], loop["last"]) == ("1", "${NEXP}")
    execs = parsed["execs"]
    assert [e["command"][:1] for e in execs] == [["true"], ["python"], ["./run_and_time.sh"]]
    assert [e["in_loop"] for e in execs] == [None, loop["line"], loop["line"]]
    assert execs[2]["unresolved"] == ["${_config_env[@]}"]
    assert execs[2]["env"] == [{"name": "HYDRA_FULL_ERROR", "value": None, "raw": "HYDRA_FULL_ERROR"}]
    assert execs[2]["container"] == "${_cont_name}"
    assert "mllog.constants.CACHE_CLEAR" in execs[1]["command"][2]  # a multi-line argument


def test_amd_flux_slurm_script_is_read():
    parsed = vf.parse_docker_run(FLUX_SLURM)
    (run,) = parsed["runs"]
    assert run["program"] == "${DOCKER}"
    assert run["device"] == ["/dev/dri", "/dev/kfd", "/dev/infiniband"]
    assert run["group_add"] == ["video"] and run["cap_add"] == ["SYS_PTRACE", "IPC_LOCK"]
    assert run["privileged"] is True
    assert run["ulimit"] == ["memlock=-1:-1", "nofile=1048576:1048576"]
    assert run["security_opt"] == ["seccomp=unconfined"]
    assert [m["container"] for m in run["volume"]] == ["/dataset", "/results", "/workspace/code",
                                                       "/workspace/utilities"]
    assert run["volume"][3]["host"] == "$(pwd)/../../utilities"
    (exe,) = parsed["execs"]
    assert exe["command"] == ["bash", "./run_and_time.sh"] and exe["container"] == "${_cont_name}"
    assert [e["name"] for e in exe["env"]] == ["MASTER_ADDR", "MASTER_PORT", "SLURM_NNODES",
                                               "SLURM_NODEID", "SEED"]
    assert exe["env"][0]["value"] == "${MASTER_ADDR}"
    assert exe["unresolved"] == ["${_all_env[@]}"]
    assert parsed["loops"][0]["uses_nexp"] and parsed["required"] == ["ROOT_SEED"]


def test_every_docker_run_of_a_script_is_reported():
    parsed = vf.parse_docker_run(FORK_TWO_RUNS)
    first, second = parsed["runs"]
    assert (first["line"], second["line"]) == (3, 15)
    assert first["cap_add"] == ["SYS_PTRACE", "CAP_SYS_ADMIN"] and first["privileged"]
    assert first["device"] == ["/dev/dri", "/dev/kfd", "/dev/infiniband"]
    assert second["gpus"] == "all" and second["ulimit"] == ["memlock=-1", "stack=67108864"]
    assert first["unresolved"] == ["${_cont_mounts[@]}"]  # the array is not in this excerpt


def test_volume_and_option_spellings():
    run = vf.parse_docker_argv([
        "podman", "run", "-it", "-v", "${DATA:-/srv/x}:/data:ro", "--volume=/a:/b",
        "--network", "host", "-w", "/workspace/code", "--shm-size=16g", "--pid=host",
        "--env-file", "/e.env", "-e", "A=1", "--env", "B", "--mount", "type=bind,src=/s,dst=/d",
        "--frobnicate", "img:tag", "bash", "-c", "x"])
    assert run["interactive"] and run["tty"]
    assert run["volume"][0] == {"host": "${DATA:-/srv/x}", "container": "/data", "mode": "ro",
                                "raw": "${DATA:-/srv/x}:/data:ro"}
    assert (run["network"], run["workdir"], run["shm_size"], run["pid"]) == (
        "host", "/workspace/code", "16g", "host")
    assert run["env_file"] == ["/e.env"] and [e["value"] for e in run["env"]] == ["1", None]
    assert run["mount"] == ["type=bind,src=/s,dst=/d"] and run["other"] == ["--frobnicate"]
    assert run["image"] == "img:tag" and run["command"] == ["bash", "-c", "x"]


def test_a_line_that_cannot_be_read_is_reported():
    parsed = vf.parse_docker_run('echo "ok"\ndocker run --rm "img sleep 1\n')
    assert parsed["unparsed_commands"] == [{"line": 2, "reason": "unclosed double quote"}]


@pytest.mark.parametrize("benchmark", ["llama2_70b_lora", "llama31_8b", "flux1"])
def test_stand_in_scripts_have_amds_container_options(benchmark):
    """The stand-ins' docker run reads as AMD's published flux1 one does (same options)."""
    amd = vf.parse_docker_run(FLUX_RUN_WITH_DOCKER)["runs"][0]
    ours = vf.parse_docker_run(standin(benchmark, "run_with_docker.sh"))
    assert ours["unparsed_commands"] == [] and len(ours["runs"]) == 1
    diffs = vf.compare_launch(ours, amd)
    assert [d for d in diffs if d["kind"] != "volume"] == []
    assert any(e["command"][-1:] == ["./run_and_time.sh"] and e["in_loop"] for e in ours["execs"])
    assert any(loop["uses_nexp"] for loop in ours["loops"])
    run_exec = next(e for e in ours["execs"] if e["command"][-1:] == ["./run_and_time.sh"])
    assert run_exec["unresolved"] == ["${_env_args[@]}"]  # built in a loop: not spelled out


def test_stand_in_slurm_script_has_amds_container_options():
    amd = vf.parse_docker_run(FLUX_SLURM)
    ours = vf.parse_docker_run(standin("flux1", "run_with_docker_slurm.sh"))
    assert vf.compare_launch(ours, amd["runs"][0]) == []
    assert ours["execs"][-1]["command"] == ["bash", "./run_and_time.sh"]


# ---------------------------------------------------------------------------------------------
# AMD's launch against the native runner's

def native_argv(name, mounts, flags=None):
    spec = {"runtime": "docker", "container_name": name, "image": "rocm/amd-mlperf:flux1_training_6.0",
            "container_flags": flags if flags is not None else [
                "--net=host", "--uts=host", "--ipc=host", "--device=/dev/dri", "--device=/dev/kfd",
                "--security-opt=seccomp=unconfined"],
            "mounts": [{"host": h, "container": c} for h, c in mounts]}
    return campaign.container_run_argv(spec)


VALUES = {"DATADIR": "/data/mlperf_flux1/data", "LOGDIR": "/data/mlperf_flux1/results",
          "PWD": "/work/code/flux1", "CONT": "rocm/amd-mlperf:flux1_training_6.0"}


def test_native_runner_against_amds_single_node_launch():
    amd = vf.parse_docker_run(FLUX_RUN_WITH_DOCKER)
    native = native_argv("mlperf_flux1", [(VALUES["DATADIR"], "/dataset"),
                                          (VALUES["LOGDIR"], "/results"),
                                          (VALUES["PWD"], "/workspace/code")])
    assert vf.compare_launch(amd, native, VALUES) == [
        {"kind": "env", "name": "IMAGE_NAME", "amd": "IMAGE_NAME=${CONT}", "native": None,
         "difference": "only in AMD's"}]
    # a mount on another host path, a missing mount, a missing device, another name
    native = native_argv("mlperf_other", [("/elsewhere", "/dataset"), (VALUES["LOGDIR"], "/results")],
                         flags=["--net=host", "--uts=host", "--ipc=host", "--device=/dev/kfd",
                                "--security-opt=seccomp=unconfined", "--shm-size=8g"])
    diffs = {(d["kind"], d["name"]): d for d in vf.compare_launch(amd, native, VALUES)}
    assert diffs[("volume", "/dataset")]["difference"] == "differs"
    assert diffs[("volume", "/dataset")]["amd_host"] == VALUES["DATADIR"]
    assert diffs[("volume", "/workspace/code")]["difference"] == "only in AMD's"
    assert diffs[("device", "/dev/dri")]["difference"] == "only in AMD's"
    assert diffs[("shm_size", "shm_size")]["difference"] == "only in the native runner's"
    assert diffs[("name", "name")]["amd_resolved"] == "mlperf_flux1"
    # without values, symbolic host paths are not compared (the container side is)
    assert ("volume", "/dataset") not in {(d["kind"], d["name"]) for d in vf.compare_launch(
        amd, native_argv("mlperf_flux1", [("/elsewhere", "/dataset"), ("/l", "/results"),
                                          ("/c", "/workspace/code")]))}


def test_native_runner_against_amds_slurm_launch():
    amd = vf.parse_docker_run(standin("flux1", "run_with_docker_slurm.sh"))
    native = native_argv("mlperf_flux1", [(VALUES["DATADIR"], "/dataset"),
                                          (VALUES["LOGDIR"], "/results"),
                                          (VALUES["PWD"], "/workspace/code")])
    found = {(d["kind"], d["name"], d["difference"]) for d in vf.compare_launch(amd, native, VALUES)}
    assert found == {
        ("volume", "/workspace/utilities", "only in AMD's"),
        ("device", "/dev/infiniband", "only in AMD's"),
        ("group_add", "video", "only in AMD's"),
        ("cap_add", "SYS_PTRACE", "only in AMD's"),
        ("cap_add", "IPC_LOCK", "only in AMD's"),
        ("ulimit", "memlock", "only in AMD's"),
        ("ulimit", "nofile", "only in AMD's"),
        ("privileged", "privileged", "only in AMD's"),
        ("env", "IMAGE_NAME", "only in AMD's"),
    }


def test_compare_launch_needs_a_docker_run():
    with pytest.raises(ValueError, match="no docker run"):
        vf.compare_launch(vf.parse_docker_run("echo hi\n"), ["docker", "run", "img"])


def test_module_is_standard_library_only():
    source = (Path(vf.__file__)).read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.startswith(("import ", "from "))}
    assert imports <= {"re"}, imports
    assert os.path.basename(vf.__file__) == "vendor_files.py"
