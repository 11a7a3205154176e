#!/bin/bash
# mlperf-repro test stand-in: the guide's flux1 data preparation (three r2 downloads,
# to_webdataset.py for train and val, `energon prepare` answered y, y, 11, `cp -r
# ../empty_encodings .`) as one script, from the stand-in bucket, with the image's stand-in
# tools. It builds ${PREPARE_OUTPUT_DIR:-/dataset}/energon/{train,val,empty_encodings}.
# The bucket: MLPERF_STANDIN_BUCKET, else the first line of <output>/.mlperf-standin-bucket.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
code=$(pwd)
out=${PREPARE_OUTPUT_DIR:-/dataset}
bucket=${MLPERF_STANDIN_BUCKET:-}
if [[ -z "${bucket}" && -r "${out}/.mlperf-standin-bucket" ]]; then
    bucket=$(head -n 1 "${out}/.mlperf-standin-bucket")
fi
: "${bucket:?prepare_data_and_model.sh: no stand-in bucket (MLPERF_STANDIN_BUCKET or .mlperf-standin-bucket)}"
cd "${out}"
python3 "${code}/scripts/r2_fetch.py" -d cc12m_preprocessed "${bucket}/metadata/flux-1-cc12m-preprocessed.uri"
python3 "${code}/scripts/r2_fetch.py" -d coco_preprocessed "${bucket}/metadata/flux-1-coco-preprocessed.uri"
python3 "${code}/scripts/r2_fetch.py" -d empty_encodings "${bucket}/metadata/flux-1-empty-encodings.uri"
if [[ -e energon/.nv-meta/dataset.yaml && -d energon/empty_encodings ]]; then
    echo "prepare_data_and_model.sh: energon dataset already prepared in ${out}/energon"
    exit 0
fi
mkdir -p energon
python3 "${code}/scripts/to_webdataset.py" --input_path "${out}/cc12m_preprocessed" --output_path "${out}/energon/train" --num_workers 8
python3 "${code}/scripts/to_webdataset.py" --input_path "${out}/coco_preprocessed" --output_path "${out}/energon/val" --num_workers 8
cd energon
printf '%s\n' y y 11 | energon prepare --split-parts 'train:train/.*' --split-parts 'val:val/.*' ./
cp -r ../empty_encodings .
echo "prepare_data_and_model.sh: energon dataset ready in ${out}/energon"
