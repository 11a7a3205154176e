"""The stages of a reproduction, in the guide's order: the one table of them.

Read by inventory validation (the tags ``--tags``/``--skip-tags`` may name, the stages a run
selects), by the stage plays' host filter (``mlperf_stage_hosts``), by the progress display and
the API (a play's name -> its stage) and by ``site.yml``, which is generated from this table
(``python -m mlperf_repro.stages > site.yml``; tests/unit/test_stages.py fails when the two
disagree: ``import_playbook`` needs static names, so Ansible cannot read the table itself).

Adding a stage is one :class:`Stage` entry here, its ``playbooks/<name>.yml`` (plays named
``<Name> - ...``, tagged with the stage's tags, hosts through ``mlperf_stage_hosts``) and its role.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    #: The stage's tag (``--tags NAME``), its playbook (``playbooks/NAME.yml``), and the first
    #: word of its plays' names (``Render - ...``).
    name: str
    #: site.yml's name for the stage's import.
    title: str
    #: Further tags that select part of the stage (``--tags rocm``: provision's ROCm play).
    parts: tuple[str, ...] = ()
    #: Run by a plain ``ansible-playbook site.yml``; an opt-in stage runs only when ``--tags``
    #: names it (site.yml tags it ``never``).
    default: bool = True

    @property
    def playbook(self) -> str:
        return f"playbooks/{self.name}.yml"

    @property
    def tags(self) -> tuple[str, ...]:
        return (self.name, *self.parts)


#: The validation play site.yml's every stage imports first (tag ``always``).
VALIDATE = "validate"

STAGES: tuple[Stage, ...] = (
    Stage("preflight", "Prerequisites - check every node, change nothing"),
    Stage("provision", "Prerequisites - ROCm, amdgpu driver and Docker", parts=("rocm", "nvidia_driver", "docker", "image")),
    Stage("tunables", "Runtime tunables (AMD's runtime_tunables.sh)"),
    Stage("data", "Prepare the dataset, once, on shared storage", parts=("deep_verify",)),
    Stage("render", "Set up the benchmark code, config_<SYSTEM>.sh and job.sh"),
    Stage("run", "Launch NEXP training runs"),
    Stage("collect", "Collect the logs"),
    Stage("score", "Score as MLCommons does"),
    Stage("report", "Report"),
    Stage("package", "Package the result for submission (only with --tags package)", default=False),
)

#: Ansible's own tags that select every (default) stage.
SELECT_ALL = ("all", "always", "tagged")


def stage_tags() -> tuple[str, ...]:
    """Every stage tag (the stages and their parts), in the guide's order."""
    return tuple(tag for stage in STAGES for tag in stage.tags)


def known_tags() -> tuple[str, ...]:
    """Every tag a run may name: Ansible's ``all``/``always`` and each stage's tags."""
    return ("all", "always", *stage_tags())


def _opt_in_tags() -> set[str]:
    return {tag for s in STAGES if not s.default for tag in s.tags}


def selected_tags(run_tags=None, skip_tags=None) -> set[str]:
    """The stage tags a run's ``--tags``/``--skip-tags`` select (a stage's parts with it)."""
    run = set(run_tags or ["all"])
    skip = set(skip_tags or [])
    every = set(stage_tags())
    chosen = (every - _opt_in_tags()) if run & set(SELECT_ALL) else set()
    chosen |= run & every
    for stage in STAGES:
        if stage.name in run:
            chosen |= set(stage.parts)
        if stage.name in skip:
            skip |= set(stage.parts)
    return chosen - skip


def is_selected(play_tags, run_tags=None) -> bool:
    """Does ``--tags`` select a play with these tags? (``--skip-tags`` is Ansible's own work.)

    ``all``/``always``/``tagged`` select every default stage; an opt-in stage only by name.
    """
    selected = set(run_tags or ["all"])
    tags = set(play_tags)
    if selected & tags:
        return True
    return bool(selected & set(SELECT_ALL)) and not tags & _opt_in_tags()


_WORD = re.compile(r"\s*([A-Za-z_]+)")


def stage_of(play: str | None) -> str | None:
    """The stage a play belongs to, from its name: ``Render - benchmark code ...`` -> ``render``,
    ``Validate the inventory`` -> ``validate``; None for a play of no stage."""
    match = _WORD.match(play or "")
    word = match.group(1).lower() if match else None
    return word if word in {VALIDATE, *(s.name for s in STAGES)} else None


def site_yml() -> str:
    """The text of site.yml, generated from :data:`STAGES`."""
    lines = [
        "---",
        "# The reproduction guide, as a playbook: each stage is a playbook in playbooks/, runnable alone",
        "# and tagged, in the guide's order. Generated from mlperf_repro/stages.py (the one table of",
        "# stages): python -m mlperf_repro.stages > site.yml",
        "#",
        "#   ansible-playbook site.yml -i inventory/local            # the whole chain, smoke benchmark",
        "#   ansible-playbook site.yml -i inventory/mi355x --tags preflight",
        "#   ansible-playbook site.yml -i inventory/mi355x --skip-tags provision",
        "#   ansible-playbook site.yml -i inventory/local --tags score   # re-score collected logs",
    ]
    for stage in STAGES:
        lines += ["", f"- name: {stage.title}", f"  ansible.builtin.import_playbook: {stage.playbook}"]
        if not stage.default:
            lines.append(f"  tags: [never, {', '.join(stage.tags)}]")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(site_yml())
