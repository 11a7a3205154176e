#!/usr/bin/env bash
# Issue 18: the whole chain on a borrowed NVIDIA GPU machine (PyTorch installed, no package
# registry, no container runtime): site.yml on inventory/h200-device, from this checkout.
#
#   scripts/h200-wheels.sh            # here, with network: the project's other packages as wheels
#   OUT=/some/dir scripts/h200-device.sh   # there (the device tool carries .h200-wheels)
#
# Everything it records goes to $OUT/h200-run.tgz: nvidia-smi's outputs, site.yml's log, the
# campaign's results (MLLOG logs, score.json, healthcheck.json, report), a standalone health
# measurement, the package versions.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-$PWD/h200-out}"
PY="$(command -v python3)"
rec="$OUT/h200-run"
mkdir -p "$rec"

# The project's packages (ansible-core, mlperf-logging, ...) from the carried wheels, into the
# interpreter that has PyTorch (or the user's site when it is not writable).
pip_args=(-q --disable-pip-version-check --no-index --find-links .h200-wheels --no-deps)
wheels=(.h200-wheels/*.whl)
if ! "$PY" -m pip install "${pip_args[@]}" "${wheels[@]}" > "$rec/pip.log" 2>&1; then
  "$PY" -m pip install --user "${pip_args[@]}" "${wheels[@]}" >> "$rec/pip.log" 2>&1
  export PATH="$HOME/.local/bin:$PATH"
fi
"$PY" -m pip install -q --no-deps --no-build-isolation -e . >> "$rec/pip.log" 2>&1 || true
export PATH="$(dirname "$PY"):$PATH"

{ date -u; id; uname -a; nproc; "$PY" -V; "$PY" -m pip list 2>/dev/null; } > "$rec/machine.txt" 2>&1
nvidia-smi -q -x > "$rec/nvidia-smi-q-x.xml" 2>&1
nvidia-smi -q > "$rec/nvidia-smi-q.txt" 2>&1
nvidia-smi > "$rec/nvidia-smi.txt" 2>&1
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.nccl.version())" > "$rec/torch.txt" 2>&1

start=$(date +%s)
ansible-playbook site.yml -i inventory/h200-device > "$rec/site.log" 2>&1
echo "site.yml rc=$? in $(( $(date +%s) - start )) s" | tee -a "$rec/site.log"

# The same measurement standalone (what a site runs by hand), and its verdict on the H200 floors.
"$PY" mlperf_repro/node/healthcheck.py --backend torch --json "$rec/healthcheck-standalone.json" \
  > "$rec/healthcheck-standalone.log" 2>&1

latest="$(ls -d results/smoke/GPU_1x1x1/*/ 2>/dev/null | sort | tail -n 1)"
[ -n "$latest" ] && "$PY" -m mlperf_repro.cli score "$latest" > "$rec/score.txt" 2>&1
cp -r results "$rec/results" 2>/dev/null
cp -r .cache/h200-device/logs "$rec/node-logs" 2>/dev/null
tar czf "$OUT/h200-run.tgz" -C "$OUT" h200-run
tail -5 "$rec/site.log"; cat "$rec/score.txt" 2>/dev/null | tail -3
