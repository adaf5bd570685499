"""Calibration of the selection interval (Scenarios 1 and 2), and its JSON file.

Scenario 1 grid-searches [lo, hi] over [min phi(member candidates), max phi(non-member candidates)] to
minimise the Jensen-Shannon divergence between the phi histograms of what the defense would release for
known members and known non-members. Each sample contributes its *expected* release under the random
in-interval choice (uniform mass over its in-interval candidates, else its closest candidate, else its
original prediction), so the search is exact in expectation and needs no sampling.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon

from diffence_plugin.select import distance_to_interval
from diffence_plugin.validation import read_json_object

FORMAT = "diffence-calibration"
VERSION = 1


@dataclass(frozen=True)
class Calibration:
    """A calibrated selection interval and the configuration it is valid for."""

    scenario: int
    lo: float
    hi: float
    n: int
    t: int
    k: int
    nb_classes: int
    reconstructor: str
    js_divergence: float | None = None  # of the released phi histograms, members vs non-members
    js_divergence_undefended: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def interval(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    def check_compatible(self, *, n: int, t: int, k: int, nb_classes: int, reconstructor: str, scenario) -> None:
        """Raise ValueError naming every setting that differs from the defense it is loaded into."""
        wanted = dict(n=n, t=t, k=k, nb_classes=nb_classes, reconstructor=reconstructor, scenario=scenario)
        diffs = [f"{key}: calibrated {getattr(self, key)!r}, defense has {value!r}"
                 for key, value in wanted.items() if getattr(self, key) != value]
        if diffs:
            raise ValueError("calibration is from another configuration (" + "; ".join(diffs) + ")")

    def to_json(self, path: str | Path) -> None:
        payload = {"format": FORMAT, "version": VERSION, **asdict(self)}
        Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True))

    @classmethod
    def from_json(cls, path: str | Path) -> "Calibration":
        """Load and validate a calibration file; every problem is a ValueError naming the file."""
        path = Path(path)
        payload = read_json_object(path, fmt=FORMAT, label="calibration file")
        if payload.get("version") != VERSION:
            raise ValueError(f"calibration file {str(path)!r} has version {payload.get('version')!r}, expected {VERSION}")
        types = {"scenario": int, "lo": float, "hi": float, "n": int, "t": int, "k": int, "nb_classes": int,
                 "reconstructor": str}
        for key, kind in types.items():
            value = payload.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else (
                isinstance(value, kind) and not isinstance(value, bool))
            if not ok:
                raise ValueError(f"calibration file {str(path)!r}: field {key!r} must be {kind.__name__}, got {value!r}")
        if payload["scenario"] not in (1, 2):
            raise ValueError(f"calibration file {str(path)!r}: scenario must be 1 or 2, got {payload['scenario']}")
        lo, hi = float(payload["lo"]), float(payload["hi"])
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ValueError(f"calibration file {str(path)!r}: interval [{lo}, {hi}] must be finite with lo <= hi")
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(payload) - known - {"format", "version"})
        if unknown:
            raise ValueError(f"calibration file {str(path)!r} has unknown field(s) {unknown}")
        return cls(**{key: payload[key] for key in known if key in payload})


def interval_scenario2(member_scores: torch.Tensor, member_matches: torch.Tensor) -> tuple[float, float]:
    """Scenario 2: [min, mean] of phi over the label-matching reconstructions of known members."""
    values = member_scores[member_matches]
    if values.numel() == 0:
        raise ValueError("no reconstruction of the known members kept its label; cannot calibrate")
    return float(values.min()), float(values.mean())


def _release_weights(scores, matches, lo, hi):
    """(P, S, N + 1) expected release mass over each sample's candidates and (last column) its original."""
    inside = matches & (scores >= lo[:, None, None]) & (scores <= hi[:, None, None])
    count = inside.sum(dim=-1, keepdim=True)
    weights = inside.float() / count.clamp_min(1)
    distance = distance_to_interval(scores.unsqueeze(0), lo[:, None, None], hi[:, None, None])
    closest = distance.masked_fill(~matches, float("inf")).argmin(dim=-1, keepdim=True)
    fallback = (count == 0) & matches.any(dim=-1, keepdim=True)
    weights.scatter_add_(-1, closest, fallback.float())
    original = (~matches.any(dim=-1, keepdim=True)).float().expand(lo.shape[0], -1, -1)
    return torch.cat([weights, original], dim=-1)


