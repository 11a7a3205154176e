#!/bin/bash
# mlperf-repro test stand-in: the guide's llama31_8b download steps (two r2 downloads, then
# `mv llama3_1_8b_tokenizer model`) as one script, from the stand-in bucket. AMD's image has no
# such script (the guide runs mlc-r2-downloader.sh on the host); this one builds the same tree:
#   ${PREPARE_OUTPUT_DIR:-/data}/data/c4-{train.en_6,validation-91205-samples.en}_text_document.{bin,idx}
#   ${PREPARE_OUTPUT_DIR:-/data}/model/...
# The bucket: MLPERF_STANDIN_BUCKET, else the first line of <output>/.mlperf-standin-bucket.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${PREPARE_OUTPUT_DIR:-/data}
bucket=${MLPERF_STANDIN_BUCKET:-}
if [[ -z "${bucket}" && -r "${out}/.mlperf-standin-bucket" ]]; then
    bucket=$(head -n 1 "${out}/.mlperf-standin-bucket")
fi
: "${bucket:?prepare_data_and_model.sh: no stand-in bucket (MLPERF_STANDIN_BUCKET or .mlperf-standin-bucket)}"
python3 ./scripts/r2_fetch.py -d "${out}/data" "${bucket}/metadata/llama-3-1-8b-preprocessed-c4-dataset.uri"
if [[ -d "${out}/model" ]]; then  # moved there by an earlier run: checked, not fetched again
    python3 ./scripts/r2_fetch.py -d "${out}/model" "${bucket}/metadata/llama-3-1-8b-tokenizer.uri"
else
    python3 ./scripts/r2_fetch.py -d "${out}/llama3_1_8b_tokenizer" "${bucket}/metadata/llama-3-1-8b-tokenizer.uri"
    mv "${out}/llama3_1_8b_tokenizer" "${out}/model"
fi
echo "prepare_data_and_model.sh: data and model ready in ${out}"
