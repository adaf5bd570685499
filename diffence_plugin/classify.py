"""Step 2 of the pipeline: score images with the user's classifier, in bounded batches.

A classifier is any callable from a float32 (M, C, H, W) tensor to (M, K) logits or probabilities.
Everything downstream works on float64 log-probabilities, so the phi score stays finite and exact.
"""

from __future__ import annotations

from typing import Callable

import torch

Classifier = Callable[[torch.Tensor], torch.Tensor]

_TINY = torch.finfo(torch.float64).tiny


def looks_like_probabilities(outputs: torch.Tensor, atol: float = 1e-3) -> bool:
    """True when every row is non-negative and sums to 1 (within ``atol``)."""
    sums = outputs.double().sum(dim=-1)
    return bool((outputs >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=atol))


def to_log_probabilities(outputs: torch.Tensor, kind: str) -> torch.Tensor:
    """Convert (..., K) logits or probabilities to float64 log-probabilities."""
    outputs = outputs.double()
    if kind == "logits":
        return torch.log_softmax(outputs, dim=-1)
    if kind == "probabilities":
        probs = outputs.clamp_min(_TINY)
        return torch.log(probs / probs.sum(dim=-1, keepdim=True))
    raise ValueError(f"kind must be 'logits' or 'probabilities', got {kind!r}")


@torch.no_grad()
def as_classifier(classifier) -> Classifier:
    """``classifier`` itself when it is callable; an ART estimator's torch module (its ``model``) otherwise, so
    that ``Diffence.calibrate(art_classifier, ...)`` works too. Anything else is a TypeError that says what to
    pass."""
    if callable(classifier):
        return classifier
    module = getattr(classifier, "model", None)
    if isinstance(module, torch.nn.Module) and callable(getattr(classifier, "predict", None)):
        return module
    raise TypeError(f"the classifier must be a callable from images to logits or probabilities (a torch module), "
                    f"got {type(classifier).__name__}; for an ART estimator pass its .model")


def classify(classifier: Classifier, images: torch.Tensor, max_batch: int) -> torch.Tensor:
    """Run ``classifier`` over ``images`` in chunks of ``max_batch``; returns the raw (M, K) outputs.

    Raises:
        TypeError / ValueError: if the classifier does not return a 2-D tensor of finite numbers with one
            row per image.
    """
    classifier = as_classifier(classifier)
    outputs = []
    for start in range(0, images.shape[0], max_batch):
        chunk = images[start : start + max_batch]
        out = classifier(chunk)
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"the classifier must return a torch.Tensor, got {type(out).__name__}")
        if out.dim() != 2 or out.shape[0] != chunk.shape[0]:
            raise ValueError(
                f"the classifier must return shape ({chunk.shape[0]}, K) for {chunk.shape[0]} images, "
                f"got {tuple(out.shape)}"
            )
        if not bool(torch.isfinite(out).all()):
            raise ValueError("the classifier returned NaN or infinite outputs")
        outputs.append(out.detach())
    return torch.cat(outputs)


def probabilities(classifier: Classifier, x: torch.Tensor, max_batch: int = 1024) -> torch.Tensor:
    """(B, K) float64 probabilities of ``classifier`` (logits or probabilities out) on ``x``."""
    raw = classify(classifier, x, max_batch)
    kind = "probabilities" if looks_like_probabilities(raw) else "logits"
    return to_log_probabilities(raw, kind).exp()
