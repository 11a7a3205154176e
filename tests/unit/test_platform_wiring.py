"""The platform definition is what the stages read (issue 16, item 1): the provision stage runs
the platform's driver role under the stage table's tags, and the containers of the runs and of
the data script get the platform's options for the runtime."""

from pathlib import Path

import yaml

from mlperf_repro.platforms import load_platforms
from mlperf_repro.stages import STAGES, driver_tags

ROOT = Path(__file__).resolve().parents[2]


def test_the_provision_stage_runs_the_platforms_driver_role_under_the_tables_tags():
    plays = yaml.safe_load((ROOT / "playbooks" / "provision.yml").read_text())
    (driver,) = [p for p in plays if p.get("name") == "Provision - the GPU platform's driver stack"]
    roles = {p.driver_role for p in load_platforms().platforms.values()}
    assert set(driver_tags()) == {"driver"} | roles
    assert driver["tags"] == ["provision", *driver_tags()]
    assert f"mlperf_stage_hosts({['provision', *driver_tags()]}" in driver["hosts"]
    (task,) = driver["tasks"]
    assert task["ansible.builtin.include_role"]["name"] == "{{ mlperf_spec.platform_spec.driver_role }}"
    assert task["ansible.builtin.include_role"]["apply"]["tags"] == driver["tags"]
    provision = next(s for s in STAGES if s.name == "provision")
    assert set(driver_tags()) <= set(provision.parts)


def test_the_containers_get_the_platforms_options_for_the_runtime():
    campaign = yaml.safe_load((ROOT / "roles" / "campaign" / "defaults" / "main.yml").read_text())
    data = yaml.safe_load((ROOT / "roles" / "data" / "defaults" / "main.yml").read_text())
    for value in (campaign["campaign_container_flags"], data["data_container_script_flags"]):
        assert "mlperf_spec.platform_spec" in value and "container_options" in value
        assert "[mlperf_container_runtime]" in value
        assert "/dev/" not in value and "--gpus" not in value  # no vendor's device written here
