#!/bin/bash
# mlperf-repro test stand-in for AMD's scripts/check_gpus_idle.sh (not public for v6.0, see
# ../shared/reference/amd-benchmark-code.md section 6): the test hosts have no GPUs to check.
echo "check_gpus_idle.sh (mlperf-repro stand-in): no GPU processes to check on $(hostname)"
