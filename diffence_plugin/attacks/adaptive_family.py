"""The adaptive attacker as an attack family (``[attacks].adaptive``): it queries the defense itself, many times
per record, and scores what comes back under the audit's protocol like every other attack.

- ``repeat``: M exact copies of each record, the answers averaged, LiRA on the average (``repeat<M>_<variant>``).
  A deterministic release answers every copy alike, so this equals LiRA on the single query: the check that
  the deterministic mode holds.
- ``average``: M flat-region copies (copy c moves the c-th flattest pixel by one ``step``; ``adaptive.py``),
  the answers averaged, LiRA on the average (``average<M>_<variant>``). Each copy is a new query; against a
  defense whose randomness follows the query, the average takes the randomness back.
- ``label_noise``: how often the released label survives Gaussian noise (Choquette-Choo et al., ICML 2021),
  ``queries`` noisy copies of sd ``sigma``, thresholded (``label_noise``): what a label-keeping defense
  cannot hide.

The references answer single queries (their view of the defense, defense-aware where the audit copies it), so
the averaged attacks compare a many-query target answer with single-query references: the attacker's
cheapest adaptive strategy, and the one the recovery studies in docs/results/adaptive.md start from.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from diffence_plugin.attacks.adaptive import averaged_release, label_survival, perturbed_copies
from diffence_plugin.attacks.families import Context, Needs
from diffence_plugin.attacks.metrics import AttackResult
from diffence_plugin.attacks.scoring import Sets, lira_attacks, scored_attack

KINDS = ("repeat", "average", "label_noise")
QUERIED = ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")


class AdaptiveFamily:
    """Attacks that query the defense M times per record (see the module's docstring)."""

    name, needs = "adaptive", Needs(records=True)

    def __init__(self, kinds: tuple[str, ...] = ("average",), copies: int = 8, step: float = 1 / 255,
                 sigma: float = 0.05, queries: int = 16) -> None:
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown or not kinds:
            raise ValueError(f"unknown adaptive attack(s) {unknown or list(kinds)}; choose from {list(KINDS)}")
        for name, value in (("copies", copies), ("queries", queries)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name, value in (("step", step), ("sigma", sigma)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        self.kinds, self.copies, self.step, self.sigma, self.queries = tuple(kinds), copies, step, sigma, queries

    def run(self, context: Context) -> list[AttackResult]:
        release = _release(context)
        results = []
        for kind, perturbation in (("repeat", "exact"), ("average", "flat")):
            if kind in self.kinds and context.view is not None:
                averaged = {role: averaged_release(release, perturbed_copies(
                    context.x[getattr(context.split, role)], perturbation, self.copies, size=self.step,
                    seed=context.seed)) for role in QUERIED}
                results += [replace(r, attack=f"{kind}{self.copies}_{r.attack}") for r in lira_attacks(
                    averaged, context.y, context.split, context.view, seed=context.seed, bootstrap=context.bootstrap)]
        if "label_noise" in self.kinds:
            results.append(self._label_noise(context, release))
        return results

    def _label_noise(self, context: Context, release) -> AttackResult:
        """Label survival under noise, on every record the protocol scores, in one call."""
        def score(indices: np.ndarray) -> np.ndarray:
            return label_survival(release, context.x[indices], context.y[indices], sigma=self.sigma,
                                  queries=self.queries, seed=context.seed)
        return scored_attack("label_noise", score, Sets.of(context.split), context.seed, context.bootstrap)


def _release(context: Context):
    """The defense's answer on a batch of queries (float64 probabilities): the pipeline's, or the undefended
    model's for the undefended row."""
    def release(x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            if context.pipeline is not None:
                return context.pipeline.release(context.model, batch).double().numpy()
            return torch.softmax(context.model(batch).double(), -1).numpy()
    return release
