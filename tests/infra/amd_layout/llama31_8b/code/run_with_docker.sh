#!/bin/bash
# mlperf-repro test stand-in for AMD's llama31_8b run_with_docker.sh (our own script; see
# tests/infra/amd_layout/README.md). AMD's v6.0 file is not public; this one has the container
# options and the flow that ../shared/reference/amd-benchmark-code.md section 2.1 (b) gives for
# the v5.1 original (blob cddce900), with the v6.0 variable names (section 2.1 c: the README says
# MODELDIR, the guide MODEL; either is read here):
#   cd to its own directory; required DGXSYSTEM, CONT, DATADIR, MODEL (or MODELDIR), LOGDIR;
#   CONT_NAME mlperf_llama31_8b; DATADIR at /data, MODEL at /model, the code at /workspace/code,
#   LOGDIR at /results; runtime_tunables.sh is NOT run (commented out in v5.1); runs 1..NEXP,
#   each piped through grep -v "connected peer ranks" and tee'd to ${LOGDIR}/result_<i>.txt;
#   the compliance checker in the container after each run (/results/compliance_<i>.out).
# Usage, as the guide: source config_<SYSTEM>.sh; export NEXP=10; bash run_with_docker.sh
set -euxo pipefail

cd "$(dirname "$(readlink -f "$0")")"

: "${MODEL:=${MODELDIR:-}}"
# Vars without defaults
: "${DGXSYSTEM:?DGXSYSTEM not set}"
: "${CONT:?CONT not set}"
: "${DATADIR:?DATADIR not set}"
: "${MODEL:?MODEL (or MODELDIR) not set}"
: "${LOGDIR:?LOGDIR not set}"

# Vars with defaults
: "${NEXP:=1}"
: "${CLEAR_CACHES:=1}"
: "${CHECK_COMPLIANCE:=1}"
: "${MLPERF_RULESET:=6.0.0}"
: "${CONT_NAME:=mlperf_llama31_8b}"

readonly _config_file="./config_${DGXSYSTEM}.sh"
readonly _cont_name="${CONT_NAME}"
_cont_mounts=("--volume=${DATADIR}:/data" "--volume=${MODEL}:/model" "--volume=$(pwd):/workspace/code" "--volume=${LOGDIR}:/results")
mkdir -p "${LOGDIR}"

mapfile -t _config_env < <(env -i bash -c ". ${_config_file} && compgen -e" | grep -E -v '^(PWD|SHLVL)$')
_config_env+=(DATADIR MODEL DGXSYSTEM LOGDIR)
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

sleep 5
# bash runtime_tunables.sh
docker exec "${_cont_name}" true

for _experiment_index in $(seq 1 "${NEXP}"); do
  (
    echo "Beginning trial ${_experiment_index} of ${NEXP}"
    if [[ ${CLEAR_CACHES} == 1 ]]; then
      bash -c "echo -n 'Clearing cache on ' && hostname && sync && ${_sudo} /sbin/sysctl vm.drop_caches=3"
      docker exec "${_cont_name}" python -c "
from mlperf_logging import mllog
mllog.get_mllogger().event(key=mllog.constants.CACHE_CLEAR, value=True)"
    fi
    docker exec "${_env_args[@]}" --env=SEED="${RANDOM}" "${_cont_name}" ./run_and_time.sh
  ) 2>&1 | grep --line-buffered -v "connected peer ranks" | tee "${LOGDIR}/result_${_experiment_index}.txt"

  if [[ ${CHECK_COMPLIANCE} == 1 ]]; then
    docker exec "${_cont_name}" python3 -m mlperf_logging.compliance_checker --usage training \
        --ruleset "${MLPERF_RULESET}" --log_output "/results/compliance_${_experiment_index}.out" \
        "/results/result_${_experiment_index}.txt"
  fi
done