def _histograms(scores_ext, matches, lo, hi, bin_index, bins):
    weights = _release_weights(scores_ext[:, :-1], matches, lo, hi)
    flat = weights.reshape(weights.shape[0], -1)
    hist = torch.zeros(weights.shape[0], bins, dtype=torch.float32)
    hist.scatter_add_(1, bin_index.reshape(1, -1).expand(weights.shape[0], -1), flat)
    return hist / scores_ext.shape[0]


def interval_scenario1(
    member: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    nonmember: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    grid: int = 40,
    bins: int = 30,
    max_elements: int = 1 << 24,
) -> tuple[float, float, float, float]:
    """Scenario 1 grid search.

    Args:
        member, nonmember: (candidate scores (S, N), label matches (S, N), original scores (S,)).
        grid: grid points on each end of the interval; all pairs lo < hi are tried.
        bins: histogram bins shared by both distributions (they span every score of both).
        max_elements: bound on the (pairs x samples x candidates) block evaluated at once.

    Returns:
        (lo, hi, JS divergence of the released histograms, JS divergence without the defense).
    """
    (ms, mm, mo), (ns, nm, no) = member, nonmember
    if not bool(mm.any()):
        raise ValueError("no reconstruction of the known members kept its label; cannot calibrate")
    if not bool(nm.any()):
        raise ValueError("no reconstruction of the known non-members kept its label; cannot calibrate")
    lo_end, hi_end = float(ms[mm].min()), float(ns[nm].max())
    if lo_end >= hi_end:
        every = torch.cat([ms[mm], ns[nm]])
        lo_end, hi_end = float(every.min()), float(every.max())
    member_ext = torch.cat([ms, mo.unsqueeze(-1)], dim=-1).cpu()
    nonmember_ext = torch.cat([ns, no.unsqueeze(-1)], dim=-1).cpu()
    everything = torch.cat([member_ext.flatten(), nonmember_ext.flatten()])
    edges = torch.linspace(float(everything.min()), float(everything.max()) + 1e-9, bins + 1, dtype=torch.float64)
    member_bins = torch.bucketize(member_ext, edges[1:-1]).flatten()
    nonmember_bins = torch.bucketize(nonmember_ext, edges[1:-1]).flatten()

    points = torch.linspace(lo_end, hi_end, grid, dtype=torch.float64)
    i, j = torch.triu_indices(grid, grid, offset=1)
    lows, highs = points[i], points[j]
    per_pair = max(member_ext.numel(), nonmember_ext.numel())
    chunk = max(1, max_elements // per_pair)
    divergences = []
    for start in range(0, lows.shape[0], chunk):
        lo, hi = lows[start : start + chunk], highs[start : start + chunk]
        hm = _histograms(member_ext, mm.cpu(), lo, hi, member_bins, bins)
        hn = _histograms(nonmember_ext, nm.cpu(), lo, hi, nonmember_bins, bins)
        divergences.append(jensenshannon(hm.numpy(), hn.numpy(), axis=1) ** 2)
    divergence = np.nan_to_num(np.concatenate(divergences), nan=np.inf)
    best = int(np.argmin(divergence))
    undefended_m = np.histogram(mo.cpu().numpy(), bins=edges.numpy())[0]
    undefended_n = np.histogram(no.cpu().numpy(), bins=edges.numpy())[0]
    undefended = float(jensenshannon(undefended_m, undefended_n) ** 2)
    return float(lows[best]), float(highs[best]), float(divergence[best]), undefended
