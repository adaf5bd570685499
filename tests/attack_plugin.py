"""A plugin that registers a membership attack, for tests/test_plugins.py (loaded by name, not installed)."""

import numpy as np

from diffence_plugin.plugins import hookimpl


class MaxProbability:
    """Member when the released vector's largest probability is high (a confidence attack, label-free)."""

    def score(self, released: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return np.asarray(released).max(axis=1)


@hookimpl
def diffence_register_attacks(register):
    register("max_probability", MaxProbability)
