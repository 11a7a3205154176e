#!/usr/bin/python
"""Ansible module: submit, re-attach to, poll or cancel a campaign's Slurm job."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mlperf_slurm_job
short_description: Run a campaign of NEXP runs as one Slurm job, re-attachable
description:
  - C(state=submitted) makes sure the campaign's job has been submitted, once. When
    O(root)/O(campaign_id) is already a Slurm campaign it re-attaches to it; otherwise, with
    O(resume), it re-attaches to the newest campaign under O(root) whose end has not been seen
    yet. Only when there is none does it create a fresh campaign directory O(root)/O(campaign_id)
    (mode O(mode), group O(group)), write O(script) there as C(job.sh) and run
    C(sbatch job.sh) in it. The job id goes into the campaign's C(state.json) before anything
    else happens; a campaign whose C(sbatch) ran but whose id was not recorded is adopted
    through the job's C(--comment), never submitted twice.
  - C(state=status) polls the job (C(scontrol show job), then C(sacct), then
    C(sacct --completion)) and records its state. Once the job has ended (whatever its end:
    COMPLETED, FAILED, TIMEOUT, CANCELLED, NODE_FAIL, ...) its one output file is cut into
    C(result_<k>.txt), one per run (see mlperf_repro/node/slurm_job.py for the boundary rule);
    a job that did not complete is reported with the tail of its own output.
  - C(state=cancelled) cancels the job (C(scancel)) if it has not ended.
  - In check mode nothing is created, submitted, written or cancelled; the job is still polled
    (read only) so the report is true.
options:
  state:
    description: What to do.
    type: str
    choices: [submitted, status, cancelled]
    default: submitted
  root:
    description: Directory holding this benchmark/system's campaigns (one subdirectory each).
    type: path
  campaign_id:
    description: Name of the campaign directory to create (or re-attach to, when it exists).
    type: str
  campaign_dir:
    description: An existing campaign directory (for O(state=status) and O(state=cancelled)).
    type: path
  resume:
    description: Re-attach to the newest campaign under O(root) whose job has not been seen to
      end, instead of submitting a new one.
    type: bool
    default: true
  script:
    description:
      - The job script, written as C(job.sh) into a new campaign directory and given to sbatch.
        It must set LOGDIR to the campaign directory O(root)/O(campaign_id) and its
        C(#SBATCH --output) to O(output) in that directory.
    type: str
  nexp:
    description: Number of runs the job makes (NEXP).
    type: int
  root_seed:
    description: The ROOT_SEED written in O(script), recorded in the campaign.
    type: int
  output:
    description: File name pattern of the job's output in the campaign directory (C(%j) is the
      job id), as in the script's C(#SBATCH --output).
    type: str
    default: slurm-%j.out
  benchmark:
    description: Benchmark name, recorded in campaign.json.
    type: str
  system:
    description: System (config) name, recorded in campaign.json.
    type: str
  job_name:
    description: Slurm job name, recorded in campaign.json.
    type: str
  code_dir:
    description:
      - The benchmark's code directory (the render stage's, on shared storage). Its record of
        the image's C(config_<SYSTEM>.sh) against the catalog (C(.mlperf-vendor-check.json)) is
        kept in a new campaign's C(campaign.json) as C(vendor_config), for the report.
    type: path
  mode:
    description: Mode of a new campaign directory (group-shared; never world-writable unless
      O(world_writable)). A job that makes it world-writable (AMD's C(chmod 777)) has it set
      back to this mode when it ends.
    type: raw
    default: "2770"
  world_writable:
    description: Accept a world-writable O(mode) (e.g. C(0777), AMD's guide; root-squashed NFS).
    type: bool
    default: false
  group:
    description: Group of a new campaign directory (default the user's primary group).
    type: str
  tail_lines:
    description: Lines of the job's output returned for a job that did not complete.
    type: int
    default: 40
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: A new campaign shows its job.sh.
author: mlperf-repro
"""

EXAMPLES = r"""
- name: Submit the campaign's job, or re-attach to it
  mlperf_slurm_job:
    root: /data/mlperf_flux1/results/flux1/MI325X_08x08x32
    campaign_id: 20261128T120000Z
    script: "{{ lookup('ansible.builtin.template', 'job.sh.j2') }}"
    nexp: 10
    root_seed: 123456789
    output: flux1_%j.out
  register: job

- name: Wait for it to end
  mlperf_slurm_job:
    state: status
    campaign_dir: "{{ job.campaign_dir }}"
  register: status
  until: status.status not in ['submitting', 'pending', 'running']
  retries: 8640
  delay: 30
"""

RETURN = r"""
campaign_dir:
  description: The campaign directory (the job's LOGDIR).
  returned: always
  type: str
action:
  description: submitted, attached, adopted, status, cancelled or none.
  returned: always
  type: str
status:
  description: submitting, pending, running, complete, failed, timeout, cancelled, node_fail,
    out_of_memory, preempted, boot_fail, deadline, unknown or submit_failed.
  returned: always
  type: str
job_id:
  description: The Slurm job id (null before submission, and in check mode for a new campaign).
  returned: always
  type: str
job_state:
  description: Slurm's job state (COMPLETED, FAILED, TIMEOUT, ...).
  returned: always
  type: str
exit_code:
  description: Slurm's exit code of the job, C(<status>:<signal>).
  returned: always
  type: str
runs:
  description: One record per run cut out of the output (index, log, status, seed, lines).
  returned: always
  type: list
  elements: dict
found:
  description: Number of run files cut out of the output.
  returned: always
  type: int
missing:
  description: NEXP minus the runs found, once the output has been cut (else null).
  returned: always
  type: int
output_path:
  description: The job's output file.
  returned: always
  type: str
output_tail:
  description: The last lines of the job's output, for a job that did not complete.
  returned: when the job ended without completing
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible.module_utils.module_adapter import finish
from ansible.module_utils.slurm_job import SlurmJobError, manage


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["submitted", "status", "cancelled"],
                      "default": "submitted"},
            "root": {"type": "path"},
            "campaign_id": {"type": "str"},
            "campaign_dir": {"type": "path"},
            "resume": {"type": "bool", "default": True},
            "script": {"type": "str"},
            "nexp": {"type": "int"},
            "root_seed": {"type": "int"},
            "output": {"type": "str", "default": "slurm-%j.out"},
            "benchmark": {"type": "str"},
            "system": {"type": "str"},
            "job_name": {"type": "str"},
            "code_dir": {"type": "path"},
            "mode": {"type": "raw", "default": "2770"},
            "world_writable": {"type": "bool", "default": False},
            "group": {"type": "str"},
            "tail_lines": {"type": "int", "default": 40},
        },
        required_if=[("state", "status", ["campaign_dir"]), ("state", "cancelled", ["campaign_dir"])],
        supports_check_mode=True,
    )
    finish(module, "mlperf_slurm_job", (SlurmJobError,), manage,
           check_mode=module.check_mode, diff=module._diff, **module.params)


if __name__ == "__main__":
    main()
