#!/bin/bash
# mlperf-repro test stand-in for AMD's llama2_70b_lora scripts/prepare_data_and_model.sh (AMD's
# v6.0 file is not public). Run in the container as the guide says (HF_TOKEN exported, the data
# volume at /data), it builds the tree the guide's "Verify Data" shows, from the stand-in
# bucket instead of Hugging Face and the MLCommons bucket:
#   ${PREPARE_OUTPUT_DIR:-/data/data}/{train.npy,validation.npy,packed_metadata.jsonl}
#   .../megatron_checkpoints/Llama-2-70b-hf/{latest_checkpointed_iteration.txt,...,iter_0000000/...}
# The bucket: MLPERF_STANDIN_BUCKET (its base URL), else the first line of
# /data/.mlperf-standin-bucket. HF_TOKEN is required (as for the gated model) and never printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${HF_TOKEN:-}" ]]; then
    echo "prepare_data_and_model.sh: HF_TOKEN is not set (the Llama 2 weights are gated)" >&2
    exit 3
fi
bucket=${MLPERF_STANDIN_BUCKET:-}
if [[ -z "${bucket}" && -r /data/.mlperf-standin-bucket ]]; then
    bucket=$(head -n 1 /data/.mlperf-standin-bucket)
fi
: "${bucket:?prepare_data_and_model.sh: no stand-in bucket (MLPERF_STANDIN_BUCKET or /data/.mlperf-standin-bucket)}"
out=${PREPARE_OUTPUT_DIR:-/data/data}
mkdir -p "${out}"
python3 ./scripts/r2_fetch.py -d "${out}" "${bucket}/metadata/llama2-70b-lora-govreport-packed.uri"
python3 ./scripts/r2_fetch.py -d "${out}/megatron_checkpoints/Llama-2-70b-hf" \
    "${bucket}/metadata/llama2-70b-hf-megatron-checkpoint.uri"
echo "prepare_data_and_model.sh: data and model ready in ${out}"
