"""Configuration of a Diffence defense: the numbers a user chooses, validated once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Union

from diffence_plugin.randomness import KEYS, secret_seed, warn_if_guessable

Scenario = Union[int, str]
SCENARIOS: tuple[Scenario, ...] = (1, 2, 3, "mean")
OUTPUT_KINDS = ("auto", "logits", "probabilities")
PICKS = ("rank", "stable")


@dataclass(frozen=True)
class DiffenceConfig:
    """What Diffence does to each input (Section 3.2 of the paper).

    Args:
        n: reconstructions per input (the paper's N).
        t: diffusion step the input is noised to (the paper's T).
        k: DDIM stride; the UNet runs at t, t-k, ..., k, so ``t % k == 0``.
        scenario: selection rule. 1: defender knows members and non-members (calibrated interval);
            2: defender knows members only; 3: nothing known (random candidate);
            "mean": average of all reconstructions' predictions (may change labels).
        deterministic: derive each input's randomness from a key of the input and ``seed``, so repeated
            queries of the same input get the same answer and cannot be averaged by an attacker.
        seed: secret seed of the deterministic mode, or the seed of the generator otherwise. None (the
            default) draws a fresh secret with ``secrets``; a small fixed seed is warned about.
        key: what the randomness is derived from (see ``diffence_plugin.randomness``): "quantised" (the
            input rounded to ``levels`` grey levels; default), "lsh" (a locality-sensitive key of it) or "raw"
            (its float32 bytes). With "quantised" and "lsh" the defense reconstructs the quantised input.
        levels: grey levels of the input's bit depth: 255 for 8-bit images, 16 for sklearn's digits.
        lsh_projections, lsh_width: the LSH key's random projections and bucket width (pooled-image L2 units).
        pick: how an input's uniform picks among the eligible reconstructions. "rank" (default): the
            floor(u * count)-th; "stable": the one with the smallest priority hashed from u, so a reconstruction
            that joins or leaves the eligible set (a near-duplicate query under the LSH key) moves the pick
            only if it is the pick or outranks it. Both are uniform among the eligible ones.
        max_batch: most images sent through the UNet or the classifier in one call; bounds memory.
        output: what the classifier returns; "auto" detects probability rows (non-negative, sum 1).
    """

    n: int = 50
    t: int = 40
    k: int = 10
    scenario: Scenario = 1
    deterministic: bool = True
    seed: int | None = None
    max_batch: int = 1024
    output: str = "auto"
    key: str = "quantised"
    levels: int = 255
    lsh_projections: int = 4
    lsh_width: float = 2.0
    pick: str = "rank"

    def __post_init__(self) -> None:
        if self.seed is None:
            object.__setattr__(self, "seed", secret_seed())
        for name in ("n", "t", "k", "seed", "max_batch", "levels", "lsh_projections"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if self.n < 1:
            raise ValueError(f"n (reconstructions per input) must be >= 1, got {self.n}")
        if self.t < 0:
            raise ValueError(f"t (noise step) must be >= 0, got {self.t}")
        if self.k < 1:
            raise ValueError(f"k (DDIM stride) must be >= 1, got {self.k}")
        if self.t % self.k != 0:
            raise ValueError(f"t must be a multiple of k, got t={self.t}, k={self.k}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.scenario not in SCENARIOS or isinstance(self.scenario, bool):
            raise ValueError(f"scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if self.key not in KEYS:
            raise ValueError(f"key must be one of {KEYS}, got {self.key!r}")
        if self.pick not in PICKS:
            raise ValueError(f"pick must be one of {PICKS}, got {self.pick!r}")
        if not 1 <= self.levels <= 65535:
            raise ValueError(f"levels (grey levels of the input) must lie in [1, 65535], got {self.levels}")
        if self.lsh_projections < 1:
            raise ValueError(f"lsh_projections must be >= 1, got {self.lsh_projections}")
        if isinstance(self.lsh_width, bool) or not isinstance(self.lsh_width, (int, float)) \
                or not math.isfinite(self.lsh_width) or self.lsh_width <= 0:
            raise ValueError(f"lsh_width must be a positive number, got {self.lsh_width!r}")
        object.__setattr__(self, "lsh_width", float(self.lsh_width))
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.deterministic:
            warn_if_guessable(self.seed)

    @property
    def needs_calibration(self) -> bool:
        """Scenarios 1 and 2 select inside an interval learnt from known members."""
        return self.scenario in (1, 2)

    def to_dict(self) -> dict:
        return asdict(self)
