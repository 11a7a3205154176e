#!/bin/bash
# mlperf-repro test stand-in for AMD's run_and_time.sh (tests/infra/amd_layout/README.md).
#
# AMD's starts the training (torchrun src/train.py) and its :::MLLOG lines go to stdout, which
# the launcher captures as the run's result file. This one replays a real published result file
# instead (scripts/replay_mllog.py: timestamps moved to now, relative times exact, waits
# compressed), chosen by MLPERF_REPLAY_INDEX or by SEED; see that script for the variables.
# Like AMD's, it needs SEED (the launcher sets one per run) and runs from its own directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -z "${SEED:-}" && -z "${MLPERF_REPLAY_INDEX:-}" ]]; then
    echo "run_and_time.sh: SEED is not set" >&2
    exit 1
fi
exec python3 ./scripts/replay_mllog.py
