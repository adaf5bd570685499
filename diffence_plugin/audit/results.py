"""An audit's results: the one type the run writes and the report, ``compare``, the sweep's table, the plots, the
benchmarks and the examples read.

``Results`` is a typed dictionary, so its JSON form (``results.json``) is the object itself, and it is checked
against its schema (pydantic) when it is written and when it is read. Every version carries its ``format``;
a reader takes the versions in ``READS`` (v1 lacks only ``phi``, the histograms' values) and refuses any
other, naming it.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

RESULTS_FORMAT = "diffence-results-v2"
READS = ("diffence-results-v1", RESULTS_FORMAT)
_OPEN = ConfigDict(extra="allow")  # a field added by a plugin's attack or a later minor change is kept, not lost


@with_config(_OPEN)
class AttackFigure(TypedDict):
    """One attack on one release: AUC, accuracy, TPR at low FPR, their 95% intervals (``ci``), and the counts."""

    attack: str
    auc: float
    accuracy: NotRequired[float | None]
    tpr: dict[str, float | None]
    ci: dict[str, list[float] | None]
    members: int
    nonmembers: int
    fpr_resolution: float
    selection_auc: NotRequired[float | None]


@with_config(_OPEN)
class Row(TypedDict):
    """One defense's row: accuracy, labels kept, the attacker's chosen attack, LiRA, RMIA, every attack, the
    change from the undefended row with paired intervals, the spread over selection draws, and utility."""

    defense: str
    train_accuracy: float | None
    test_accuracy: float | None
    labels_kept: float
    reference_aware: bool | None
    best: AttackFigure
    lira: NotRequired[AttackFigure | None]
    rmia: NotRequired[AttackFigure | None]
    correctness: NotRequired[AttackFigure | None]
    spread: NotRequired[dict[str, Any] | None]
    change: NotRequired[dict[str, Any] | None]
    versus_labels: NotRequired[dict[str, Any] | None]
    utility: NotRequired[dict[str, Any] | None]
    attacks: list[AttackFigure]


@with_config(_OPEN)
class Canaries(TypedDict):
    """Every row again, scored on the canaries alone (the records most at risk)."""

    kind: str
    members: int
    nonmembers: int
    rows: list[Row]


@with_config(_OPEN)
class Results(TypedDict):
    """What ``results.json`` holds: the shareable plan and the settings the report shows, the target's
    accuracy, what was trained, a digest of the evaluation records, every row (and the canaries' rows), phi of
    every release for the histograms, timings and the machine."""

    format: Literal["diffence-results-v1", "diffence-results-v2"]
    settings: dict[str, Any]
    plan: dict[str, Any]
    target_accuracy: dict[str, float]
    training: dict[str, Any]
    records: NotRequired[dict[str, str]]
    calibration: dict[str, Any]
    rows: list[Row]
    defense_seeds: NotRequired[dict[str, Any]]
    canaries: NotRequired[Canaries]
    phi: NotRequired[dict[str, dict[str, list[float]]]]
    timings: dict[str, float]
    seconds: float
    machine: dict[str, Any]


@lru_cache(maxsize=1)
def _adapter() -> TypeAdapter:
    return TypeAdapter(Results)


def checked(results: Any, where: str = "the results") -> Results:
    """``results`` if it fits the schema of a version this library reads; a ValueError naming what does not."""
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{where} is not an audit's results (format {RESULTS_FORMAT!r} with rows)")
    if results.get("format") not in READS:
        raise ValueError(f"{where} is results format {results.get('format')!r}; this version reads {list(READS)}")
    try:
        _adapter().validate_python(results)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise ValueError(f"{where}: {field}: {problem['msg']}") from exc
    return results


def write_results_file(results: Results, path: Path) -> Path:
    """``results.json``, after checking ``results`` against the schema."""
    path.write_text(json.dumps(checked(results), indent=2))
    return path


def records_digest(members: np.ndarray, nonmembers: np.ndarray) -> str:
    """A short digest of the evaluation records (dataset indices, in order) an audit scores."""
    h = hashlib.sha256()
    for part in (members, nonmembers):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def load_results(path: str | Path) -> Results:
    """``results.json`` of a run (the file or its folder), checked to be an audit's results of a version read here."""
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no results.json at {str(path)!r}")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    return checked(results, repr(str(path)))
