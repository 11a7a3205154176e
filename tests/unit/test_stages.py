"""The one table of stages (mlperf_repro/stages.py) is what site.yml, validation's tags, the
stage plays' host filter and the progress display's stage names all follow."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlperf_repro import stages
from mlperf_repro.inventory_check import NO_HOSTS, selected_stages, site_problems, stage_hosts
from mlperf_repro.stages import STAGES, Stage, stage_of

ROOT = Path(__file__).resolve().parents[2]


def test_site_yml_is_the_table():
    """site.yml is generated from the table; regenerate it (python -m mlperf_repro.stages >
    site.yml) after changing the table."""
    assert (ROOT / "site.yml").read_text() == stages.site_yml()
    imports = [entry["ansible.builtin.import_playbook"] for entry in yaml.safe_load((ROOT / "site.yml").read_text())]
    assert imports == [stage.playbook for stage in STAGES]
    generated = subprocess.run([sys.executable, "-m", "mlperf_repro.stages"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout
    assert generated == stages.site_yml()


def test_every_playbook_is_a_stage_of_the_table():
    on_disk = {p.name for p in (ROOT / "playbooks").glob("*.yml")} - {"validate.yml"}
    assert on_disk == {Path(stage.playbook).name for stage in STAGES}


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_each_stage_play_is_named_and_tagged_after_its_stage(stage):
    plays = yaml.safe_load((ROOT / stage.playbook).read_text())
    assert plays[0] == {"name": "Validate", "ansible.builtin.import_playbook": "validate.yml"}
    for play in plays[1:]:
        assert stage_of(play["name"]) == stage.name, play["name"]
        assert stage.name in play["tags"] or set(play["tags"]) <= set(stage.tags), play["name"]
        assert set(play["tags"]) <= set(stage.tags), play["name"]


def test_the_validate_play_is_a_stage_for_the_display():
    play = yaml.safe_load((ROOT / "playbooks" / "validate.yml").read_text())[0]
    assert stage_of(play["name"]) == "validate"
    assert stage_of("Gather facts") is None and stage_of(None) is None


def test_validation_knows_the_tags_of_the_table():
    site = {"ansible_run_tags": ["render", "healthcheck"], "ansible_skip_tags": ["rocm"]}
    (problem,) = [p for p in site_problems(site) if "unknown tag" in p]
    assert problem == ("unknown tag(s) healthcheck in --tags: the stages are "
                       + ", ".join(tag for s in STAGES for tag in s.tags))
    assert selected_stages({"ansible_run_tags": ["provision"]}) == {"provision", "rocm", "nvidia_driver", "docker", "image"}
    assert selected_stages({"ansible_skip_tags": ["provision"]}) == (
        {tag for s in STAGES if s.default for tag in s.tags} - {"provision", "rocm", "nvidia_driver", "docker", "image"})
    assert "package" in selected_stages({"ansible_run_tags": ["score", "package"]})


def test_a_new_stage_is_one_entry(monkeypatch):
    """A default stage runs with the chain; an opt-in one (the next issue's package) only when
    --tags names it, and its play then runs on no host (not even its role's argument checks)."""
    assert [s.name for s in STAGES if not s.default] == ["package"]
    table = (*STAGES[:5], Stage("healthcheck", "Check the nodes' health"), *STAGES[5:])
    monkeypatch.setattr(stages, "STAGES", table)
    assert stage_of("Healthcheck - every node") == "healthcheck"
    assert stage_of("Package - the scored set") == "package"
    text = stages.site_yml()
    assert "- name: Check the nodes' health\n  ansible.builtin.import_playbook: playbooks/healthcheck.yml\n" in text
    assert text.index("playbooks/render.yml") < text.index("playbooks/healthcheck.yml") < text.index("playbooks/run.yml")
    assert text.endswith("  ansible.builtin.import_playbook: playbooks/package.yml\n  tags: [never, package]\n")
    assert "healthcheck" in stages.selected_tags(["all"])
    for run_tags in (None, ["all"], ["tagged"], ["always"], ["report"]):
        assert stage_hosts("localhost", ["package"], run_tags) == NO_HOSTS, run_tags
        assert stage_hosts("mlperf_nodes", ["healthcheck"], run_tags) == (
            NO_HOSTS if run_tags == ["report"] else "mlperf_nodes"), run_tags
    assert stage_hosts("localhost", ["package"], ["package"]) == "localhost"
    assert stage_hosts("localhost", ["package"], ["report", "package"]) == "localhost"
    assert "package" not in stages.selected_tags(["all"])
    assert "package" in stages.selected_tags(["package"])
