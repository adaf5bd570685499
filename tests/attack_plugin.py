"""A plugin that registers membership attacks, for tests/test_plugins.py (loaded by name, not installed): one
with ``score(released, labels)`` and two families behind the attack interface (``run`` and ``needs``)."""

import numpy as np

from diffence_plugin.attacks.families import Needs
from diffence_plugin.attacks.scoring import (
    Sets,
    gather,
    released_by_index,
    scored_attack,
)
from diffence_plugin.registry import hookimpl


class MaxProbability:
    """Member when the released vector's largest probability is high (a confidence attack, label-free)."""

    def score(self, released: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.asarray(released).max(axis=1)


class TrueLabelProbability:
    """A family of one: the released probability of the record's own label, under the audit's protocol."""

    name, needs = "true_label_probability", Needs()

    def run(self, context):
        table = released_by_index(context.released, context.split)
        return [scored_attack(self.name, lambda idx: gather(table, idx)[np.arange(len(idx)), context.y[idx]],
                              Sets.of(context.split), context.seed, context.bootstrap)]


class NeedsReferences(TrueLabelProbability):
    """The same, declared to need reference models: skipped by a run that trains none."""

    name, needs = "needs_references", Needs(references=True)


@hookimpl
def diffence_register_attacks(register):
    register("max_probability", MaxProbability)
    register("true_label_probability", TrueLabelProbability)
    register("needs_references", NeedsReferences)
