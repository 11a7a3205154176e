"""What the API treats as a secret, how it keeps and prunes run artifacts (the pieces of
tests/integration/test_runner_artifacts.py that need no playbook)."""

from __future__ import annotations

import os
import stat

import pytest

from mlperf_repro import api
from mlperf_repro.catalog import load_catalog


def test_the_catalogs_secrets_and_secret_looking_names_are_secrets():
    catalog_secrets = {name for bench in load_catalog().benchmarks.values()
                       for name in bench.dataset.get("secrets") or []}
    assert catalog_secrets  # the catalog does list some (HF_TOKEN)
    for name in catalog_secrets | {"HF_TOKEN", "CF_ACCESS_CLIENT_SECRET", "GITHUB_TOKEN", "db_password",
                                   "AWS_SECRET_ACCESS_KEY", "campaign_hf_token", "MY_API_KEY"}:
        assert api.is_secret_name(name), name
    for name in ("PATH", "HOME", "mlperf_nexp", "DATADIR", "ANSIBLE_CONFIG"):
        assert not api.is_secret_name(name), name


def test_a_secret_nested_in_a_plain_variable_moves_the_whole_variable():
    plain, hidden = api.split_secrets({
        "mlperf_nexp": 3, "campaign_extra_env": {"SEED": "1", "HF_TOKEN": "hf_x"},
        "hosts": [{"name": "a", "auth": {"password": "p"}}], "campaign_hf_token": "hf_y"})
    assert plain == {"mlperf_nexp": 3}
    assert set(hidden) == {"campaign_extra_env", "hosts", "campaign_hf_token"}


def test_prune_keeps_the_newest_runs_and_touches_nothing_else(tmp_path):
    runs = [f"2026010{i}T000000-00000{i}" for i in range(1, 6)]
    for name in runs:
        (tmp_path / name / "artifacts").mkdir(parents=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "20260101T000000-0000001").mkdir()  # one hex digit too many: not a run
    (tmp_path / "20260109T000000-aaaaaa").write_text("a file, not a run")
    removed = api.prune_artifacts(tmp_path, 2)
    assert sorted(os.path.basename(p) for p in removed) == runs[:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        runs[3:] + ["mine", "20260101T000000-0000001", "20260109T000000-aaaaaa"])
    assert api.prune_artifacts(tmp_path, 0) == []


@pytest.mark.parametrize("raw, expected", [(None, api.DEFAULT_KEEP_ARTIFACTS), ("", api.DEFAULT_KEEP_ARTIFACTS),
                                           ("5", 5), ("0", 0)])
def test_keep_artifacts_setting_from_the_environment(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv(api.KEEP_ARTIFACTS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(api.KEEP_ARTIFACTS_VARIABLE, raw)
    assert api.keep_artifacts_setting() == expected
    assert api.keep_artifacts_setting(3) == 3


@pytest.mark.parametrize("value", ["-1", "many", "2.5"])
def test_a_bad_keep_artifacts_setting_is_named(monkeypatch, value):
    monkeypatch.setenv(api.KEEP_ARTIFACTS_VARIABLE, value)
    with pytest.raises(ValueError, match=r"\$MLPERF_REPRO_KEEP_ARTIFACTS|keep_artifacts is -1"):
        api.keep_artifacts_setting()


def test_private_dirs_whatever_the_umask_and_a_named_dir_left_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    old = os.umask(0)
    try:
        api.make_private_dir(shared / "a" / "b")
        api.make_private_dir(shared, tighten=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((shared / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
