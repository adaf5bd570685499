"""HAMP's test-time output modification (Chen & Pattabiraman, NDSS 2024) as a post-inference defense.

Each released vector is replaced by the classifier's output on a random uniform input, rearranged so that
its ranking of the classes equals the original output's: the label and the order are kept, the confidence
values carry no information about the queried record.
"""

from __future__ import annotations

import torch

from diffence_plugin.classify import Classifier, probabilities
from diffence_plugin.randomness import input_generators


class HAMPOutput:
    """``defense(x, probs) -> probs``; needs the undefended classifier (``bind``, done by the pipeline).

    The random input behind each answer is derived from the query and ``seed``: the same query gets the same
    answer, so repeating it reveals nothing new.
    """

    def __init__(self, seed: int = 0) -> None:
        self.classifier: Classifier | None = None
        self.seed = seed

    def attacker_copy(self, seed: int) -> "HAMPOutput":
        """An unbound copy with the attacker's own ``seed``: what an attacker who knows the defense applies to
        each of its reference models' answers (after ``bind(reference)``)."""
        return HAMPOutput(seed=seed)

    def bind(self, classifier: Classifier) -> None:
        self.classifier = classifier

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("HAMPOutput needs the classifier: use it inside a DefensePipeline or call bind()")
        probs = torch.as_tensor(probs, dtype=torch.float64)
        prefix = f"hamp/{self.seed}/{tuple(x.shape[1:])}".encode()
        noise = torch.stack([torch.rand(x.shape[1:], generator=g) for g in input_generators(x, prefix)]).to(x.device)
        values = probabilities(self.classifier, noise).to(probs.device).sort(dim=-1, descending=True).values
        order = probs.argsort(dim=-1, descending=True)
        return torch.empty_like(probs).scatter_(-1, order, values)
