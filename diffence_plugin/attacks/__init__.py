"""Attacks: who knows which records (``roles``), the attacker's view of each defense (``attacker``,
``releases``), the attacks (``threshold``, ``lira``, ``rmia``, ``adaptive``, ``diffusion_attacks``) and their
reference models (``references``), one interface over them (``families``), and how they are scored
(``metrics``: AUC and TPR at low FPR with bootstrap intervals; ``scoring``; ``utility``: ECE, NLL, Brier).
"""

from diffence_plugin.attacks.lira import LiRA, logit_confidence
from diffence_plugin.attacks.metrics import (
           AttackResult,
           accuracy,
           auc_difference,
           choose_best,
           membership_metrics,
)
from diffence_plugin.attacks.references import (
           ReferenceModels,
           ReferenceRecipe,
           train_references,
)
from diffence_plugin.attacks.rmia import RMIA, fit_offline_a
from diffence_plugin.attacks.roles import ROLES, MembershipSplit, membership_split
from diffence_plugin.attacks.threshold import THRESHOLD_ATTACKS, threshold_attacks

__all__ = ["RMIA", "ROLES", "THRESHOLD_ATTACKS", "AttackResult", "LiRA", "MembershipSplit", "ReferenceModels",
           "ReferenceRecipe", "accuracy", "auc_difference", "choose_best", "fit_offline_a", "logit_confidence",
           "membership_metrics", "membership_split", "threshold_attacks", "train_references"]
