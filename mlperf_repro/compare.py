"""A score set beside the catalog's reference result (AMD's published submission)."""

from __future__ import annotations

from typing import Any, Mapping


def versus_reference(score_minutes: float | None, reference: Mapping[str, Any] | None,
                     gpu: str = "", system: str = "") -> dict[str, Any] | None:
    """Ratio to the reference score and one sentence saying it.

    >>> versus_reference(8.85, {"score_minutes": 8.27, "submission_id": "6.0-0036"}, "MI355X")["sentence"]
    "1.07x the time of AMD's MI355X submission 6.0-0036 (8.27 min)"
    """
    if not reference:
        return None
    ref = float(reference["score_minutes"])
    result: dict[str, Any] = {
        "reference_minutes": ref,
        "submission_id": reference.get("submission_id"),
        "expected_minutes": reference.get("expected_minutes"),
        "system": system,
        "ratio": None,
        "sentence": f"no score to compare with AMD's {gpu} submission "
                    f"{reference.get('submission_id')} ({ref:g} min)",
    }
    if score_minutes is not None and ref > 0:
        ratio = float(score_minutes) / ref
        result["ratio"] = ratio
        result["sentence"] = (f"{ratio:.2f}x the time of AMD's {gpu} submission "
                              f"{reference.get('submission_id')} ({ref:g} min)")
    return result
