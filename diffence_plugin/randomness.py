"""Randomness derived from the query itself: the same query gets the same answer.

A randomised defense that draws fresh noise for every query lets an attacker average repeated queries and
take the noise back out. Deriving each input's noise from a *key* of the input and a secret seed removes
that for exact repeats. Near-duplicates are the harder case: an attacker who perturbs a query slightly
(a ``-0.0`` pixel, a float32 ulp, a grey level) must not get fresh noise either. Three keys:

- ``raw``: the input's float32 bytes. Any change, even ``0.0 -> -0.0``, gives fresh randomness.
- ``quantised`` (default): the input rounded to its bit depth, ``round(x * levels)``, with ``-0.0`` equal
  to ``0``. Every change smaller than half a grey level (``0.5 / levels``) on every pixel keeps the key; the
  defense also reconstructs the quantised input, so such a near-duplicate gets the identical release.
- ``lsh``: a locality-sensitive key of the quantised input: ``projections`` random projections (drawn from
  the secret seed) of the image average-pooled to at most 4 x 4, each cut into buckets of ``width`` with a
  secret random offset. A change of L2 norm ``d`` on the pooled image changes the key with probability at
  most about ``0.8 * projections * d / width``; larger changes move the key, and the output of the
  classifier moves with them.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import warnings

import numpy as np
import torch

KEYS = ("raw", "quantised", "lsh")
LSH_POOL = 4  # side of the average-pooled image the LSH key projects
SMALL_SEED = 2**32  # seeds below this are guessable: warned about outside tests


def secret_seed() -> int:
    """A fresh 63-bit secret seed from the operating system's CSPRNG (``secrets``)."""
    return secrets.randbits(63)


def experiment_seed(seed: int, purpose: str = "diffence") -> int:
    """A 63-bit defense seed derived from an experiment's public ``seed``: reproducible runs without the
    small-seed warning. Not a secret: a deployed defense should use ``secret_seed`` (the default)."""
    digest = hashlib.blake2b(f"{purpose}/{int(seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def warn_if_guessable(seed: int) -> None:
    """Warn when a small fixed seed is used outside tests: anyone can then reproduce the defense's noise."""
    if 0 <= seed < SMALL_SEED and "PYTEST_CURRENT_TEST" not in os.environ:
        warnings.warn(f"seed={seed} is small enough to guess; with it anyone can reproduce the defense's noise "
                      "and average it out. Leave seed=None for a secret one (save_pretrained keeps it).",
                      UserWarning, stacklevel=4)


def _row_bytes(rows: torch.Tensor | np.ndarray) -> np.ndarray:
    return rows.detach().cpu().contiguous().numpy() if isinstance(rows, torch.Tensor) else np.ascontiguousarray(rows)


def key_generators(keys: list[bytes], prefix: bytes) -> list[torch.Generator]:
    """One ``torch.Generator`` per key, seeded with a hash (BLAKE2b) of ``prefix`` and the key."""
    return [torch.Generator().manual_seed(int.from_bytes(hashlib.blake2b(prefix + key, digest_size=8).digest(),
                                                         "little") & ((1 << 63) - 1)) for key in keys]


def input_generators(rows: torch.Tensor | np.ndarray, prefix: bytes) -> list[torch.Generator]:
    """One seeded ``torch.Generator`` per row, keyed on the row's raw bytes (see ``key_generators``)."""
    return key_generators([row.tobytes() for row in _row_bytes(rows)], prefix)


def quantise(x: torch.Tensor, levels: int) -> torch.Tensor:
    """(B, ...) integer grey levels ``round(x * levels)`` (int32) of images in [0, 1]; ``-0.0`` maps to 0."""
    return torch.round(x.double() * levels).to(torch.int32)


def canonical(x: torch.Tensor, levels: int) -> torch.Tensor:
    """The input the defense works on: ``x`` rounded to ``levels`` grey levels, float32 in [0, 1]."""
    return (quantise(x, levels).double() / levels).to(torch.float32)


def lsh_buckets(x: torch.Tensor, levels: int, projections: int, width: float, seed: int) -> torch.Tensor:
    """(B, projections) int64 buckets ``floor((a . v + b) / width)`` of the pooled quantised images ``v``.

    ``a`` ~ N(0, I) and ``b`` ~ U(0, width) come from ``seed`` (secret), so the bucket edges are unknown to
    an attacker.
    """
    q = canonical(x, levels).double()
    side = min(LSH_POOL, q.shape[-1], q.shape[-2])
    v = torch.nn.functional.adaptive_avg_pool2d(q, side).flatten(1)
    gen = torch.Generator().manual_seed(experiment_seed(seed, f"lsh/{tuple(x.shape[1:])}/{projections}"))
    a = torch.randn((v.shape[1], projections), generator=gen, dtype=torch.float64)
    b = torch.rand(projections, generator=gen, dtype=torch.float64) * width
    return torch.floor((v @ a + b) / width).to(torch.int64)


def input_keys(x: torch.Tensor, kind: str, *, levels: int = 255, projections: int = 4, width: float = 2.0,
               seed: int = 0) -> list[bytes]:
    """The bytes each input's randomness is derived from (see the module docstring for the three kinds)."""
    if kind == "raw":
        return [row.tobytes() for row in _row_bytes(x)]
    if kind == "quantised":
        return [row.tobytes() for row in _row_bytes(quantise(x, levels))]
    if kind == "lsh":
        return [row.tobytes() for row in _row_bytes(lsh_buckets(x, levels, projections, width, seed))]
    raise ValueError(f"key must be one of {KEYS}, got {kind!r}")
