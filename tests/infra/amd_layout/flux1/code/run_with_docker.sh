#!/bin/bash
# mlperf-repro test stand-in for AMD's flux1 v6.0 run_with_docker.sh (our own script; see
# tests/infra/amd_layout/README.md), with the container options and the flow of the published
# file (Richardyu114/training_results_v6.0 @ eabf23a, AMD/benchmarks/flux1/implementations/
# 8xMI325X_EPYC_9575F_pytorch/run_with_docker.sh; ../shared/reference/amd-benchmark-code.md
# section 2.1 a): no cd; required DGXSYSTEM, CONT, DATADIR, LOGDIR; DATADIR at /dataset, the
# current directory at /workspace/code, LOGDIR at /results; bash runtime_tunables.sh on the host;
# runs 1..NEXP, each tee'd to ${LOGDIR}/${DATESTAMP}_<i>.log; compliance after each run.
# The names the config exports are passed by name only (--env=NAME): source the config first.
set -euxo pipefail

# Vars without defaults
: "${DGXSYSTEM:?DGXSYSTEM not set}"
: "${CONT:?CONT not set}"
: "${DATADIR:?DATADIR not set}"
: "${LOGDIR:?LOGDIR not set}"

# Vars with defaults
: "${NEXP:=1}"
: "${DATESTAMP:=$(date +'%y%m%d%H%M%S%N')}"
: "${CLEAR_CACHES:=1}"
: "${CHECK_COMPLIANCE:=1}"
: "${MLPERF_RULESET:=6.0.0}"
: "${CONT_NAME:=mlperf_flux1}"

readonly _config_file="./config_${DGXSYSTEM}.sh"
readonly _logfile_base="${LOGDIR}/${DATESTAMP}"
readonly _cont_name="${CONT_NAME}"
_cont_mounts=("--volume=${DATADIR}:/dataset" "--volume=$(pwd):/workspace/code" "--volume=${LOGDIR}:/results")

mkdir -p "${LOGDIR}"
mkdir -p "${LOGDIR}/artifacts/"

mapfile -t _config_env < <(env -i bash -c ". ${_config_file} && compgen -e" | grep -E -v '^(PWD|SHLVL)$')
_config_env+=(DATADIR DGXSYSTEM LOGDIR)
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
bash runtime_tunables.sh
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
    docker exec "${_env_args[@]}" --env=SEED="${RANDOM}" --env=HYDRA_FULL_ERROR "${_cont_name}" ./run_and_time.sh
  ) 2>&1 | tee "${_logfile_base}_${_experiment_index}.log"

  if [[ ${CHECK_COMPLIANCE} == 1 ]]; then
    docker exec "${_cont_name}" python3 -m mlperf_logging.compliance_checker --usage training \
        --ruleset "${MLPERF_RULESET}" --log_output "/results/compliance_${DATESTAMP}.out" \
        "/results/${DATESTAMP}_${_experiment_index}.log"
  fi
done
echo "Number of experiments ${NEXP}"
