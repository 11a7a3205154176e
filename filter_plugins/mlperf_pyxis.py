"""Filter: a Slurm job that runs the benchmark's container with Pyxis/enroot (thin adapter over
mlperf_repro/node/pyxis_job.py)."""

from __future__ import annotations

DOCUMENTATION = r"""
name: mlperf_pyxis
short_description: NVIDIA's run.sub for a resolved benchmark
description:
  - mlperf_srun_container_job - the text of run.sub (Slurm with Pyxis/enroot) for a resolved benchmark
    (mlperf_spec) and the job's values (code_dir, datadir, logdir, nexp, job_name, time_limit,
    output, and optionally partition, root_seed, modeldir, extra_sbatch, logdir_per_job,
    results_in_output). Every value is
    shell-quoted; the container options sit on the srun lines, the #SBATCH header holds core
    Slurm options only.
"""

import os
import sys

from ansible.errors import AnsibleFilterError

try:
    from mlperf_repro.node import pyxis_job as _pyxis_job
except ImportError:  # a checkout used without `pip install -e .`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from mlperf_repro.node import pyxis_job as _pyxis_job

_JOB_KEYS = ("code_dir", "datadir", "logdir", "nexp", "job_name", "time_limit", "output",
             "partition", "root_seed", "modeldir", "extra_sbatch", "logdir_per_job",
             "results_in_output")


def mlperf_srun_container_job(spec, job):
    if not isinstance(spec, dict) or not isinstance(job, dict):
        raise AnsibleFilterError("mlperf_srun_container_job: expected the resolved benchmark (a mapping) "
                                 "and the job's values (a mapping)")
    unknown = sorted(set(job) - set(_JOB_KEYS))
    if unknown:
        raise AnsibleFilterError(f"mlperf_srun_container_job: unknown job value(s) {', '.join(unknown)}: "
                                 f"expected {', '.join(_JOB_KEYS)}")
    values = {k: v for k, v in job.items() if v is not None and v != ""}
    if "extra_sbatch" in values:
        values["extra_sbatch"] = tuple(values["extra_sbatch"])
    try:
        return _pyxis_job.job_script(spec, **values)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnsibleFilterError(f"mlperf_srun_container_job: {exc}") from None


class FilterModule:
    def filters(self):
        return {"mlperf_srun_container_job": mlperf_srun_container_job}
