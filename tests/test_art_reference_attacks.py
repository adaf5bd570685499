"""LiRA and RMIA with ART's fit/infer face, against a real ART classifier and a defended one."""

from __future__ import annotations

import numpy as np
import pytest
from diffence_plugin.adapters import art_attacks
from diffence_plugin.adapters.art import DiffenceClassifier
from diffence_plugin.adapters.art_reference_attacks import LiRAAttack, RMIAAttack
from sklearn.metrics import roc_auc_score

from diffence_plugin import Diffence
from diffence_plugin.attacks import ReferenceRecipe, membership_split

from .conftest import make_reconstructor


@pytest.fixture(scope="module")
def setup(digits):
    x, y = digits
    split = membership_split(len(x), 200, 20, 20, 100, seed=0, population=100)
    recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=30, batch_size=64)
    model = recipe.train(x[split.members], y[split.members], 0)
    target = art_attacks.probability_classifier(model, (1, 8, 8), 10)
    candidates = np.concatenate([split.eval_members, split.eval_nonmembers])
    pool = np.concatenate([candidates, split.attacker_pool[:200]])
    return x, y, split, recipe, target, candidates, pool


def test_lira_fit_infer_separates_members_of_a_memorising_target(setup):
    x, y, split, recipe, target, candidates, pool = setup
    attack = LiRAAttack(target, recipe, references=4).fit(x[pool], y[pool])
    scores = attack.infer(x[candidates], y[candidates])
    truth = np.r_[np.ones(len(split.eval_members)), np.zeros(len(split.eval_nonmembers))]
    assert scores.shape == (len(candidates),)
    assert roc_auc_score(truth, scores) > 0.55  # 100 + 100 null records: 0.5 +- 0.04
    offline = LiRAAttack(target, recipe, references=4, online=False).fit(x[pool], y[pool])
    unseen = split.population[:5]
    assert np.isfinite(offline.infer(x[unseen], y[unseen])).all()  # offline needs no IN reference
    with pytest.raises(ValueError, match="online LiRA needs every inferred record"):
        attack.infer(x[unseen], y[unseen])


def test_rmia_fit_infer_and_a_defended_target(setup):
    x, y, split, recipe, target, candidates, pool = setup
    truth = np.r_[np.ones(len(split.eval_members)), np.zeros(len(split.eval_nonmembers))]
    for offline in (False, True):
        attack = RMIAAttack(target, recipe, references=2, offline=offline)
        attack.fit(x[pool], y[pool], x[split.population], y[split.population])
        scores = attack.infer(x[candidates], y[candidates])
        assert ((0 <= scores) & (scores <= 1)).all() and roc_auc_score(truth, scores) > 0.55
    defended = DiffenceClassifier(target, Diffence(make_reconstructor(), n=2, t=20, k=10, scenario=3, seed=1))
    attack = LiRAAttack(defended, recipe, references=2).fit(x[pool], y[pool])
    assert attack.infer(x[candidates[:10]], y[candidates[:10]]).shape == (10,)
    with pytest.raises(ValueError, match="fit"):
        RMIAAttack(target, recipe).infer(x[:2], y[:2])
