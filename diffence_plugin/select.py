"""Step 3 of the pipeline: pick, for each input, one reconstruction whose label matches the original.

Each input's uniform ``u`` picks among the eligible reconstructions by ``rank`` (the floor(u * count)-th) or
``stable`` (the smallest priority hashed from ``u``: a near-duplicate whose eligible set differs by a
reconstruction that is not the pick keeps the pick). All functions are vectorised over the batch.
``index == -1`` means no reconstruction kept the label and the original prediction is released (REFERENCE.md
section 1), so defended accuracy always equals undefended accuracy for the selection scenarios 1-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffence_plugin.config import PICKS, Scenario

ORIGINAL = -1
MEAN = -2  # scenario "mean": the average over all reconstructions was released, no single one
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment


def phi(log_probs: torch.Tensor) -> torch.Tensor:
    """The paper's score log(p_max / (1 - p_max)), computed stably from float64 log-probabilities.

    Args:
        log_probs: (..., K) log-probabilities, K >= 2.
    Returns:
        (...) float64 scores; log(1 - p_max) is the log-sum-exp of the other classes.
    """
    log_probs = log_probs.double()
    top, arg = log_probs.max(dim=-1, keepdim=True)
    others = log_probs.scatter(-1, arg, float("-inf"))
    rest = torch.logsumexp(others, dim=-1).clamp_min(-745.0)
    return top.squeeze(-1) - rest


def label_matches(original_log_probs: torch.Tensor, candidate_log_probs: torch.Tensor) -> torch.Tensor:
    """(B, N) mask of reconstructions whose argmax equals the argmax on the original input."""
    labels = original_log_probs.argmax(dim=-1)
    return candidate_log_probs.argmax(dim=-1) == labels.unsqueeze(-1)


def pick_uniform(eligible: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the floor(u * count)-th eligible entry per row, or ORIGINAL when a row has none.

    Args:
        eligible: (B, N) bool mask.
        u: (B,) uniform numbers in [0, 1).
    """
    count = eligible.sum(dim=-1)
    rank = (u.to(eligible.device).double() * count).floor().long().clamp_max((count - 1).clamp_min(0))
    position = eligible.long().cumsum(dim=-1) - 1
    hit = eligible & (position == rank.unsqueeze(-1))
    index = hit.long().argmax(dim=-1)
    return torch.where(count > 0, index, torch.full_like(index, ORIGINAL))


def priorities(u: torch.Tensor, n: int) -> torch.Tensor:
    """(B, n) float64 priorities in [0, 1): a splitmix64 hash of each input's uniform ``u`` and the candidate's
    index, so independent uniforms per candidate, the same for the first n' of any n >= n' (``first``)."""
    bits = np.ascontiguousarray(u.detach().cpu().double().numpy()).view(np.uint64)[:, None]
    z = bits + _GOLDEN * np.arange(1, n + 1, dtype=np.uint64)[None, :]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) / 2.0**53)


def pick_stable(eligible: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index of the eligible entry with the smallest ``priorities(u)``, or ORIGINAL when a row has none.

    Uniform among the eligible entries, like ``pick_uniform``, but stable: an entry that joins or leaves the
    eligible set moves the pick only if it is the pick or outranks it. ``pick_uniform``'s floor(u * count)
    shifts whenever an entry before the pick changes, which hands a near-duplicate query a fresh draw.
    """
    prio = priorities(u, eligible.shape[-1]).to(eligible.device).masked_fill(~eligible, float("inf"))
    index = prio.argmin(dim=-1)
    return torch.where(eligible.any(dim=-1), index, torch.full_like(index, ORIGINAL))


def pick_eligible(eligible: torch.Tensor, u: torch.Tensor, pick: str = "rank") -> torch.Tensor:
    """One eligible entry per row by the rule ``pick`` ("rank": ``pick_uniform``; "stable": ``pick_stable``)."""
    if pick == "rank":
        return pick_uniform(eligible, u)
    if pick == "stable":
        return pick_stable(eligible, u)
    raise ValueError(f"pick must be one of {PICKS}, got {pick!r}")


def distance_to_interval(scores: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """How far each score lies outside [lo, hi] (0 inside)."""
    return (lo - scores).clamp_min(0) + (scores - hi).clamp_min(0)


def select_in_interval(
    scores: torch.Tensor, matches: torch.Tensor, u: torch.Tensor, lo: float, hi: float, pick: str = "rank"
) -> torch.Tensor:
    """Scenarios 1 and 2: a uniformly random matching candidate with score in [lo, hi], else the closest."""
    inside = matches & (scores >= lo) & (scores <= hi)
    chosen = pick_eligible(inside, u, pick)
    distance = distance_to_interval(scores, lo, hi).masked_fill(~matches, float("inf"))
    closest = distance.argmin(dim=-1)
    closest = torch.where(matches.any(dim=-1), closest, torch.full_like(closest, ORIGINAL))
    return torch.where(chosen >= 0, chosen, closest)


@dataclass(frozen=True)
class Selection:
    """What the selector released for a batch."""

    probs: torch.Tensor  # (B, K) float64 released probabilities
    index: torch.Tensor  # (B,) chosen reconstruction; ORIGINAL (-1): the original's; MEAN (-2): the average


def select(
    scenario: Scenario,
    original_log_probs: torch.Tensor,
    candidate_log_probs: torch.Tensor,
    u: torch.Tensor,
    interval: tuple[float, float] | None = None,
    pick: str = "rank",
) -> Selection:
    """Apply one scenario's selection rule.

    Args:
        scenario: 1, 2, 3 or "mean" (see ``DiffenceConfig``).
        original_log_probs: (B, K) float64 log-probabilities on the original inputs.
        candidate_log_probs: (B, N, K) float64 log-probabilities on the reconstructions.
        u: (B,) uniform numbers driving the random choices.
        interval: (lo, hi) on phi, required for scenarios 1 and 2.
        pick: how ``u`` picks among the eligible candidates ("rank" or "stable", see ``pick_eligible``).
    """
    probs = candidate_log_probs.exp()
    if scenario == "mean":
        index = torch.full(u.shape, MEAN, dtype=torch.long, device=probs.device)
        return Selection(probs=probs.mean(dim=1), index=index)
    matches = label_matches(original_log_probs, candidate_log_probs)
    if scenario == 3:
        index = pick_eligible(matches, u, pick)
    elif scenario in (1, 2):
        if interval is None:
            raise ValueError(f"scenario {scenario} needs a calibrated interval; call calibrate() first")
        index = select_in_interval(phi(candidate_log_probs), matches, u, *interval, pick=pick)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    gathered = probs.gather(1, index.clamp_min(0).view(-1, 1, 1).expand(-1, 1, probs.shape[-1])).squeeze(1)
    released = torch.where((index >= 0).unsqueeze(-1), gathered, original_log_probs.exp())
    return Selection(probs=released, index=index)
