"""HAMP's test-time output modification (Chen & Pattabiraman, NDSS 2024) as a post-inference defense.

Each released vector is replaced by the classifier's output on a random uniform input, rearranged so that
its ranking of the classes equals the original output's: the label and the order are kept, the confidence
values carry no information about the queried record.
"""

from __future__ import annotations

import torch

from ..classify import Classifier, probabilities


class HAMPOutput:
    """``defense(x, probs) -> probs``; needs the undefended classifier (``bind``, done by the pipeline)."""

    def __init__(self, seed: int = 0) -> None:
        self.classifier: Classifier | None = None
        self._generator = torch.Generator().manual_seed(seed)

    def bind(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("HAMPOutput needs the classifier: use it inside a DefensePipeline or call bind()")
        probs = torch.as_tensor(probs, dtype=torch.float64)
        noise = torch.rand(x.shape, generator=self._generator).to(x.device)
        values = probabilities(self.classifier, noise).to(probs.device).sort(dim=-1, descending=True).values
        order = probs.argsort(dim=-1, descending=True)
        return torch.empty_like(probs).scatter_(-1, order, values)
