"""A stage that --tags leaves out runs on no host (not even its roles' argument-spec checks)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlperf_repro.inventory_check import NO_HOSTS, stage_hosts

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STAGE_FILTER = re.compile(r"^\{\{ '(?P<pattern>[^']+)' \| mlperf_stage_hosts\((?P<tags>\[[^\]]*\]), "
                          r"ansible_run_tags\) \}\}$")


@pytest.mark.parametrize("run_tags, expected", [
    (None, "mlperf_nodes"),                 # no --tags: every stage
    (["all"], "mlperf_nodes"),
    (["data"], "mlperf_nodes"),
    (["preflight", "data"], "mlperf_nodes"),
    (["deep_verify"], "mlperf_nodes"),      # one of the play's tags is enough
    (["tagged"], "mlperf_nodes"),
    (["always"], "mlperf_nodes"),           # ansible-core runs every always task then
    (["score"], NO_HOSTS),
    (["preflight", "render"], NO_HOSTS),
])
def test_a_stage_runs_only_when_its_tags_are_selected(run_tags, expected):
    assert stage_hosts("mlperf_nodes", ["data", "deep_verify"], run_tags) == expected


def stage_plays():
    for path in sorted((ROOT / "playbooks").glob("*.yml")):
        for play in yaml.safe_load(path.read_text()):
            if "hosts" in play and path.name != "validate.yml":
                yield path.name, play


@pytest.mark.parametrize("name, play", list(stage_plays()), ids=lambda v: v if isinstance(v, str) else v["name"][:40])
def test_each_stage_play_filters_its_hosts_on_its_own_tags(name, play):
    match = STAGE_FILTER.match(play["hosts"])
    assert match, f"{name}: hosts should be \"{{{{ '<pattern>' | mlperf_stage_hosts(<the play's tags>, ansible_run_tags) }}}}\""
    assert yaml.safe_load(match["tags"]) == play["tags"], f"{name}: {play['name']}"


def test_a_partial_run_validates_no_role_of_the_stages_left_out():
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "site.yml", "-i", "inventory/local",
                           "--tags", "preflight", "--check"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    validated = set(re.findall(r"TASK \[(\w+) : Validating arguments against arg spec", proc.stdout))
    assert validated == {"validate", "preflight"}, validated
    assert "skipping: no hosts matched" in proc.stdout
