#!/bin/bash
# mlperf-repro test stand-in for the job.sh of AMD's flux1 v6.0 code, with the values the
# reproduction guide gives for the 8-node MI325X submission (../shared/reference/
# amd-mlperf-training-v6.0-reproduction.md, "Run Training (Slurm, 8-node MI325X)").
# Submitted from this directory: sbatch job.sh (set the partition first).
#SBATCH --gres=gpu:8
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=1
#SBATCH --time=60:00:00
#SBATCH --job-name=flux1_mlperf
#SBATCH --output=flux1_%j.out
#SBATCH --error=flux1_%j.err

export CONT=rocm/amd-mlperf:flux1_training_6.0
export DATADIR=/data/mlperf_flux1/data
export LOGDIR=/data/mlperf_flux1/results
export DGXSYSTEM=MI325X_08x08x32
export NEXP=10

export ROOT_SEED=${ROOT_SEED:-$RANDOM}

srun bash run_with_docker_slurm.sh
