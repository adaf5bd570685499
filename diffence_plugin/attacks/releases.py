"""What each defense releases: one probability vector per record of every role, once (``Released``), and
the checks the audit makes of it (labels kept)."""

from __future__ import annotations

import numpy as np
import torch

from diffence_plugin.attacks.roles import (
    CANARY_ROLES,
    POPULATION,
    ROLES,
    MembershipSplit,
)
from diffence_plugin.defense import Diffence
from diffence_plugin.outputs import Candidates

Released = dict[str, np.ndarray]  # role -> (S, K) float64 released probabilities


def roles_of(split: MembershipSplit) -> tuple[str, ...]:
    """The roles a split queries: the six of ``ROLES``, plus the population records and the canaries when it
    has them."""
    return ROLES + ((POPULATION,) if len(split.population) else ()) + (CANARY_ROLES if len(split.canary_members)
                                                                       else ())


def onehot(y: np.ndarray, k: int) -> np.ndarray:
    """(S, K) float32 one-hot labels, the form ART's attacks expect."""
    return np.eye(k, dtype=np.float32)[y]


def release_all(defense: Diffence, cands: dict[str, Candidates]) -> Released:
    """Every role's released vectors (float64) under one selection rule."""
    return {r: defense.release(c).probs.numpy() for r, c in cands.items()}


def undefended_releases(model, x: np.ndarray, split: MembershipSplit, device: torch.device | str = "cpu") -> Released:
    """Softmax of the undefended model on every role's inputs, in float64 (``released["undefended"]``)."""
    with torch.no_grad():
        return {r: torch.softmax(model(torch.from_numpy(x[getattr(split, r)]).to(device)).double(), -1).cpu().numpy()
                for r in roles_of(split)}


def hflip(x: np.ndarray) -> np.ndarray:
    """Horizontally flipped copies of (S, C, H, W) images: LiRA's second augmented query for natural images."""
    return np.ascontiguousarray(x[..., ::-1])


def labels_kept(released: dict[str, Released]) -> dict[str, float]:
    """Per defense, the share of released vectors whose argmax equals the undefended one."""
    base = released["undefended"]
    return {name: float(np.mean(np.concatenate([probs[r].argmax(-1) == base[r].argmax(-1) for r in base])))
            for name, probs in released.items()}
