"""The data stage's plan and summary, from the catalog's dataset recipe (controller side).

Plain Python the data role calls through filters (filter_plugins/mlperf_roles.py): where each
download goes, what each rename moves, which paths a conversion step reads and writes, and the
summary lines the stage ends with. A recipe's paths are relative to DATADIR; ``{MODEL}`` stands
for the model directory (the guide's MODEL).
"""

from __future__ import annotations

import posixpath
import shlex

GIB = 1024 ** 3
MODEL = "{MODEL}"


class DataPlanError(ValueError):
    """A recipe entry the data stage cannot use."""


def model_dir(path: str) -> str:
    """The model directory without trailing slashes ("/" stays "/")."""
    path = str(path)
    return path.rstrip("/") or path[:1]


def downloads(dataset: dict, model: str) -> list[dict]:
    """The recipe's downloads, each ``dest`` with ``{MODEL}`` resolved (default ``.``)."""
    out = []
    for entry in dataset.get("downloads") or []:
        dest = str(entry.get("dest") or ".").replace(MODEL, model_dir(model))
        out.append({**entry, "dest": dest})
    return out


def renames(dataset: dict, model: str, data_dir: str) -> list[dict]:
    """Each rename with absolute paths: ``to`` resolved against DATADIR, ``from`` a name in the
    directory holding ``to`` (the guide's ``mv llama3_1_8b_tokenizer model``, run in MODEL's
    parent)."""
    out = []
    for index, entry in enumerate(dataset.get("renames") or []):
        if not entry.get("from") or not entry.get("to"):
            raise DataPlanError(f"dataset.renames[{index}]: expected 'from' and 'to', got {entry!r}")
        to = str(entry["to"]).replace(MODEL, model_dir(model))
        if not to.startswith("/"):
            to = f"{data_dir}/{to}"
        out.append({"from": f"{posixpath.dirname(to)}/{entry['from']}", "to": to})
    return out


def command_option(command: str, option: str) -> str:
    """The value of ``option`` (``--input_path X`` or ``--input_path=X``) in a shell command
    line, as the shell splits it; empty when the command does not give it."""
    try:
        words = shlex.split(str(command))
    except ValueError as exc:
        raise DataPlanError(f"dataset.convert: cannot split {command!r}: {exc}") from None
    for index, word in enumerate(words):
        if word == option and index + 1 < len(words):
            return words[index + 1]
        if word.startswith(option + "="):
            return word[len(option) + 1:]
    return ""


def on_host(container_path: str, mount: str, data_dir: str) -> str:
    """A path inside the data container (DATADIR mounted at ``mount``) as the host sees it."""
    mount = mount.rstrip("/") or "/"
    if container_path == mount:
        return data_dir
    if container_path.startswith(mount.rstrip("/") + "/"):
        return data_dir + container_path[len(mount.rstrip("/")):]
    return data_dir + container_path


def convert_step(command: str, mount: str, data_dir: str) -> dict:
    """What one conversion command reads and writes: its ``--input_path`` and ``--output_path``
    in the container and on the host (empty where the command gives none)."""
    step = {"input": command_option(command, "--input_path"),
            "output": command_option(command, "--output_path")}
    step["input_host"] = on_host(step["input"], mount, data_dir) if step["input"] else ""
    step["output_host"] = on_host(step["output"], mount, data_dir) if step["output"] else ""
    return step


def step_records(dataset: dict, meta_dir: str) -> dict:
    """Where each step of the recipe keeps its records: a path without extension (the step's
    marker is ``<path>.json``, its log ``<path>.log``), by step: ``script`` (container_script),
    ``convert`` (one per command), ``energon`` (energon prepare), ``copies`` (one per copy);
    ``markers``: every marker of the recipe's steps, for the first state check."""
    records = {
        "script": f"{meta_dir}/container-script",
        "convert": [f"{meta_dir}/convert-{n}" for n in range(1, len(dataset.get("convert") or []) + 1)],
        "energon": f"{meta_dir}/energon-prepare",
        "copies": [f"{meta_dir}/copy-{str(c['to']).replace('/', '-')}" for c in dataset.get("copies") or []],
    }
    steps = (([records["script"]] if dataset.get("recipe") == "container_script" else [])
             + records["convert"]
             + ([records["energon"]] if dataset.get("energon_prepare") is not None else [])
             + records["copies"])
    records["markers"] = [f"{step}.json" for step in steps]
    return records


def summary(state: dict, renamed: list[dict], expected: list, intermediates: list,
            converted: bool, meta_dir: str) -> list[str]:
    """The stage's closing lines from the last state check (the mlperf_data_state module's
    result): each download, renames left undone, the layout, free space."""
    lines = []
    for entry in state.get("downloads") or []:
        dest = entry.get("dest", ".")
        if converted and dest in intermediates and entry.get("problem_count"):
            lines.append(f"{entry['name']}: conversion input, no longer needed")
            continue
        problems = "" if entry.get("complete") else " (%s)" % "; ".join(entry.get("problems", [])[:3])
        lines.append("%s: %d/%d files verified, %.2f GiB in %s%s" % (
            entry["name"], entry["verified"], entry["files"], entry["bytes"] / GIB, dest, problems))
    paths = state.get("paths") or {}
    for move in renamed:
        if paths.get(move["from"], {}).get("exists") and paths.get(move["to"], {}).get("exists"):
            lines.append(f"WARNING: both {move['from']} and {move['to']} exist; {move['to']} is used, "
                         f"{move['from']} was left as it is")
    missing = state.get("missing") or []
    lines.append("layout: " + (f"missing {', '.join(missing)}" if missing
                               else f"complete ({len(expected)} expected paths)"))
    lines.append("free: %.1f GiB; records in %s" % (state.get("free_bytes", 0) / GIB, meta_dir))
    return lines


