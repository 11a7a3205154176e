"""Every role variable is documented twice, identically: defaults/main.yml and argument_specs."""

from pathlib import Path

import pytest
import yaml

ROLES = sorted(p for p in (Path(__file__).resolve().parents[2] / "roles").iterdir() if p.is_dir())


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_defaults_and_argument_specs_list_the_same_variables(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
    options = specs["argument_specs"]["main"].get("options", {})
    own = {name for name in options if name.startswith(role.name + "_")}
    assert set(defaults) == own, (sorted(set(defaults) ^ own))


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_variables_carry_the_role_prefix(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    assert all(name.startswith(role.name + "_") for name in defaults), sorted(defaults)


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_documented_defaults_match(role):
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    options = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())[
        "argument_specs"]["main"].get("options", {})
    for name, spec in options.items():
        if "default" in spec and name in defaults:
            assert spec["default"] == defaults[name], name
