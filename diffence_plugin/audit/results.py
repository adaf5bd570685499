"""An audit's results: what ``results.json`` holds, written by the run and read by the report, ``compare``,
the plots, the benchmarks and the examples."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

RESULTS_FORMAT = "diffence-results-v1"


def records_digest(members: np.ndarray, nonmembers: np.ndarray) -> str:
    """A short digest of the evaluation records (dataset indices, in order) an audit scores."""
    h = hashlib.sha256()
    for part in (members, nonmembers):
        h.update(np.ascontiguousarray(part, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def load_results(path: str | Path) -> dict:
    """``results.json`` of a run (the file or its folder), checked to be an audit's results."""
    path = Path(path)
    path = path / "results.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no results.json at {str(path)!r}")
    try:
        results = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{str(path)!r} is not an audit's results.json (format {RESULTS_FORMAT!r} with rows)")
    if results.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{str(path)!r} is results format {results.get('format')!r}; this version reads "
                         f"{RESULTS_FORMAT!r}")
    return results
