#!/bin/bash
# Smoke benchmark: run_and_time.sh, the analogue of AMD's run_and_time.sh.
#
# Runs one timed training run of train.py (this directory) and prints its :::MLLOG lines on
# stdout, so that a launcher's `bash run_and_time.sh | tee $LOGDIR/result_<i>.txt` captures
# them. Configuration comes from the environment (see train.py's docstring): SEED is required,
# as in AMD's scripts; PYTHON picks the interpreter (default python3; it may carry options,
# e.g. PYTHON="python3 -u"). Like AMD's llama scripts it ends with
#   RESULT,SMOKE,,<whole seconds>,<MLLOG_SUBMISSION_ORG>,<start date>
# The score comes from the MLLOG lines, not from this line.
# Exit status: train.py's (2 for a configuration error, including a missing SEED).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")"

if [[ -z "${SEED:-}" ]]; then
    echo "run_and_time.sh: SEED is not set: expected an integer (the launcher sets one per run)" >&2
    exit 2
fi

read -r -a python_cmd <<< "${PYTHON:-python3}"
if [[ ${#python_cmd[@]} -eq 0 ]]; then
    python_cmd=(python3)
fi

start=$(date +%s)
start_fmt=$(date +%Y-%m-%d\ %r)
echo "STARTING TIMING RUN AT $start_fmt"

ret_code=0
"${python_cmd[@]}" train.py || ret_code=$?
if [[ $ret_code -ne 0 ]]; then
    echo "run_and_time.sh: train.py exited with status $ret_code" >&2
    exit "$ret_code"
fi

end=$(date +%s)
end_fmt=$(date +%Y-%m-%d\ %r)
echo "ENDING TIMING RUN AT $end_fmt"

result=$((end - start))
echo "RESULT,SMOKE,,$result,${MLLOG_SUBMISSION_ORG:-mlperf-repro},$start_fmt"
