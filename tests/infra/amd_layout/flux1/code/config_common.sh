# mlperf-repro test stand-in for the flux1 config_common.sh that every flux config sources.
# AMD's v6.0 file is NOT public (../shared/reference/amd-benchmark-code.md sections 0 and 3.3);
# these are the values of the upstream Primus copy (AMD-AGI/Primus,
# examples/mlperf/flux1/config_common.sh) that section 3.3 lists, and nothing else: the
# FSDP2/compile settings, MODEL, DATA and EXTRA_ARGS of the real file are not known.
export GPUS_PER_NODE=8
export TARGET_ACCURACY=0.586
export VAL_CHECK_INTERVAL=262144
export MLPERF_WARMUP_TRAIN_STEPS=2
export MLPERF_WARMUP_VALIDATION_STEPS=2
export SEED=${SEED:-10007}
export ATTENTION_BACKEND=flash_attn_aiter
