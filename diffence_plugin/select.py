"""Step 3 of the pipeline: pick, for each input, one reconstruction whose label matches the original.

All functions are vectorised over the batch. ``index == -1`` means no reconstruction kept the label and
the original prediction is released (REFERENCE.md section 1), so defended accuracy always equals
undefended accuracy for the selection scenarios 1-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import Scenario

ORIGINAL = -1
MEAN = -2  # scenario "mean": the average over all reconstructions was released, no single one


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


def distance_to_interval(scores: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """How far each score lies outside [lo, hi] (0 inside)."""
    return (lo - scores).clamp_min(0) + (scores - hi).clamp_min(0)


def select_in_interval(
    scores: torch.Tensor, matches: torch.Tensor, u: torch.Tensor, lo: float, hi: float
) -> torch.Tensor:
    """Scenarios 1 and 2: a uniformly random matching candidate with score in [lo, hi], else the closest."""
    inside = matches & (scores >= lo) & (scores <= hi)
    chosen = pick_uniform(inside, u)
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
) -> Selection:
    """Apply one scenario's selection rule.

    Args:
        scenario: 1, 2, 3 or "mean" (see ``DiffenceConfig``).
        original_log_probs: (B, K) float64 log-probabilities on the original inputs.
        candidate_log_probs: (B, N, K) float64 log-probabilities on the reconstructions.
        u: (B,) uniform numbers driving the random choices.
        interval: (lo, hi) on phi, required for scenarios 1 and 2.
    """
    probs = candidate_log_probs.exp()
    if scenario == "mean":
        index = torch.full(u.shape, MEAN, dtype=torch.long, device=probs.device)
        return Selection(probs=probs.mean(dim=1), index=index)
    matches = label_matches(original_log_probs, candidate_log_probs)
    if scenario == 3:
        index = pick_uniform(matches, u)
    elif scenario in (1, 2):
        if interval is None:
            raise ValueError(f"scenario {scenario} needs a calibrated interval; call calibrate() first")
        index = select_in_interval(phi(candidate_log_probs), matches, u, *interval)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    gathered = probs.gather(1, index.clamp_min(0).view(-1, 1, 1).expand(-1, 1, probs.shape[-1])).squeeze(1)
    released = torch.where((index >= 0).unsqueeze(-1), gathered, original_log_probs.exp())
    return Selection(probs=released, index=index)
