"""Evaluation wing: the audit engine, the membership protocol, metrics with confidence intervals, attacks
and reports.

- ``plan``, ``plan_checks``: a run's validated plan (what ``diffence evaluate`` reads; the presets);
- ``prepare``, ``engine``: the engine's stages and ``run_plan``, behind ``demo``, ``evaluate`` and ``reproduce``;
- ``utility``: ECE, NLL and Brier score of released vectors;
- ``protocol``: who knows which records (roles and splits);
- ``metrics``: AUC, accuracy, TPR at low FPR with bootstrap intervals; the attacker's choice of best attack;
- ``threshold``: Song & Mittal's threshold attacks with per-class thresholds;
- ``lira``, ``rmia``: the reference-model attacks; ``references``: training and caching reference models;
- ``releases``: what each defense releases; ``attacker``: the attacker's reference answers and its copies of
  the defenses; ``attacks``: the built-in attacks' scoring; ``families``: the one attack interface and every attack on one release (``evaluate_defense``); ``report``: tables, plots
  and the HTML report.
"""

from .lira import LiRA, logit_confidence
from .metrics import AttackResult, accuracy, auc_difference, choose_best, membership_metrics
from .protocol import ROLES, MembershipSplit, membership_split
from .references import ReferenceModels, ReferenceRecipe, train_references
from .rmia import RMIA, fit_offline_a
from .threshold import THRESHOLD_ATTACKS, threshold_attacks

__all__ = ["RMIA", "ROLES", "THRESHOLD_ATTACKS", "AttackResult", "LiRA", "MembershipSplit", "ReferenceModels",
           "ReferenceRecipe", "accuracy", "auc_difference", "choose_best", "fit_offline_a", "logit_confidence",
           "membership_metrics", "membership_split", "threshold_attacks", "train_references"]
