"""Evaluation wing: the membership protocol, metrics with confidence intervals, attacks, reports and the runner."""

from .metrics import AttackResult, accuracy, best_attack, membership_metrics, threshold_attacks
from .protocol import ROLES, MembershipSplit, membership_split

__all__ = ["ROLES", "AttackResult", "MembershipSplit", "accuracy", "best_attack", "membership_metrics",
           "membership_split", "threshold_attacks"]
