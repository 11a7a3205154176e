#!/bin/bash
# mlperf-repro test stand-in for AMD's flux1 v6.0 run_with_docker_slurm.sh (our own script; see
# tests/infra/amd_layout/README.md), started on every node by job.sh as
# `srun bash run_with_docker_slurm.sh`. Container options and flow as the published file
# (Richardyu114/training_results_v6.0 @ eabf23a, AMD/benchmarks/flux1/implementations/
# 2xMI355X_EPYC_9575F_pytorch/run_with_docker_slurm.sh; ../shared/reference/amd-benchmark-code.md
# section 2.3): sudo docker when docker is not usable directly; cd to its own directory;
# required DGXSYSTEM, CONT, DATADIR, LOGDIR, ROOT_SEED; `mkdir -p LOGDIR && chmod 777 LOGDIR`;
# stops every running container of the node; one container per node with /dev/infiniband,
# --privileged, memlock/nofile ulimits; runtime_tunables.sh when RUNTIME_TUNABLES=1; per run a
# cache clear, SEED = ROOT_SEED + 100*SLURM_ARRAY_TASK_ID + i (the same on every node), and
# `docker exec ... bash ./run_and_time.sh` with the config's variables passed as --env=NAME=value;
# no tee (the job's output file gets everything) and no compliance step.
# Differences from AMD's, for test machines: the image is pulled only when the node lacks it (no
# registry); the config is sourced here so its values exist for --env=NAME=value (AMD's reads
# them from the caller's environment, which job.sh does not fill), a value the caller's
# environment has (the site's, which job.sh exports) being kept over the config's; the
# default-route interface comes from `ip route` when `route` is not installed.
set -euxo pipefail

if docker info >/dev/null 2>&1; then
    DOCKER="docker"
else
    echo "Docker not accessible directly, using sudo docker"
    DOCKER="sudo docker"
fi

SCRIPT_DIR=$(dirname "$(readlink -f "$0")")
cd "${SCRIPT_DIR}"

: "${DGXSYSTEM:?DGXSYSTEM not set}"
: "${CONT:?CONT not set}"
: "${DATADIR:?DATADIR not set}"
: "${LOGDIR:?LOGDIR not set}"
: "${ROOT_SEED:?ROOT_SEED not set}"

: "${NEXP:=10}"
: "${CLEAR_CACHES:=1}"
: "${CONT_NAME:=mlperf_flux1}"
: "${RUNTIME_TUNABLES:=1}"

readonly _config_file="./config_${DGXSYSTEM}.sh"
readonly _cont_name="${CONT_NAME}"

echo "Running on host: ${HOSTNAME:-$(hostname)}"
mkdir -p "${LOGDIR}" && chmod 777 "${LOGDIR}"
_cont_mounts=(
    "--volume=${DATADIR}:/dataset"
    "--volume=${LOGDIR}:/results"
    "--volume=$(pwd):/workspace/code"
    "--volume=$(pwd)/../../utilities:/workspace/utilities"
)

echo "Stopping all existing containers ..."
${DOCKER} ps -q | xargs -r ${DOCKER} stop

if ! ${DOCKER} image inspect "${CONT}" >/dev/null 2>&1; then
    ${DOCKER} pull "${CONT}"
fi

mapfile -t _config_env < <(env -i bash -c ". ${_config_file} && compgen -e" | grep -E -v '^(PWD|SHLVL)$')
_config_env+=(DGXSYSTEM)
# AMD's takes every value from the caller's environment: one set there (a site value job.sh
# exported) is kept; the config fills the others.
_caller_env=()
for v in "${_config_env[@]}"; do
    if [[ -v ${v} ]]; then _caller_env+=("${v}=${!v}"); fi
done
set -a
# shellcheck disable=SC1090
source "${_config_file}"
set +a
for v in "${_caller_env[@]}"; do export "${v?}"; done
_all_env=()
for v in "${_config_env[@]}"; do
    _all_env+=("--env=${v}=${!v}")
done

cleanup_docker() {
    ${DOCKER} container rm -f "${_cont_name}" >/dev/null 2>&1 || true
}
cleanup_docker
trap 'set -eux; cleanup_docker' EXIT

bash "${SCRIPT_DIR}/scripts/check_gpus_idle.sh"

${DOCKER} run --rm --init --detach \
      --net=host --uts=host \
      --ipc=host \
      --device /dev/dri \
      --device /dev/kfd \
      --device /dev/infiniband \
      --group-add video \
      --cap-add SYS_PTRACE \
      --cap-add IPC_LOCK \
      --privileged \
      --ulimit memlock=-1:-1 \
      --ulimit nofile=1048576:1048576 \
      --security-opt seccomp=unconfined \
      --name="${_cont_name}" "${_cont_mounts[@]}" \
      -e IMAGE_NAME="${CONT}" \
      "${CONT}" sleep infinity

sleep 5

if [[ ${RUNTIME_TUNABLES} == 1 ]]; then
    echo "Setting runtime tunables"
    bash runtime_tunables.sh
fi

${DOCKER} exec "${_cont_name}" true

_default_if() {
    if command -v route >/dev/null 2>&1; then
        route | grep '^default' | grep -o '[^ ]*$'
    else
        ip -o route show default | awk '{print $5; exit}'
    fi
}
NCCL_SOCKET_IFNAME=$(_default_if)
GLOO_SOCKET_IFNAME=${NCCL_SOCKET_IFNAME}
MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST}" | head -n 1)
MASTER_PORT=29501
export NCCL_SOCKET_IFNAME GLOO_SOCKET_IFNAME MASTER_ADDR MASTER_PORT

_sudo=""
if [[ $(id -u) != 0 ]]; then _sudo="sudo"; fi

for _experiment_index in $(seq 1 "${NEXP}"); do
{
  echo "Beginning trial ${_experiment_index} of ${NEXP}"
  if [[ ${CLEAR_CACHES} == 1 ]]; then
    bash -c "echo -n 'Clearing cache on ' && hostname && sync && ${_sudo} /sbin/sysctl vm.drop_caches=3"
    ${DOCKER} exec "${_cont_name}" python -c "
from mlperf_logging import mllog
mllog.get_mllogger().event(key=mllog.constants.CACHE_CLEAR, value=True)"
  fi

  SEED=$(( ROOT_SEED + 10#${SLURM_ARRAY_TASK_ID:-0} * 100 + 10#${_experiment_index} ))
  ${DOCKER} exec \
    -e MASTER_ADDR="${MASTER_ADDR}" \
    -e MASTER_PORT="${MASTER_PORT}" \
    -e SLURM_NNODES="${SLURM_NNODES}" \
    -e SLURM_NODEID="${SLURM_NODEID}" \
    -e NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME}" \
    -e GLOO_SOCKET_IFNAME="${GLOO_SOCKET_IFNAME}" \
    "${_all_env[@]}" \
    --env=SEED="${SEED}" \
    "${_cont_name}" \
    bash ./run_and_time.sh
}
done
