"""Randomness derived from the query itself: the same query gets the same answer.

A randomised defense that draws fresh noise for every query lets an attacker average repeated queries and
take the noise back out. Deriving each input's generator from its bytes and a secret seed removes that.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def input_seeds(rows: torch.Tensor | np.ndarray, prefix: bytes) -> list[int]:
    """One 63-bit seed per row of ``rows``: a keyed hash (BLAKE2b) of ``prefix`` and the row's bytes."""
    array = rows.detach().cpu().contiguous().numpy() if isinstance(rows, torch.Tensor) else np.ascontiguousarray(rows)
    return [int.from_bytes(hashlib.blake2b(prefix + row.tobytes(), digest_size=8).digest(), "little")
            & ((1 << 63) - 1) for row in array]


def input_generators(rows: torch.Tensor | np.ndarray, prefix: bytes) -> list[torch.Generator]:
    """One seeded ``torch.Generator`` per row (see ``input_seeds``)."""
    return [torch.Generator().manual_seed(seed) for seed in input_seeds(rows, prefix)]
