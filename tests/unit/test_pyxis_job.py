"""NVIDIA's run.sub as data (mlperf_repro/node/pyxis_job.py): what the job sets, every value a
single shell word, and a hand-use job writing into a LOGDIR of its own."""

import subprocess

import pytest

from mlperf_repro.catalog import load_catalog
from mlperf_repro.node.pyxis_job import container_options, job_script, srun_lines

SPEC = load_catalog().resolve("flux1", "DGXB200_04x08x32")
JOB = dict(code_dir="/shared/code/flux1", datadir="/shared/data", logdir="/shared/logs/c1",
           nexp=3, job_name="flux1_mlperf", time_limit="60:00:00", output="/shared/logs/c1/%j.out")


def run_bash(text, script):
    return subprocess.run(["bash", "-c", script, "bash"], input=text, capture_output=True,
                          text=True)


def test_the_job_sets_every_value_and_runs_each_run_in_the_container():
    text = job_script(SPEC, root_seed=11, **JOB)
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
    setup, run = srun_lines(text)
    assert run == ["srun", "-l", "--mpi=${SLURM_MPI_TYPE:-pmix}", "--ntasks-per-node=8",
                   *container_options(SPEC, {"DATADIR": "/shared/data", "LOGDIR": "/shared/logs/c1",
                                             "CODEDIR": "/shared/code/flux1"}),
                   "slurm2pytorch", "./run_and_time.sh"]
    assert "export NEXP=3" in text and "export ROOT_SEED=11" in text
    assert "#SBATCH --nodes=4" in text and "#SBATCH --gres=gpu:8" in text
    assert not any(line.startswith("#SBATCH --container") for line in text.splitlines())


def test_a_value_holding_shell_is_one_word_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    text = job_script(SPEC, **dict(JOB, datadir=f"/d/$(touch {marker}) x;y'z"))
    line = next(l for l in text.replace("\\\n", " ").splitlines() if "--container-mounts=" in l)
    word = next(w for w in srun_lines(text)[1] if w.startswith("--container-mounts="))
    assert word.startswith(f"--container-mounts=/d/$(touch {marker}) x;y'z/energon:/dataset/energon,")
    out = run_bash(line, 'read -r l; eval "set -- ${l#*srun}"; printf "%s\\n" "$@"')
    assert f"--container-mounts=/d/$(touch {marker}) x;y'z/energon" in out.stdout
    assert not marker.exists()


def test_a_hand_use_job_writes_into_a_logdir_of_its_own():
    text = job_script(SPEC, **dict(JOB, logdir="/shared/logs/flux1", logdir_per_job=True))
    assert 'export LOGDIR=/shared/logs/flux1/job-"${SLURM_JOB_ID:?run this script with sbatch}"' in text
    word = next(w for w in srun_lines(text)[1] if w.startswith("--container-mounts="))
    assert ",${LOGDIR}:/results," in word  # the job's own directory, expanded when it runs


@pytest.mark.parametrize("change,words", [
    ({"job_name": "x\n#SBATCH --uid=0"}, "holds a line break"),
    ({"partition": "a\rb"}, "holds a line break"),
])
def test_a_value_that_would_add_a_directive_is_refused(change, words):
    with pytest.raises(ValueError, match=words):
        job_script(SPEC, **dict(JOB, **change))


def test_a_mount_without_its_value_is_refused():
    spec = dict(SPEC, mounts=[{"host": "{SCRATCH}/x", "container": "/x"}])
    with pytest.raises(ValueError, match=r"mount '\{SCRATCH\}/x': no value"):
        job_script(spec, **JOB)


def test_runs_write_their_own_result_files_or_the_jobs_output():
    own = job_script(SPEC, **JOB)
    assert './run_and_time.sh > "${LOGDIR}/result_${_k}.txt" 2>&1' in own
    shared = job_script(SPEC, results_in_output=True, **JOB)
    assert "./run_and_time.sh 2>&1 ||" in shared and "result_${_k}" not in shared
