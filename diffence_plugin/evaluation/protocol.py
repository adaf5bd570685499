"""The membership protocol: who knows which records.

Members train the target; the defender calibrates on its own known members and non-members, the attacker
fits every attack on its own known records, and every figure is scored on evaluation records that neither
of them used. The six role sets are pairwise disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROLES = ("defender_members", "defender_nonmembers", "attacker_members", "attacker_nonmembers",
         "eval_members", "eval_nonmembers")


@dataclass(frozen=True)
class MembershipSplit:
    """Index sets of a membership experiment. Members train the target; everything else never does.

    The defender calibrates on ``defender_*``, the attacker fits on ``attacker_*``, and every attack is
    scored on ``eval_*``; the six sets are pairwise disjoint. ``members`` is the whole training set.
    """

    members: np.ndarray
    defender_members: np.ndarray
    defender_nonmembers: np.ndarray
    attacker_members: np.ndarray
    attacker_nonmembers: np.ndarray
    eval_members: np.ndarray
    eval_nonmembers: np.ndarray


def membership_split(total: int, members: int, defender: int, attacker: int, evaluation: int,
                     seed: int = 0) -> MembershipSplit:
    """Split ``range(total)`` at random: ``members`` training samples, and per role that many of each kind."""
    if members + defender + attacker + evaluation > total:
        raise ValueError(f"split needs {members + defender + attacker + evaluation} non-overlapping samples "
                         f"({members} members + {defender + attacker + evaluation} non-members), have {total}")
    if defender + attacker + evaluation > members:
        raise ValueError(f"the member roles need {defender + attacker + evaluation} members, only {members} exist")
    order = np.random.default_rng(seed).permutation(total)
    mem, non = order[:members], order[members:]
    a, b = defender, defender + attacker
    c = b + evaluation
    return MembershipSplit(members=mem, defender_members=mem[:a], defender_nonmembers=non[:a],
                           attacker_members=mem[a:b], attacker_nonmembers=non[a:b],
                           eval_members=mem[b:c], eval_nonmembers=non[b:c])
