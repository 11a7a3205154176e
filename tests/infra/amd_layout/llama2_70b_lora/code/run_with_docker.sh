#!/bin/bash
# mlperf-repro test stand-in for AMD's llama2_70b_lora run_with_docker.sh (our own script; see
# tests/infra/amd_layout/README.md). AMD's v6.0 file is not public; this one has the container
# options and the flow that ../shared/reference/amd-benchmark-code.md section 2.1 (b) gives for
# the v5.1 original (blob c2d4652c), with the v6.0 data layout (section 3.2):
#   required DGXSYSTEM, CONT, DATADIR; LOGDIR defaults to ./results; CONT_NAME mlperf_llama2sft;
#   ${DATADIR}/data at /data and at /ckpt (v6.0's PRETRAINED_CHECKPOINT is
#   /ckpt/megatron_checkpoints/..., which the guide's layout keeps in ${DATADIR}/data; v5.1
#   mounted ${DATADIR}/model at /ckpt); bash runtime_tunables.sh on the host after the
#   container starts; runs 0..NEXP-1, each `tee`d to ${LOGDIR}/result_<i>.txt; no compliance.
# Usage, as the guide: source config_<SYSTEM>.sh; export NEXP=10; bash run_with_docker.sh
set -euxo pipefail

# Vars without defaults
: "${DGXSYSTEM:?DGXSYSTEM not set}"
: "${CONT:?CONT not set}"
: "${DATADIR:?DATADIR not set}"

# Vars with defaults
: "${LOGDIR:=$(pwd)/results}"
: "${NEXP:=1}"
: "${CLEAR_CACHES:=1}"
: "${CONT_NAME:=mlperf_llama2sft}"

readonly _config_file="./config_${DGXSYSTEM}.sh"
readonly _cont_name="${CONT_NAME}"
_cont_mounts=(
    "--volume=${DATADIR}/data:/data"
    "--volume=${DATADIR}/data:/ckpt"
    "--volume=$(pwd):/workspace/code"
    "--volume=${LOGDIR}:/results"
)
mkdir -p "${LOGDIR}"

# The names the config exports go into the container by name (values from this shell).
mapfile -t _config_env < <(env -i bash -c ". ${_config_file} && compgen -e" | grep -E -v '^(PWD|SHLVL)$')
_config_env+=(DATADIR DGXSYSTEM LOGDIR HF_TOKEN)
_env_args=()
for _name in "${_config_env[@]}"; do _env_args+=("--env=${_name}"); done

_sudo=""
if [[ $(id -u) != 0 ]]; then _sudo="sudo"; fi

cleanup_docker() {
    docker container rm -f "${_cont_name}" >/dev/null 2>&1 || true
}
cleanup_docker
trap 'set -eux; cleanup_docker' EXIT

docker run --rm --init --detach \
    --net=host --uts=host \
    --ipc=host --device /dev/dri --device /dev/kfd \
    --security-opt=seccomp=unconfined \
    --name="${_cont_name}" "${_cont_mounts[@]}" \
    -e IMAGE_NAME="${CONT}" \
    "${CONT}" sleep infinity

# Give the container time to finish starting
sleep 5
bash runtime_tunables.sh
docker exec "${_cont_name}" true

for _experiment_index in $(seq 0 $((NEXP-1))); do
  (
    echo "Beginning trial $((_experiment_index + 1)) of ${NEXP}"
    if [[ ${CLEAR_CACHES} == 1 ]]; then
      bash -c "echo -n 'Clearing cache on ' && hostname && sync && ${_sudo} /sbin/sysctl vm.drop_caches=3"
      docker exec "${_cont_name}" python -c "
from mlperf_logging import mllog
mllog.get_mllogger().event(key=mllog.constants.CACHE_CLEAR, value=True)"
    fi
    docker exec "${_env_args[@]}" --env=SEED="${RANDOM}" "${_cont_name}" ./run_and_time.sh
  ) 2>&1 | tee "${LOGDIR}/result_${_experiment_index}.txt"
done
echo "Number of experiments ${NEXP}"
