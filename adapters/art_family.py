"""ART's membership attacks as the "art" attack family (``[attacks].art``): black-box attack models on the
released vectors, shadow models of the target's architecture, and the label-only rule-based attack."""

from __future__ import annotations

import numpy as np
from diffence_plugin.adapters.art import DefendedClassifier
from diffence_plugin.adapters.art_attacks import (
    BLACK_BOX,
    AttackData,
    black_box,
    probability_classifier,
    rule_based,
    shadow_models,
)

from diffence_plugin.attacks.attacker import shadow_pool
from diffence_plugin.attacks.families import Context, Needs
from diffence_plugin.attacks.metrics import AttackResult
from diffence_plugin.attacks.releases import Released, onehot
from diffence_plugin.attacks.roles import MembershipSplit
from diffence_plugin.attacks.scoring import Sets, gather, released_by_index
from diffence_plugin.data.models import reinitialised

ATTACKS = (*sorted(BLACK_BOX), "shadow_models", "rule_based")


class ARTFamily:
    """ART's attacks named in ``attacks`` (``ATTACKS``), through an ART estimator that answers via the defense.

    The undefended ART classifier of the target is built once per family and target model.
    """

    name, needs = "art", Needs(records=True)

    def __init__(self, attacks: tuple[str, ...] = ("bb_rf", "bb_loss_rf")) -> None:
        for name in attacks:
            if name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}; valid: {list(ATTACKS)}")
        self.attacks = tuple(attacks)
        self._target = None
        self._model = None

    def run(self, context: Context) -> list[AttackResult]:
        if self._target is None or self._model is not context.model:
            self._target = probability_classifier(context.model, tuple(context.x.shape[1:]), context.nb_classes)
            self._model = context.model
        defended = context.pipeline is not None
        estimator = DefendedClassifier(self._target, context.pipeline) if defended else self._target
        return _art_suite(context.released, context.x, context.y, context.split, estimator, self._target,
                          context.model, self.attacks, defended, shadow_answer=context.shadow_answer,
                          seed=context.seed)


def _art_suite(released: Released, x: np.ndarray, y: np.ndarray, split: MembershipSplit, estimator, target, model,
               attacks: tuple[str, ...], defended: bool, shadow_answer=None, seed: int = 0) -> list[AttackResult]:
    """ART's attacks. ``estimator`` answers through the defense; ``target`` is the undefended ART classifier.

    The shadow-model attack trains shadows of the target's own architecture on ``shadow_pool``; they answer
    through ``shadow_answer`` (e.g. a ``ShadowDiffence``: defense-aware) or, when it is None, undefended.
    The rule-based attack sees labels only, which Diffence keeps: it is run on undefended rows.
    """
    sets, table = Sets.of(split), released_by_index(released, split)
    nb_classes = target.nb_classes

    def data(idx):
        return AttackData(x[idx], onehot(y[idx], nb_classes), gather(table, idx))

    fit, select, evaluation = ((data(a), data(b)) for a, b in (sets.fit, sets.select, sets.evaluation))
    results = []
    for attack in attacks:
        if attack in BLACK_BOX:
            results.append(black_box(estimator, attack, fit, select, evaluation, seed=seed))
        elif attack == "shadow_models":
            pool = shadow_pool(split, 2 * len(split.members))
            shadow = AttackData(x[pool], onehot(y[pool], nb_classes))
            template = probability_classifier(reinitialised(model, seed), target.input_shape, nb_classes)
            results.append(shadow_models(estimator, template, shadow, select, evaluation, answer=shadow_answer,
                                         seed=seed))
        elif attack == "rule_based" and not defended:  # names are checked by ARTFamily
            results.append(rule_based(target, select, evaluation, seed=seed))
    return results


