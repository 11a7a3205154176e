"""NVIDIA's launch path as data: a ``run.sub`` for Slurm with Pyxis/enroot, rendered from a
resolved benchmark (``Catalog.resolve``). Standard library only.

NVIDIA's own v5.1 launch is ``source config_<SYSTEM>.sh; sbatch -N $DGXNNODES -t $WALLTIME
run.sub``, where ``run.sub`` runs each training run as ``srun --container-image ...
--container-mounts ... slurm2pytorch ./run_and_time.sh`` (mlcommons/training_results_v5.1,
Dell/benchmarks/llama2_70b_lora/implementations/nemo/run.sub). The job rendered here keeps that
shape, with every value set in the file (nothing taken from the submitting shell) and every value
shell-quoted (data, never run):

- the ``#SBATCH`` header holds only core Slurm options, so ``sbatch --test-only`` on a cluster
  without the Pyxis plugin can check it (partition, node count, GPUs per node, time limit);
- the container options (Pyxis's ``--container-*``, srun options registered by the plugin) sit on
  the ``srun`` lines of the body, which sbatch does not parse: :func:`container_options` returns
  them as data, so a test compares them with the catalog and the platform.
"""

from __future__ import annotations

import shlex

#: NVIDIA's run.sub (v5.1): ``PYXIS_DEFAULTS``, given to every containerized srun.
PYXIS_DEFAULTS = ("--no-container-mount-home", "--container-remap-root", "--container-writable")
#: How NVIDIA's run.sub starts each run in the container (the image's helper sets the ranks).
RUN_COMMAND = ("slurm2pytorch", "./run_and_time.sh")
#: What the run stage passes from the job's environment into the containers.
CONTAINER_ENV = ("MASTER_PORT", "MASTER_ADDR", "SEED", "NEXP", "DGXSYSTEM")


def expand_mounts(mounts, values):
    """``host:container`` pairs with ``{DATADIR}``-style names replaced by ``values``."""
    pairs = []
    for mount in mounts:
        host = mount["host"]
        for name, value in values.items():
            host = host.replace("{%s}" % name, value)
        if "{" in host:
            raise ValueError("mount %r: no value for %s" % (mount["host"], host))
        pairs.append("%s:%s" % (host, mount["container"]))
    return pairs


def container_options(spec, values):
    """The Pyxis options of each training run's srun, as argv words."""
    mounts = ",".join(expand_mounts(spec.get("mounts", []), values))
    return (["--container-image=%s" % spec["image"],
             "--container-name=%s" % spec["container_name"]]
            + list(PYXIS_DEFAULTS)
            + ["--container-mounts=%s" % mounts,
               "--container-workdir=%s" % spec["code_path_in_image"],
               "--container-env=%s" % ",".join(CONTAINER_ENV)])


def sbatch_options(spec, *, job_name, time_limit, output, partition="", extra=()):
    """The ``#SBATCH`` options: core Slurm only (checked by ``sbatch --test-only``)."""
    options = ["--job-name=%s" % job_name,
               "--nodes=%d" % int(spec["nodes"]),
               "--ntasks-per-node=%d" % int(spec["gpus_per_node"]),
               "--gres=gpu:%d" % int(spec["gpus_per_node"]),
               "--exclusive",
               "--time=%s" % time_limit,
               "--output=%s" % output]
    if partition:
        options.append("--partition=%s" % partition)
    options += list(extra)
    for option in options:
        if "\n" in option or "\r" in option:
            raise ValueError("sbatch option %r holds a line break" % option)
    return options


#: Stands for the job's own LOGDIR (``logdir_per_job``) until the words are quoted.
_LOGDIR_MARK = "\0LOGDIR\0"


def _quote(word):
    """``word`` shell-quoted, with the LOGDIR mark left to the shell as ``"${LOGDIR}"``."""
    return '"${LOGDIR}"'.join(shlex.quote(part) if part else "''"
                               for part in word.split(_LOGDIR_MARK))


