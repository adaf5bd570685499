"""ART's membership-inference attacks, run with the same protocol as ``diffence_plugin.attacks``.

The attacker fits on its own known members/non-members and is scored on disjoint evaluation sets.
Released predictions can be passed precomputed (ART's ``pred=`` arguments), so one reconstruction of each
input serves several attacks; loss features then come from ``compute_loss_from_predictions``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from art.attacks.inference.membership_inference import (
    LabelOnlyDecisionBoundary,
    MembershipInferenceBlackBox,
    MembershipInferenceBlackBoxRuleBased,
    ShadowModels,
)
from art.estimators.classification.pytorch import PyTorchClassifier
from art.estimators.estimator import BaseEstimator
from sklearn.metrics import roc_auc_score
from torch import nn

from diffence_plugin.attacks.metrics import AttackResult, membership_metrics

BLACK_BOX = {
    "bb_nn": ("prediction", "nn"),
    "bb_rf": ("prediction", "rf"),
    "bb_gb": ("prediction", "gb"),
    "bb_loss_nn": ("loss", "nn"),
    "bb_loss_rf": ("loss", "rf"),
    "bb_loss_gb": ("loss", "gb"),
}


class ProbabilityNLLLoss(nn.Module):
    """Cross-entropy for a model that already outputs probabilities (ART sets ``reduction`` on it)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == 2:
            target = target.argmax(dim=1)
        return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), target, reduction=self.reduction)


def probability_classifier(model: nn.Module, input_shape: tuple[int, ...], nb_classes: int, *,
                           lr: float = 1e-3, clip_values: tuple[float, float] = (0.0, 1.0)) -> PyTorchClassifier:
    """An ART ``PyTorchClassifier`` whose ``predict`` returns probabilities (softmax on ``model``'s logits).

    Membership attacks and ART's postprocessors expect probability vectors, the paper's threat model too.
    """
    wrapped = nn.Sequential(model, nn.Softmax(dim=1))
    return PyTorchClassifier(wrapped, loss=ProbabilityNLLLoss(), input_shape=input_shape, nb_classes=nb_classes,
                             optimizer=torch.optim.Adam(wrapped.parameters(), lr=lr), clip_values=clip_values,
                             device_type="cpu" if not torch.cuda.is_available() else "gpu")


@dataclass(frozen=True)
class AttackData:
    """Inputs, one-hot labels and (optionally) released probabilities of one set of records."""

    x: np.ndarray
    y: np.ndarray  # one-hot (S, K)
    pred: np.ndarray | None = None  # released (S, K) probabilities, if already computed


def _member_probability(out: np.ndarray) -> np.ndarray:
    out = np.asarray(out, dtype=np.float64)
    return out[:, 1] if out.ndim == 2 and out.shape[1] == 2 else out.reshape(-1)


def _uses_pred(estimator, input_type: str, data: AttackData) -> bool:
    """Whether ART can take this set's released predictions instead of querying the estimator again.

    ART computes loss features from ``x`` whenever ``x`` is given, so ``x`` is dropped when ``pred`` serves.
    """
    if data.pred is None:
        return False
    if input_type == "prediction":
        return True
    own = type(estimator).compute_loss_from_predictions
    return own is not BaseEstimator.compute_loss_from_predictions


def _inputs(estimator, input_type: str, data: AttackData) -> tuple[np.ndarray | None, dict]:
    if _uses_pred(estimator, input_type, data):
        return None, {"pred": data.pred}
    return data.x, {}


def _scores(attack, input_type: str, data: AttackData) -> np.ndarray:
    x, pred = _inputs(attack.estimator, input_type, data)
    return _member_probability(attack.infer(x, data.y, probabilities=True, **pred))


def _score(attack, input_type: str, name: str, select: tuple[AttackData, AttackData],
           evaluation: tuple[AttackData, AttackData], seed: int) -> AttackResult:
    """Metrics on ``evaluation``; the AUC on the attacker's ``select`` records decides whether it is the best."""
    sm, sn = (_scores(attack, input_type, d) for d in select)
    selection = float(roc_auc_score(np.r_[np.ones(sm.size), np.zeros(sn.size)], np.r_[sm, sn]))
    ms, ns = (_scores(attack, input_type, d) for d in evaluation)
    return membership_metrics(name, ms, ns, 0.5, selection_auc=selection, seed=seed)


