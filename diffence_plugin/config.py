"""Configuration of a Diffence defense: the numbers a user chooses, validated once."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

Scenario = Union[int, str]
SCENARIOS: tuple[Scenario, ...] = (1, 2, 3, "mean")
OUTPUT_KINDS = ("auto", "logits", "probabilities")


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
        deterministic: derive each input's randomness from its bytes and ``seed``, so repeated
            queries of the same input get the same answer and cannot be averaged by an attacker.
        seed: secret seed of the deterministic mode, or the seed of the generator otherwise.
        max_batch: most images sent through the UNet or the classifier in one call; bounds memory.
        output: what the classifier returns; "auto" detects probability rows (non-negative, sum 1).
    """

    n: int = 50
    t: int = 40
    k: int = 10
    scenario: Scenario = 1
    deterministic: bool = True
    seed: int = 0
    max_batch: int = 1024
    output: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n", "t", "k", "seed", "max_batch"):
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

    @property
    def needs_calibration(self) -> bool:
        """Scenarios 1 and 2 select inside an interval learnt from known members."""
        return self.scenario in (1, 2)

    def to_dict(self) -> dict:
        return asdict(self)