def job_script(spec, *, code_dir, datadir, logdir, nexp, job_name, time_limit, output,
               partition="", root_seed=None, modeldir=None, extra_sbatch=(), logdir_per_job=False,
               results_in_output=False):
    """The text of ``run.sub`` for ``spec`` (a resolved benchmark on a Pyxis cluster).

    ``logdir_per_job``: ``logdir`` is a root, and each job writes into a fresh
    ``<logdir>/job-$SLURM_JOB_ID`` (created 2770), as the hand-use job.sh does.
    ``results_in_output``: every run writes to the job's output (the run stage cuts it into
    ``result_<k>.txt`` at the runs' ``init_start``, node/slurm_job.py); else each run writes
    ``$LOGDIR/result_<k>.txt`` itself.
    """
    q = shlex.quote
    values = {"DATADIR": datadir, "LOGDIR": _LOGDIR_MARK if logdir_per_job else logdir,
              "CODEDIR": code_dir, "MODEL": modeldir or datadir}
    run_opts = container_options(spec, values)
    setup_opts = [o for o in run_opts if o.startswith(("--container-image=", "--container-name="))]
    setup_opts += list(PYXIS_DEFAULTS)
    header = ["#!/bin/bash",
              "# %s on %s: %d node(s) x %d GPU(s), launched as NVIDIA's run.sub (Slurm, Pyxis/enroot)."
              % (spec["title"], spec["system"], int(spec["nodes"]), int(spec["gpus_per_node"])),
              "# Every value is set here; none is taken from the submitting shell. The container",
              "# options are Pyxis's srun options, on the srun lines below (not #SBATCH lines), so",
              "# sbatch without the plugin (sbatch --test-only) still checks the header."]
    header += ["#SBATCH %s" % o for o in sbatch_options(
        spec, job_name=job_name, time_limit=time_limit, output=output, partition=partition,
        extra=extra_sbatch)]
    seed = ("export ROOT_SEED=%d" % int(root_seed) if root_seed is not None
            else "export ROOT_SEED=$(( (RANDOM << 15) | RANDOM ))")
    body = [
        "",
        "set -uo pipefail",
        "umask 0007",
        "export CONT=%s" % q(spec["image"]),
        "export DATADIR=%s" % q(datadir),
        ("export LOGDIR=%s/job-\"${SLURM_JOB_ID:?run this script with sbatch}\"\n"
         "mkdir -p \"$LOGDIR\" && chmod 2770 \"$LOGDIR\"" % q(logdir.rstrip("/") or "/"))
        if logdir_per_job else "export LOGDIR=%s" % q(logdir),
        "export DGXSYSTEM=%s" % q(spec["system"]),
        "export NEXP=%d" % int(nexp),
        seed,
        "cd %s || exit 1" % q(code_dir),
        "# The config (the image's own, or the catalog's) and the site's values, as the runs see them.",
        "set -a",
        ". ./%s" % q(spec["config_file"]),
        "if [ -f ./%s ]; then . ./%s; fi" % (q(spec["site_config_file"]), q(spec["site_config_file"])),
        "set +a",
        "export MASTER_PORT=${MASTER_PORT:-29500}",
        "export MASTER_ADDR=$(scontrol show hostnames \"${SLURM_JOB_NODELIST}\" | head -n 1)",
        "# Import the image once on every node (enroot), then one srun per run.",
        "srun --ntasks-per-node=1 %s true || exit 1" % " ".join(q(o) for o in setup_opts),
        "for (( _k = 0; _k < NEXP; _k++ )); do",
        "    export SEED=$(( ROOT_SEED + 1000 * _k ))",
        "    srun -l --mpi=\"${SLURM_MPI_TYPE:-pmix}\" --ntasks-per-node=%d \\" % int(spec["gpus_per_node"]),
        "        %s \\" % " \\\n        ".join(_quote(o) for o in run_opts),
        "        %s%s || echo \"run ${_k}: exit $?\"" % (
            " ".join(RUN_COMMAND),
            " 2>&1" if results_in_output else " > \"${LOGDIR}/result_${_k}.txt\" 2>&1"),
        "done",
        "",
    ]
    return "\n".join(header + body)


def srun_lines(text):
    """The srun commands of a rendered job, each as argv words (continuations joined)."""
    joined = text.replace("\\\n", " ")
    lines = []
    for line in joined.splitlines():
        words = line.strip()
        if words.startswith("srun "):
            lines.append(shlex.split(words.split(" > ", 1)[0].split(" || ", 1)[0]))
    return lines
