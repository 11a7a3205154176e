#!/bin/bash
# Test stand-in for AMD's run_with_docker_slurm.sh (flux1 v6.0), started by job.sh as
# `srun bash run_with_docker_slurm.sh`: one task per node, each looping over NEXP runs.
# Same contract as AMD's: DGXSYSTEM, LOGDIR, NEXP and ROOT_SEED come from job.sh; it sources
# config_${DGXSYSTEM}.sh; run i's seed is ROOT_SEED + 100*SLURM_ARRAY_TASK_ID + i, the same on
# every node; there is no tee: every run of every node goes to the job's one output file.
# Instead of a container and torchrun, node 0 runs the smoke benchmark (real MLLOG lines), and
# every other node logs its own cache_clear for each run once node 0 has begun it, as a cache
# clear on each node would: several cache_clear lines per run, not in step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
: "${DGXSYSTEM:?}" "${LOGDIR:?}" "${NEXP:?}" "${ROOT_SEED:?}"
set -a
# shellcheck disable=SC1090
source "./config_${DGXSYSTEM}.sh"
set +a
# the smoke benchmark's interpreter on the test nodes (the site's value, exported by job.sh
# from site_env.sh): the controller's venv, which has numpy
export PYTHON="${MLPERF_TEST_PYTHON:-python3}"
# AMD's does this; mlperf-repro makes the campaign directory group-shared (2770) again afterwards
mkdir -p "$LOGDIR" && chmod 777 "$LOGDIR"
node=${SLURM_NODEID:-0}
sync="${TMPDIR:-/tmp}/mlperf-standin-${SLURM_JOB_ID:-0}"
for i in $(seq 1 "$NEXP"); do
  SEED=$(( ROOT_SEED + 10#${SLURM_ARRAY_TASK_ID:-0}*100 + 10#$i ))
  if [[ $node == 0 ]]; then
    touch "$sync.$i"
    SEED=$SEED bash ./run_and_time.sh
  else
    for _ in $(seq 1 600); do [[ -e $sync.$i ]] && break; sleep 0.1; done
    echo ":::MLLOG {\"namespace\": \"\", \"time_ms\": $(date +%s%3N), \"event_type\": \"POINT_IN_TIME\", \"key\": \"cache_clear\", \"value\": true, \"metadata\": {\"host\": \"$(hostname)\"}}"
  fi
done
if [[ $node == 0 ]]; then
  sleep 1
  rm -f "$sync".*
fi
