"""Wrap an ART classifier with Diffence and run ART's membership-inference attack against it.

Trains a small digits classifier and a small DDPM on its members (about a minute on a CPU), then compares
the attack's AUC with and without the defense. Run: python examples/art_quickstart.py
"""

import numpy as np
import torch
from art.attacks.inference.membership_inference import MembershipInferenceBlackBox
from diffence_plugin.adapters.art import DiffenceClassifier
from diffence_plugin.adapters.art_attacks import probability_classifier
from sklearn.metrics import roc_auc_score

from diffence_plugin import Diffence, train_diffusion
from diffence_plugin.attacks.roles import membership_split
from diffence_plugin.data import DigitsMLP, digits_images
from diffence_plugin.defenses.training import train_classifier


def main(epochs: int = 200, ddpm_steps: int = 400, n: int = 50) -> dict[str, float]:
    """Train, defend, attack; print and return the attack's AUC per estimator."""
    torch.manual_seed(0)
    x, y = digits_images()
    split = membership_split(len(x), members=300, defender=75, attacker=75, evaluation=150, seed=0)
    model = train_classifier(DigitsMLP(), x[split.members], y[split.members], epochs=epochs)
    art_model = probability_classifier(model, input_shape=(1, 8, 8), nb_classes=10)

    ddpm = train_diffusion(torch.from_numpy(x[split.members]), steps=ddpm_steps, max_timestep=100)
    diffence = Diffence(ddpm, n=n, t=100, k=10, scenario=1, levels=16, progress=True)
    diffence.calibrate(model, torch.from_numpy(x[split.defender_members]),
                       torch.from_numpy(x[split.defender_nonmembers]))
    defended = DiffenceClassifier(art_model, diffence)

    onehot = np.eye(10, dtype=np.float32)
    aucs = {}
    for name, estimator in [("undefended", art_model), ("diffence", defended)]:
        attack = MembershipInferenceBlackBox(estimator, input_type="loss", attack_model_type="rf")
        attack.fit(x[split.attacker_members], onehot[y[split.attacker_members]],
                   x[split.attacker_nonmembers], onehot[y[split.attacker_nonmembers]])
        # ART 1.20 returns the member probability as (S, 1); older versions gave (S, 2)
        scores = [attack.infer(x[s], onehot[y[s]], probabilities=True).reshape(len(s), -1)[:, -1]
                  for s in (split.eval_members, split.eval_nonmembers)]
        aucs[name] = roc_auc_score(np.r_[np.ones(len(scores[0])), np.zeros(len(scores[1]))], np.r_[scores[0], scores[1]])
        accuracy = (estimator.predict(x[split.eval_nonmembers]).argmax(1) == y[split.eval_nonmembers]).mean()
        print(f"{name:>10}: attack AUC {aucs[name]:.3f}, test accuracy {accuracy:.4f}")
    return aucs


if __name__ == "__main__":
    main()