def black_box(estimator, name: str, fit: tuple[AttackData, AttackData], select: tuple[AttackData, AttackData],
              evaluation: tuple[AttackData, AttackData], seed: int = 0) -> AttackResult:
    """``MembershipInferenceBlackBox`` of the kind ``name`` (a key of ``BLACK_BOX``), fitted on ``fit``."""
    input_type, model_type = BLACK_BOX[name]
    np.random.seed(seed)
    torch.manual_seed(seed)
    attack = MembershipInferenceBlackBox(estimator, input_type=input_type, attack_model_type=model_type)
    km, kn = fit
    x, pred = _inputs(estimator, input_type, km)
    test_x, test_pred = _inputs(estimator, input_type, kn)
    extra = {**pred, **({"test_pred": test_pred["pred"]} if test_pred else {})}
    attack.fit(x, km.y, test_x, kn.y, **extra)
    return _score(attack, input_type, name, select, evaluation, seed)


def rule_based(estimator, select: tuple[AttackData, AttackData], evaluation: tuple[AttackData, AttackData],
               seed: int = 0) -> AttackResult:
    """``MembershipInferenceBlackBoxRuleBased``: member iff the released label is correct (queries the estimator)."""
    attack = MembershipInferenceBlackBoxRuleBased(estimator)
    strip = lambda d: AttackData(d.x, d.y)  # noqa: E731  (the rule-based attack always queries)
    return _score(attack, "prediction", "rule_based", tuple(map(strip, select)), tuple(map(strip, evaluation)), seed)


def decision_boundary(estimator, known: tuple[AttackData, AttackData], evaluation: tuple[AttackData, AttackData],
                      max_iter: int = 10, max_eval: int = 100, init_eval: int = 10, seed: int = 0) -> AttackResult:
    """``LabelOnlyDecisionBoundary`` (Choquette-Choo et al.): HopSkipJump distance to the boundary."""
    np.random.seed(seed)
    attack = LabelOnlyDecisionBoundary(estimator)
    km, kn = known
    attack.calibrate_distance_threshold(km.x, km.y, kn.x, kn.y, max_iter=max_iter, max_eval=max_eval,
                                        init_eval=init_eval, verbose=False)
    m, n = evaluation
    hsj = dict(max_iter=max_iter, max_eval=max_eval, init_eval=init_eval, verbose=False)
    md = attack.infer(m.x, m.y, probabilities=True, **hsj)
    nd = attack.infer(n.x, n.y, probabilities=True, **hsj)
    ms, ns = _member_probability(md), _member_probability(nd)
    return membership_metrics("decision_boundary", ms, ns, 0.5, seed=seed)


ShadowAnswer = Callable[[nn.Module, np.ndarray, np.ndarray], np.ndarray]


def shadow_models(estimator, template: PyTorchClassifier, shadow_data: AttackData,
                  select: tuple[AttackData, AttackData], evaluation: tuple[AttackData, AttackData], *,
                  answer: ShadowAnswer | None = None, num_shadow_models: int = 2, disjoint_datasets: bool = False,
                  nb_epochs: int = 30, seed: int = 0) -> AttackResult:
    """Shokri et al.'s shadow models (ART ``ShadowModels``) feeding a black-box attack on ``estimator``.

    ``template`` should have the target's architecture (see ``diffence_plugin.data.models.reinitialised``).
    Each shadow trains on a random half of ``shadow_data`` (all of it split in disjoint parts with
    ``disjoint_datasets``). By default the shadows answer with their plain predictions: a defense-unaware
    attacker. ``answer(module, queries, trained_on)`` makes them answer through the attacker's own copy of the
    defense instead: it gets the shadow's torch module (probabilities out), the queries, and the records that
    shadow trained on (for a defense that calibrates on known members), and returns probabilities.
    """
    torch.manual_seed(seed)
    shadows = ShadowModels(template, num_shadow_models=num_shadow_models, disjoint_datasets=disjoint_datasets,
                           random_state=seed)
    for model in shadows.get_shadow_models():  # ShadowModels calls fit(x, y) with ART's 10 epochs: pin ours
        trained: list[np.ndarray] = []
        fit = model.fit

        def pinned_fit(x, y, _fit=fit, _trained=trained, **kw):
            _trained.append(x)
            return _fit(x, y, nb_epochs=nb_epochs, batch_size=64, **kw)
        model.fit = pinned_fit
        if answer is not None:
            model.predict = lambda x, _m=model, _trained=trained, **kw: answer(_m.model.eval(), x, _trained[-1])
    (mx, my, mp), (nx, ny, npred) = shadows.generate_shadow_dataset(shadow_data.x, shadow_data.y)
    attack = MembershipInferenceBlackBox(estimator, input_type="prediction", attack_model_type="rf")
    attack.fit(mx, my, nx, ny, pred=mp, test_pred=npred)
    return _score(attack, "prediction", "shadow_models", select, evaluation, seed)
