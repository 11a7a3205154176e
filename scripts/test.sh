#!/usr/bin/env bash
# The whole test suite: lint, syntax of every inventory, unit and integration tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
ansible-lint --profile production
pytest -q "$@"
