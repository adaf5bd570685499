"""LiRA and RMIA with ART's face: ``fit`` then ``infer``, against any ART classifier (a ``DefendedClassifier``
included). ART has neither attack; the scoring is ``diffence_plugin.attacks``'s, written from the papers.

``fit`` trains reference models on random halves of the attacker's records (its pool plus the candidates
it will ask about, so that online LiRA has IN and OUT models for each). ``infer`` queries the target
estimator and the references on the same records. ``answer(model, x)`` turns a reference model into
released probabilities: the default is its plain softmax (a defense-unaware attacker); pass the attacker's
own copy of the defense to make it defense-aware.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np
import torch
from torch import nn

from diffence_plugin.attacks.lira import LiRA, logit_confidence
from diffence_plugin.attacks.references import (
    ReferenceModels,
    ReferenceRecipe,
    train_references,
)
from diffence_plugin.attacks.rmia import RMIA, fit_offline_a

Answer = Callable[[nn.Module, np.ndarray], np.ndarray]


def softmax_answer(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """A reference model's plain softmax, in float64."""
    with torch.no_grad():
        return torch.softmax(model(torch.as_tensor(x, dtype=torch.float32)).double(), -1).numpy()


def _labels(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y.astype(np.int64)


def _keys(x: np.ndarray) -> list[bytes]:
    return [hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16).digest()
            for row in x]


class _ReferenceAttack:
    def __init__(self, estimator, recipe: ReferenceRecipe, references: int = 16, *, answer: Answer = softmax_answer,
                 seed: int = 0, cache: str | None = None, progress: bool = False) -> None:
        self.estimator, self.recipe, self.count, self.answer = estimator, recipe, references, answer
        self.seed, self.cache, self.progress = seed, cache, progress
        self.references: ReferenceModels | None = None
        self._index: dict[bytes, int] = {}

    def _fit_references(self, x: np.ndarray, y: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        self.references = train_references(self.recipe, x, _labels(y), self.count, seed=self.seed,
                                           cache=self.cache, progress=self.progress)
        self._index = {k: i for i, k in enumerate(_keys(x))}

    def _reference_view(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(target probs (S, K), reference probs (R, S, K), IN mask (R, S)); unknown records are OUT everywhere."""
        if self.references is None:
            raise ValueError("call fit() before infer()")
        x = np.asarray(x, dtype=np.float32)
        target = np.asarray(self.estimator.predict(x), dtype=np.float64)
        refs = np.stack([self.answer(m, x) for m in self.references.models])
        positions = [self._index.get(k, -1) for k in _keys(x)]
        mask = np.zeros((len(self.references), len(x)), dtype=bool)
        for j, p in enumerate(positions):
            if p >= 0:
                mask[:, j] = self.references.in_mask[:, p]
        return target, refs, mask


class LiRAAttack(_ReferenceAttack):
    """LiRA (Carlini et al., 2022) as an ART-style membership attack.

    Args:
        estimator: the target, any ART classifier returning probabilities.
        recipe: how the attacker trains a reference model (``ReferenceRecipe``).
        references: reference models (even; each record is IN for half of them).
        online: use IN and OUT references; offline uses OUT only and needs no candidates at ``fit``.
        global_variance: one variance per side pooled over records (better with few references).
        answer: ``answer(model, x) -> probabilities`` of a reference model (its defense, if any).
    """

    def __init__(self, estimator, recipe: ReferenceRecipe, references: int = 16, *, online: bool = True,
                 global_variance: bool = True, **kwargs) -> None:
        super().__init__(estimator, recipe, references, **kwargs)
        self.lira = LiRA(online=online, global_variance=global_variance)

    def fit(self, x: np.ndarray, y: np.ndarray) -> "LiRAAttack":
        """Train the references on halves of ``x``: the attacker's pool, including every record it will infer on
        (online LiRA needs references that trained on each candidate)."""
        self._fit_references(x, y)
        return self

    def infer(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Membership scores (higher = member): the LiRA log-likelihood ratio (online) or log-CDF (offline)."""
        target, refs, mask = self._reference_view(x, y)
        if self.lira.online and not (mask.any(axis=0) & (~mask).any(axis=0)).all():
            raise ValueError("online LiRA needs every inferred record among the records given to fit(); "
                             "use online=False for records the references never saw")
        labels = _labels(y)
        return self.lira.score(logit_confidence(target, labels), logit_confidence(refs, labels), mask)


class RMIAAttack(_ReferenceAttack):
    """RMIA (Zarifzadeh, Liu & Shokri, 2024) as an ART-style membership attack.

    Args:
        gamma: the pairwise likelihood-ratio threshold.
        offline: OUT references only, with ``a`` fitted on the references at ``fit``.
        Others as ``LiRAAttack``.
    """

    def __init__(self, estimator, recipe: ReferenceRecipe, references: int = 4, *, gamma: float = 1.0,
                 offline: bool = False, **kwargs) -> None:
        super().__init__(estimator, recipe, references, **kwargs)
        self.gamma, self.offline = gamma, offline
        self.rmia: RMIA | None = None
        self._population: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def fit(self, x: np.ndarray, y: np.ndarray, x_population: np.ndarray, y_population: np.ndarray) -> "RMIAAttack":
        """Train references on halves of ``x`` and ``x_population``; the population records (non-members of the
        target) are RMIA's z."""
        pool_x = np.concatenate([np.asarray(x, np.float32), np.asarray(x_population, np.float32)])
        pool_y = np.concatenate([_labels(y), _labels(y_population)])
        self._fit_references(pool_x, pool_y)
        target, refs, mask = self._reference_view(x_population, y_population)
        zl = _labels(y_population)
        pick = lambda p: p[..., np.arange(zl.size), zl]  # noqa: E731
        self._population = (pick(target), pick(refs), mask)
        a = None
        if self.offline:
            own, own_mask = pick(refs), mask
            a = fit_offline_a(own, own_mask, own, own_mask, gamma=self.gamma)
        self.rmia = RMIA(gamma=self.gamma, offline_a=a)
        return self

    def infer(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Membership scores in [0, 1]: the share of population records x dominates by a factor gamma."""
        if self.rmia is None or self._population is None:
            raise ValueError("call fit() before infer()")
        target, refs, mask = self._reference_view(x, y)
        labels = _labels(y)
        pick = lambda p: p[..., np.arange(labels.size), labels]  # noqa: E731
        tz, rz, mz = self._population
        return self.rmia.score(pick(target), pick(refs), mask, tz, rz, mz)
