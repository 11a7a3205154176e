"""A score set beside the catalog's reference result (a published submission).

Two parts, both plain Python:

* :func:`versus_reference` - the ratio of a score to a reference score and one sentence saying it;
* :func:`identify_platform` / :func:`catalog_reference` - which catalog platform a set of logs
  ran on, from what the logs say (``config_filename``, ``submission_platform``) or from a name the
  user gives, and that platform's reference result.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

#: Keys read from the head of a log to identify the platform.
_PLATFORM_KEYS = ("submission_platform", "config_filename")
#: Stop reading a log at run_start: both keys are logged during init, before it.
_STOP_KEYS = ("run_start", "init_stop")
_NODES_RE = re.compile(r"^\s*(\d+)\s*x\s*(.+)$", re.IGNORECASE)  # "1xMI355X", "8x MI325X"
_CONFIG_RE = re.compile(r"^(?:config_)?(?P<name>.+?)(?:\.sh)?$")


def versus_reference(score_minutes: float | None, reference: Mapping[str, Any] | None,
                     gpu: str = "", system: str = "", valid: bool | None = None) -> dict[str, Any] | None:
    """Ratio to the reference score and one sentence saying it.

    ``valid=False`` (a partial or otherwise invalid set) adds that to the sentence. The sentence
    names the reference's submitter and its submission ID, or its result set where no ID is
    published.

    >>> versus_reference(8.85, {"score_minutes": 8.27, "submission_id": "6.0-0036",
    ...                         "submitter": "AMD"}, "MI355X")["sentence"]
    "1.07x the time of AMD's MI355X submission 6.0-0036 (8.27 min)"
    """
    if not reference:
        return None
    ref = float(reference["score_minutes"])
    submitter = reference.get("submitter") or "the published"
    owner = f"{submitter}'s" if reference.get("submitter") else submitter
    named = reference.get("submission_id") or f"(results {reference.get('result_set')})"
    result: dict[str, Any] = {
        "reference_minutes": ref,
        "submission_id": reference.get("submission_id"),
        "expected_minutes": reference.get("expected_minutes"),
        "system": system,
        "ratio": None,
        "sentence": f"no score to compare with {owner} {gpu} submission {named} ({ref:g} min)",
    }
    if score_minutes is not None and ref > 0:
        ratio = float(score_minutes) / ref
        result["ratio"] = ratio
        result["sentence"] = f"{ratio:.2f}x the time of {owner} {gpu} submission {named} ({ref:g} min)"
        if valid is False:
            result["sentence"] += " - indicative only, this set is not a valid score"
    return result


# --------------------------------------------------------------------------
# Which catalog platform a set ran on
# --------------------------------------------------------------------------

def log_platform(files: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """``submission_platform`` and ``config_filename`` as the logs give them (first found wins).

    Reads each file only up to its ``init_stop``/``run_start`` (both keys are logged during
    init), through :func:`mlperf_repro.mllog.iter_events`, so this is cheap on large logs.
    """
    from .mllog import iter_events

    found: dict[str, Any] = {key: None for key in _PLATFORM_KEYS}
    for path in files:
        events = iter_events(path)
        try:
            for event in events:
                if event.key in found and found[event.key] is None and event.value not in (None, ""):
                    found[event.key] = str(event.value)
                if event.key in _STOP_KEYS:
                    break
        except OSError:
            continue
        finally:
            events.close()
        if all(found.values()):
            break
    return found


def config_platform_name(config_filename: str | None) -> str | None:
    """``config_MI355X_1x8x1.sh`` -> ``MI355X_1x8x1`` (the catalog's platform names)."""
    if not config_filename:
        return None
    match = _CONFIG_RE.match(Path(str(config_filename)).name)
    return match.group("name") if match else None


def _gpu_tokens(text: str) -> set[str]:
    tokens = {token.lower() for token in re.findall(r"[A-Za-z0-9]+", text)}
    # a system name that counts its GPUs before their name: "XE9680Lx8<GPU>-SXM-141GB" -> <gpu>
    tokens |= {m.lower() for m in re.findall(r"x[0-9]+([A-Za-z][A-Za-z0-9]*?)(?=[^A-Za-z0-9]|$)", text)}
    return tokens


def _parse_submission_platform(text: str) -> tuple[int | None, str]:
    """``"1xMI355X"`` -> (1, "MI355X"); ``"MI325X"`` -> (None, "MI325X").

    ``N x`` is the node count (NVIDIA logs ``4xNVIDIA GB200``, AMD ``1xMI355X``); without it the
    node count is unknown: AMD's 8-node flux1 configs log a bare ``MI325X``.
    """
    match = _NODES_RE.match(text)
    if match:
        return int(match.group(1)), match.group(2).strip()
    return None, text.strip()


def identify_platform(benchmark: str | None, catalog: Any, *, system: str | None = None,
                      submission_platform: str | None = None,
                      config_filename: str | None = None) -> tuple[str | None, str]:
    """The catalog platform name for a set of ``benchmark``, and how it was found.

    In order: ``system`` given by the user (a catalog platform name such as ``MI355X_1x8x1``, or a
    GPU name such as ``MI355X``, matched like a submission_platform); the config name the logs
    carry (``config_filename``: ``config_MI355X_1x8x1.sh``); the logs' ``submission_platform``
    (``[Nx]GPU``: the platform of that GPU and node count, when exactly one matches).  Returns
    (None, why) when nothing matches or the match is ambiguous.
    """
    if not benchmark or catalog is None or benchmark not in catalog.benchmarks:
        return None, f"benchmark {benchmark!r} is not in the catalog"
    platforms = catalog.benchmarks[benchmark].platforms
    if system:
        if system in platforms:
            return system, f"--system {system}"
        name, how = _match_gpu(system, platforms)
        if name is None:
            return None, (f"--system {system!r} is not a platform of {benchmark} in the catalog "
                          f"({', '.join(sorted(platforms))}): {how}")
        return name, f"--system {system} ({how})"
    config = config_platform_name(config_filename)
    if config and config in platforms:
        return config, f"config_filename {config_filename}"
    if submission_platform:
        name, how = _match_gpu(submission_platform, platforms)
        if name is not None:
            return name, f"submission_platform {submission_platform!r} ({how})"
        return None, f"submission_platform {submission_platform!r}: {how}"
    return None, "the logs name no submission_platform or config_filename (use --system)"


def _match_gpu(text: str, platforms: Mapping[str, Any]) -> tuple[str | None, str]:
    nodes, gpu_text = _parse_submission_platform(text)
    tokens = _gpu_tokens(gpu_text)
    candidates = [name for name, plat in platforms.items() if plat.gpu.lower() in tokens]
    if not candidates:
        return None, "no catalog platform with that GPU"
    if nodes is not None:
        candidates = [name for name in candidates if platforms[name].nodes == nodes]
        if not candidates:
            return None, f"no {gpu_text} platform with {nodes} node(s) in the catalog"
    if len(candidates) > 1:
        return None, f"ambiguous: {', '.join(sorted(candidates))} (use --system)"
    plat = platforms[candidates[0]]
    return candidates[0], (f"the only {plat.gpu} platform" + ("" if nodes is None else f" with {nodes} node(s)"))


def campaign_system(files: Iterable[str | os.PathLike]) -> dict[str, Any] | None:
    """``{benchmark, system, path}`` of the campaign the logs were collected from: the
    ``campaign.json`` the run stage wrote beside them (collected with them), or None."""
    import json

    seen = set()
    for path in files:
        directory = Path(path).parent
        if directory in seen:
            continue
        seen.add(directory)
        record = directory / "campaign.json"
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("system"):
            return {"benchmark": data.get("benchmark"), "system": str(data["system"]),
                    "path": str(record)}
    return None


def label_disagreement(benchmark: str | None, catalog: Any, system: str,
                       logged: Mapping[str, Any]) -> str | None:
    """One sentence when the logs call themselves another platform than ``system`` (the one the
    campaign ran on), else None. AMD's published v6.0 MI350X LoRA logs, for one, log
    ``MI355X`` and ``config_MI355X_1x8x1.sh``."""
    if not logged.get("submission_platform") and not logged.get("config_filename"):
        return None
    name, _ = identify_platform(benchmark, catalog, submission_platform=logged.get("submission_platform"),
                                config_filename=logged.get("config_filename"))
    platforms = catalog.benchmarks[benchmark].platforms if benchmark in catalog.benchmarks else {}
    if name == system:
        return None
    if name is None and system in platforms:
        # the label names no single platform: disagreeing only when its GPU is another one
        gpu = platforms[system].gpu.lower()
        if gpu in _gpu_tokens(str(logged.get("submission_platform") or "")) or \
                gpu in _gpu_tokens(str(config_platform_name(logged.get("config_filename")) or "")):
            return None
    label = ", ".join(f"{k} {v}" for k, v in logged.items() if v)
    return (f"the logs call themselves {label}, but the campaign ran on {system}: the score is "
            f"held against {system}'s reference")


def campaign_platform(files: Iterable[str | os.PathLike], benchmark: str | None, system: str,
                      catalog_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """``platform`` of a set scored as the campaign's ``system`` (the score stage: the inventory
    names it): what the logs call themselves, and ``label_disagrees`` where that is another
    platform. A catalog that cannot be read hides only the sentence, never the score."""
    from .catalog import CatalogError, load_catalog

    logged = log_platform(files)
    platform = {"submission_platform": logged["submission_platform"],
                "config_filename": logged["config_filename"],
                "catalog_platform": system, "identified_by": "the campaign's system (inventory)"}
    try:
        disagreement = label_disagreement(benchmark, load_catalog(catalog_path), system, logged)
    except CatalogError:
        disagreement = None
    if disagreement:
        platform["label_disagrees"] = disagreement
    return platform


def catalog_reference(score: Mapping[str, Any], files: Iterable[str | os.PathLike] = (),
                      system: str | None = None, catalog: Any = None) -> dict[str, Any]:
    """Platform identification and ``versus_reference`` for a scored set (``SetScore.to_dict()``).

    Which platform: the one the user names (``system``); else the one the campaign ran on (the
    ``campaign.json`` collected beside the logs: the inventory's system, whatever the logs call
    themselves); else what the logs say. Returns ``{"platform": {...}, "versus_reference":
    {...} or None}``; ``platform`` says what the logs named, which catalog platform was chosen
    (or None), why, and ``label_disagrees`` when the logs name another platform than the
    campaign's.
    """
    if catalog is None:
        from .catalog import load_catalog
        catalog = load_catalog()
    files = list(files)
    logged = log_platform(files)
    benchmark = score.get("benchmark")
    campaign = None if system else campaign_system(files)
    disagreement = None
    if campaign and benchmark in catalog.benchmarks \
            and campaign["system"] in catalog.benchmarks[benchmark].platforms:
        name, how = campaign["system"], f"the campaign's system ({campaign['path']})"
        disagreement = label_disagreement(benchmark, catalog, name, logged)
    else:
        name, how = identify_platform(benchmark, catalog, system=system,
                                      submission_platform=logged["submission_platform"],
                                      config_filename=logged["config_filename"])
    platform = {"submission_platform": logged["submission_platform"],
                "config_filename": logged["config_filename"],
                "catalog_platform": name, "identified_by": how}
    if disagreement:
        platform["label_disagrees"] = disagreement
    versus = None
    if name is not None:
        plat = catalog.benchmarks[benchmark].platforms[name]
        if plat.reference is not None:
            reference = {"score_minutes": plat.reference.score_minutes,
                         "submission_id": plat.reference.submission_id,
                         "expected_minutes": plat.reference.expected_minutes,
                         "submitter": plat.reference.submitter,
                         "result_set": plat.reference.result_set}
            versus = versus_reference(score.get("score_minutes"), reference, plat.gpu, name,
                                      valid=score.get("valid"))
        else:
            platform["identified_by"] += "; the catalog has no reference score for it"
    return {"platform": platform, "versus_reference": versus}
