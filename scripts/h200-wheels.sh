#!/usr/bin/env bash
# The project's Python packages that a borrowed GPU machine lacks (it has PyTorch, numpy, scipy,
# pandas, PyYAML, Jinja2), as wheels for its Python 3.12, into .h200-wheels (scripts/h200-device.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/pip download -q --no-deps --only-binary=:all: -d .h200-wheels \
  --python-version 3.12 --implementation cp --abi cp312 --abi abi3 --abi none \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
  --platform any \
  ansible-core==2.19.14 ansible-runner==2.4.3 mlperf-logging==4.1.68 paramiko==5.1.0 \
  cryptography==50.0.2 cffi pycparser resolvelib pexpect ptyprocess python-daemon lockfile bcrypt \
  pynacl invoke
ls .h200-wheels
