"""ART's postprocessors as diffence-plugin post-inference defenses (entry point ``art``).

``high_confidence``, ``reverse_sigmoid``, ``rounded`` and ``gaussian_noise`` wrap ART's classes. ART's
``ClassLabels`` marks the union of argmax columns on every row of a batch, so ``class_labels`` here is a
correct re-statement instead: each row becomes the one-hot vector of its own argmax.
"""

from __future__ import annotations

import numpy as np
import torch
from art.defences.postprocessor import (
    GaussianNoise,
    HighConfidence,
    ReverseSigmoid,
    Rounded,
)
from art.defences.postprocessor.postprocessor import Postprocessor

from diffence_plugin.registry import hookimpl


class ARTPostprocessor:
    """Adapts an ART ``Postprocessor`` to ``defense(x, probs) -> probs`` (float64 in and out).

    ``seed`` makes ART postprocessors that draw from numpy's global generator (GaussianNoise) reproducible;
    the global state is restored afterwards.
    """

    def __init__(self, postprocessor: Postprocessor, seed: int | None = None) -> None:
        if not isinstance(postprocessor, Postprocessor):
            raise TypeError(f"expected an ART Postprocessor, got {type(postprocessor).__name__}")
        self.postprocessor = postprocessor
        self.seed = seed
        self._calls = 0

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        preds = np.asarray(torch.as_tensor(probs, dtype=torch.float64).cpu().numpy(), dtype=np.float64)
        if self.seed is None:
            out = self.postprocessor(preds)
        else:
            state = np.random.get_state()
            np.random.seed((self.seed + self._calls) % 2**32)
            self._calls += 1
            try:
                out = self.postprocessor(preds)
            finally:
                np.random.set_state(state)
        return torch.as_tensor(np.asarray(out, dtype=np.float64))

    def __repr__(self) -> str:
        return f"ARTPostprocessor({self.postprocessor!r})"


class OneHotLabels:
    """Release only the label: each row becomes the one-hot vector of its argmax."""

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        probs = torch.as_tensor(probs, dtype=torch.float64)
        return torch.nn.functional.one_hot(probs.argmax(-1), probs.shape[-1]).double()


@hookimpl
def diffence_register_post_inference(register):
    register("high_confidence", lambda cutoff=0.25: ARTPostprocessor(HighConfidence(cutoff=cutoff)))
    register("reverse_sigmoid", lambda beta=1.0, gamma=0.1: ARTPostprocessor(ReverseSigmoid(beta=beta, gamma=gamma)))
    register("rounded", lambda decimals=3: ARTPostprocessor(Rounded(decimals=decimals)))
    register("gaussian_noise", lambda scale=0.2, seed=0: ARTPostprocessor(GaussianNoise(scale=scale), seed=seed))
    register("class_labels", OneHotLabels)
