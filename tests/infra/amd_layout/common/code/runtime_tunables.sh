#!/bin/bash
# mlperf-repro test stand-in for AMD's runtime_tunables.sh, which run_with_docker.sh runs on the
# HOST (../shared/reference/amd-benchmark-code.md section 2.4: v5.0/v5.1 blob 472762a8; the v6.0
# file is not public). AMD's drops the page cache, loads amdgpu, runs rocm_agent_enumerator, sets
# cpupower idle/frequency, turns off the NMI watchdog, NUMA balancing and ASLR, and sets THP to
# always, all with sudo. This stand-in changes nothing on the test machine: it only says so.
echo "runtime_tunables.sh (mlperf-repro stand-in): host settings left as they are on $(hostname)"
