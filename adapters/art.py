"""Diffence for the Adversarial Robustness Toolbox (ART): a preprocessing defence and an estimator wrapper.

- ``DiffencePreprocessor``: an ART ``PreprocessorPyTorch`` for ``PyTorchClassifier(preprocessing_defences=...)``.
  It returns the selected reconstruction; ART then classifies it once more (a preprocessor cannot return
  probabilities). Gradients pass straight through (BPDA identity), so ``loss_gradient`` works; an adaptive
  attacker would need more than that estimate to differentiate through the diffusion model.
- ``DefendedClassifier``: an ART classifier wrapping an existing one behind a whole ``DefensePipeline``;
  ``DiffenceClassifier`` is the same with Diffence alone. ``predict`` runs the defense once per
  input and releases the selected probability vector; ``compute_loss`` is computed from those released
  vectors, so loss-based membership attacks see the defense (ART's own ``compute_loss`` skips
  postprocessing).

Paper: Yuefeng Peng, Ali Naseh and Amir Houmansadr, "Diffence: Fencing Membership Privacy With Diffusion Models", NDSS 2025.
Like every defence, Diffence is evaluated here against known attacks only; see ART's note on the
limitations of defences.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
from art.estimators.classification.classifier import ClassifierMixin
from art.estimators.classification.pytorch import PyTorchClassifier
from art.estimators.estimator import BaseEstimator

from diffence_plugin import Diffence
from diffence_plugin.classify import Classifier
from diffence_plugin.defenses.pipeline import DefensePipeline
from diffence_plugin.validation import as_image_batch


class DiffencePreprocessor(PreprocessorPyTorch):
    """Replace each input by the Diffence reconstruction whose label matches the original prediction.

    Args:
        diffence: the (calibrated, for scenarios 1 and 2) defense.
        classifier: the torch model (or any tensor -> logits callable) that the wrapped ART classifier runs,
            including any normalisation it needs: ART never hands a preprocessor its classifier.
        nb_classes: expected number of classes, checked on the classifier's output.
        apply_fit / apply_predict: as in ART; Diffence is an inference-time defense, so ``apply_fit=False``.
    """

    params = ["diffence", "classifier", "nb_classes"]

    def __init__(self, diffence: Diffence, classifier: Classifier, *, nb_classes: int | None = None,
                 apply_fit: bool = False, apply_predict: bool = True, device_type: str = "gpu") -> None:
        super().__init__(device_type=device_type, is_fitted=True, apply_fit=apply_fit, apply_predict=apply_predict)
        self.diffence = diffence
        self.classifier = classifier
        self.nb_classes = nb_classes
        self._check_params()

    def forward(self, x: torch.Tensor, y: Any | None = None) -> tuple[torch.Tensor, Any | None]:
        x32 = as_image_batch(x.detach()).to(x.device)
        if isinstance(self.classifier, torch.nn.Module):
            self.classifier.eval()
        purified = self.diffence.purify(self.classifier, x32, nb_classes=self.nb_classes).to(x.device)
        anchor = x.float() if x.requires_grad else x32
        return anchor + (purified - anchor).detach(), y

    def estimate_forward(self, x: torch.Tensor, y: Any | None = None) -> torch.Tensor:
        """BPDA: the defense's output with the identity's gradient."""
        return self.forward(x, y)[0]

    def fit(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> None:
        """Nothing to fit: calibrate the ``Diffence`` object instead."""

    def set_params(self, **kwargs) -> None:
        unknown = sorted(set(kwargs) - set(self.params))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; expected a subset of {self.params}")
        super().set_params(**kwargs)

    def _check_params(self) -> None:
        if not isinstance(self.diffence, Diffence):
            raise TypeError(f"diffence must be a Diffence, got {type(self.diffence).__name__}")
        if self.diffence.config.scenario == "mean":
            raise ValueError('a preprocessor returns one image per input, but scenario "mean" averages the '
                             "predictions of all reconstructions; use scenario 1, 2 or 3 (or DiffenceClassifier)")
        if not callable(self.classifier):
            raise TypeError(f"classifier must be callable (a torch model), got {type(self.classifier).__name__}")


def _labels(y: np.ndarray, nb_classes: int, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape != (n, nb_classes):
            raise ValueError(f"one-hot labels must have shape ({n}, {nb_classes}), got {y.shape}")
        return y.argmax(axis=1)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) or ({n}, {nb_classes}), got {y.shape}")
    if (y < 0).any() or (y >= nb_classes).any():
        raise ValueError(f"labels must lie in [0, {nb_classes - 1}]")
    return y.astype(np.int64)


class DefendedClassifier(ClassifierMixin, BaseEstimator):
    """An ART classifier that answers every query through a ``DefensePipeline``.

    ``predict`` runs the pipeline once per input (each stage once) and ``compute_loss`` is the
    cross-entropy of what it releases, so prediction- and loss-based attacks both see every stage,
    post-inference ones included (ART's own ``compute_loss`` skips postprocessing).

    Args:
        estimator: a fitted ART classifier (e.g. ``PyTorchClassifier``) without postprocessing defences;
            put those in the pipeline or on this wrapper, so that they run after the defense.
        pipeline: the defenses; its classifier is ``estimator``'s model.
        postprocessing_defences: ART postprocessors applied to the released probabilities.
    """

    estimator_params = BaseEstimator.estimator_params + ["estimator", "pipeline"]

    def __init__(self, estimator: BaseEstimator, pipeline: DefensePipeline, *, postprocessing_defences=None) -> None:
        if not (isinstance(estimator, ClassifierMixin) and isinstance(estimator, BaseEstimator)):
            raise TypeError(f"estimator must be an ART classifier, got {type(estimator).__name__}")
        if not isinstance(pipeline, DefensePipeline):
            raise TypeError(f"pipeline must be a DefensePipeline, got {type(pipeline).__name__}")
        if estimator.postprocessing_defences:
            names = [type(d).__name__ for d in estimator.postprocessing_defences]
            raise ValueError(f"the wrapped estimator has postprocessing defences {names}; pass them to "
                             f"{type(self).__name__}(postprocessing_defences=...) so they run after the defense")
        if any(isinstance(d, DiffencePreprocessor) for d in estimator.preprocessing_defences or []):
            raise ValueError("the wrapped estimator already applies DiffencePreprocessor; wrap the undefended one")
        super().__init__(model=estimator.model, clip_values=estimator.clip_values, preprocessing_defences=None,
                         postprocessing_defences=postprocessing_defences, preprocessing=None)
        self.estimator = estimator
        self.pipeline = pipeline
        self.nb_classes = estimator.nb_classes
        pipeline._bind(self._scores)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.estimator.input_shape

    def _scores(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs of the wrapped estimator, on tensors for PyTorchClassifier and via numpy otherwise."""
        est = self.estimator
        if isinstance(est, PyTorchClassifier) and est.all_framework_preprocessing:
            est.model.eval()
            x_pre, _ = est._apply_preprocessing(x.to(est.device), y=None, fit=False, no_grad=True)
            out = est.model(x_pre)
            return (out[-1] if isinstance(out, (list, tuple)) else out).detach()
        return torch.as_tensor(est.predict(x.detach().cpu().numpy()))

    def defended_probabilities(self, x: np.ndarray) -> np.ndarray:
        """Released (B, K) float32 probabilities before this wrapper's postprocessing defences."""
        probs = self.pipeline.run(self._scores, as_image_batch(x))
        if probs.shape[-1] != self.nb_classes:
            raise ValueError(f"the pipeline released {probs.shape[-1]} classes, the estimator has {self.nb_classes}")
        return probs.cpu().numpy()

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs) -> np.ndarray:
        """Defended probabilities, then any postprocessing defences of this wrapper."""
        return self._apply_postprocessing(self.defended_probabilities(x), fit=False)

    def fit(self, x: np.ndarray, y: np.ndarray, **kwargs) -> None:
        """Fit the wrapped estimator; defenses fitted on its old outputs must then be fitted again."""
        self.estimator.fit(x, y, **kwargs)
        warnings.warn("the wrapped estimator was refitted: fit the pipeline's defenses again", stacklevel=2)

    def fit_defenses(self, x_members: np.ndarray, x_nonmembers: np.ndarray | None = None) -> None:
        """Fit (calibrate) every defense of the pipeline on known members and non-members."""
        self.pipeline.fit(as_image_batch(x_members, "x_members"),
                          None if x_nonmembers is None else as_image_batch(x_nonmembers, "x_nonmembers"),
                          classifier=self._scores)

    def compute_loss_from_predictions(self, pred: np.ndarray, y: np.ndarray, reduction: str = "none",
                                      **kwargs) -> np.ndarray:
        """Cross-entropy of released probability vectors ``pred`` against labels (indices or one-hot)."""
        pred = np.asarray(pred, dtype=np.float64)
        labels = _labels(y, self.nb_classes, pred.shape[0])
        loss = -np.log(np.clip(pred[np.arange(len(labels)), labels], 1e-12, 1.0))
        if reduction == "none":
            return loss
        if reduction == "mean":
            return np.asarray(loss.mean())
        if reduction == "sum":
            return np.asarray(loss.sum())
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")

    def compute_loss(self, x: np.ndarray, y: np.ndarray, reduction: str = "none", **kwargs) -> np.ndarray:
        """Loss of what the defense releases (after postprocessing), as a loss-based attacker observes it."""
        return self.compute_loss_from_predictions(self.predict(x), y, reduction=reduction)


class DiffenceClassifier(DefendedClassifier):
    """``DefendedClassifier`` with Diffence as its only defense: ``DiffenceClassifier(estimator, diffence)``."""

    def __init__(self, estimator: BaseEstimator, diffence: Diffence, *, postprocessing_defences=None) -> None:
        if not isinstance(diffence, Diffence):
            raise TypeError(f"diffence must be a Diffence, got {type(diffence).__name__}")
        super().__init__(estimator, DefensePipeline(pre=[diffence]), postprocessing_defences=postprocessing_defences)
        self.diffence = diffence
