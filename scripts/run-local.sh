#!/usr/bin/env bash
# The whole chain on this machine (inventory/local, the smoke benchmark), then its score.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/bootstrap.sh
.venv/bin/ansible-playbook site.yml -i inventory/local "$@"
latest="$(ls -d results/smoke/CPU_1x1x1/*/ 2>/dev/null | sort | tail -n 1)"
echo
echo "== Score of the newest campaign: ${latest}"
.venv/bin/mlperf-repro score "${latest}"
