"""The data stage's plan and summary (mlperf_repro.data_plan), from the catalog's own recipes."""

import pytest

from mlperf_repro import data_plan
from mlperf_repro.catalog import load_catalog

DATA = "/data/mlperf_llama31_8b/data"
MODEL = "/data/mlperf_llama31_8b/model/"


def recipe(benchmark, system):
    return load_catalog().resolve(benchmark, system)["dataset"]


def test_model_downloads_and_renames_land_in_the_model_directory():
    dataset = recipe("llama31_8b", "MI355X_1x8x1")
    assert [d["dest"] for d in data_plan.downloads(dataset, MODEL)] == [
        ".", "/data/mlperf_llama31_8b/model"]
    assert data_plan.renames(dataset, MODEL, DATA) == [
        {"from": "/data/mlperf_llama31_8b/llama3_1_8b_tokenizer", "to": "/data/mlperf_llama31_8b/model"}]
    # a relative `to` is under DATADIR, its `from` beside it
    assert data_plan.renames({"renames": [{"from": "old", "to": "sub/new"}]}, MODEL, DATA) == [
        {"from": DATA + "/sub/old", "to": DATA + "/sub/new"}]
    assert data_plan.model_dir("/") == "/" and data_plan.model_dir("/m//") == "/m"


def test_a_rename_without_its_two_names_is_refused_by_position():
    with pytest.raises(data_plan.DataPlanError, match=r"dataset.renames\[1\]: expected 'from' and 'to'"):
        data_plan.renames({"renames": [{"from": "a", "to": "b"}, {"to": "c"}]}, MODEL, DATA)


def test_each_conversion_step_reads_and_writes_under_datadir():
    dataset = recipe("flux1", "MI325X_08x08x32")
    mount = dataset["mount"]
    steps = [data_plan.convert_step(c, mount, "/d") for c in dataset["convert"]]
    assert [(s["input_host"], s["output_host"]) for s in steps] == [
        ("/d/cc12m_preprocessed", "/d/energon/train"), ("/d/coco_preprocessed", "/d/energon/val")]
    assert steps[0]["input"] == mount + "/cc12m_preprocessed"


@pytest.mark.parametrize("command, expected", [
    ("tool --input_path /dataset/a --output_path /dataset/b", ("/dataset/a", "/dataset/b")),
    ("tool --input_path=/dataset/a --output_path='/dataset/with space'", ("/dataset/a", "/dataset/with space")),
    ("tool --input_paths /dataset/x", ("", "")),  # another option, not --input_path
    ("tool", ("", "")),
])
def test_options_are_read_as_the_shell_splits_the_command(command, expected):
    step = data_plan.convert_step(command, "/dataset", "/d")
    assert (step["input"], step["output"]) == expected


def test_a_path_outside_the_mount_is_not_mistaken_for_one_inside():
    assert data_plan.on_host("/dataset/a", "/dataset", "/d") == "/d/a"
    assert data_plan.on_host("/dataset", "/dataset/", "/d") == "/d"
    assert data_plan.on_host("/datasetX/a", "/dataset", "/d") == "/d/datasetX/a"


def test_an_unbalanced_command_is_named():
    with pytest.raises(data_plan.DataPlanError, match="cannot split \"tool --input_path '/a\""):
        data_plan.command_option("tool --input_path '/a", "--input_path")


def test_summary_says_each_download_the_layout_and_free_space():
    state = {
        "downloads": [
            {"name": "cc12m", "dest": "cc12m_preprocessed", "verified": 3, "files": 3,
             "bytes": 3 * 1024 ** 3, "complete": True, "problems": [], "problem_count": 0},
            {"name": "coco", "dest": "coco_preprocessed", "verified": 1, "files": 5, "bytes": 0,
             "complete": False, "problems": ["a missing", "b missing", "c missing", "d missing"],
             "problem_count": 4},
        ],
        "paths": {"/p/old": {"exists": True}, "/p/new": {"exists": True}},
        "missing": [], "free_bytes": 10 * 1024 ** 3,
    }
    renamed = [{"from": "/p/old", "to": "/p/new"}]
    lines = data_plan.summary(state, renamed, ["x", "y"], ["coco_preprocessed"], False, "/d/.meta")
    assert lines == [
        "cc12m: 3/3 files verified, 3.00 GiB in cc12m_preprocessed",
        "coco: 1/5 files verified, 0.00 GiB in coco_preprocessed (a missing; b missing; c missing)",
        "WARNING: both /p/old and /p/new exist; /p/new is used, /p/old was left as it is",
        "layout: complete (2 expected paths)",
        "free: 10.0 GiB; records in /d/.meta",
    ]
    # once converted, an incomplete intermediate is no longer needed, and is said so
    state["missing"] = ["energon/train"]
    lines = data_plan.summary(state, [], [], ["coco_preprocessed"], True, "/d/.meta")
    assert lines[1] == "coco: conversion input, no longer needed"
    assert lines[2] == "layout: missing energon/train"


def test_every_step_of_a_recipe_has_its_marker_once():
    flux = data_plan.step_records(recipe("flux1", "MI325X_08x08x32"), "/d/.m")
    assert flux["convert"] == ["/d/.m/convert-1", "/d/.m/convert-2"]
    assert flux["markers"] == ["/d/.m/convert-1.json", "/d/.m/convert-2.json", "/d/.m/energon-prepare.json",
                               "/d/.m/copy-energon-empty_encodings.json"]
    lora = data_plan.step_records(recipe("llama2_70b_lora", "MI355X_1x8x1"), "/d/.m")
    assert lora["markers"] == ["/d/.m/container-script.json"]
    assert data_plan.step_records(recipe("llama31_8b", "MI355X_1x8x1"), "/d/.m")["markers"] == []
