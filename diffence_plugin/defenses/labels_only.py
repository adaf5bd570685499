"""Labels only: release the one-hot top-1 label instead of a probability vector.

This is the privacy floor at no accuracy cost that every soft-label defense must be compared with: an
attacker sees exactly what the correctness (label-only) attack sees, and a user gets no confidence at all
(its NLL pays ``utility.NLL_FLOOR`` on every error). It needs no fitting and no randomness, so an attacker
copies it exactly: its reference models answer through it too (defense-aware).
"""

from __future__ import annotations

import torch


class LabelsOnly:
    """``defense(x, probs) -> one-hot(argmax probs)`` in the dtype of ``probs`` (ties go to the lowest class)."""

    stateless = True  # no fit, no randomness: the attacker's copy is the defense itself

    def __call__(self, x: torch.Tensor | None, probs: torch.Tensor) -> torch.Tensor:
        probs = torch.as_tensor(probs)
        if probs.ndim != 2 or probs.shape[0] == 0:
            raise ValueError(f"labels_only needs (B, K) probabilities with B > 0, got shape {tuple(probs.shape)}")
        return torch.nn.functional.one_hot(probs.argmax(dim=-1), probs.shape[-1]).to(probs.dtype)
