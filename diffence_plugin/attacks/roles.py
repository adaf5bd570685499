"""The membership protocol: who knows which records.

Members train the target; the defender calibrates on its own known members and non-members, the attacker
fits every attack on its own known records, and every figure is scored on evaluation records that neither
of them used. The six role sets are pairwise disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

ROLES = ("defender_members", "defender_nonmembers", "attacker_members", "attacker_nonmembers",
         "eval_members", "eval_nonmembers")
POPULATION = "population"  # the attacker's population records z (RMIA), released by the target like any query
CANARY_ROLES = ("canary_members", "canary_nonmembers")  # audited apart: the worst case, not the average one
CANARY_KINDS = ("flipped_labels", "shuffled_pixels")  # mislabelled records; out-of-distribution images
CANARY_WORDS = {"flipped_labels": "flipped-label", "shuffled_pixels": "pixel-shuffled"}  # in logs and reports
DIFFUSION_DATA = ("members", "public")  # what the DDPMs train on: the target's members, or ``public_data``


@dataclass(frozen=True)
class MembershipSplit:
    """Index sets of a membership experiment. Members train the target; everything else never does.

    The defender calibrates on ``defender_*``, the attacker fits on ``attacker_*``, and every attack is
    scored on ``eval_*``; the role sets are pairwise disjoint. ``members`` is the whole training set.
    ``population`` are non-members the attacker owns and queries (RMIA's z records); ``attacker_pool`` are
    the remaining non-members, the attacker's own data for its diffusion model and its reference models.
    ``canary_members`` and ``canary_nonmembers`` are records made maximally vulnerable (``flip_labels``),
    audited on their own (``canary_split``) and kept out of every other role. ``public`` are non-members set
    aside as unlabeled public data (``public_data``) for a diffusion model trained on more than the members.
    """

    members: np.ndarray
    defender_members: np.ndarray
    defender_nonmembers: np.ndarray
    attacker_members: np.ndarray
    attacker_nonmembers: np.ndarray
    eval_members: np.ndarray
    eval_nonmembers: np.ndarray
    population: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    attacker_pool: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    canary_members: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    canary_nonmembers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    public: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def public_data(self) -> np.ndarray:
        """Every record that is no evaluation, canary or attacker record (known, population, pool): the
        defender's known records, the members in no other role and the ``public`` non-members, sorted. What
        a diffusion model trained on "public" data sees (a stand-in for the paper's Table 5, a CIFAR-10 model
        trained on more images than the classifier); it never holds a record any figure is scored on."""
        taken = np.concatenate([self.eval_members, self.eval_nonmembers, self.canaries, self.attacker_members,
                                self.attacker_nonmembers, self.population, self.attacker_pool])
        mine = np.concatenate([self.members, self.defender_nonmembers, self.public])
        return np.setdiff1d(mine, taken).astype(np.int64)

    @property
    def canaries(self) -> np.ndarray:
        """Every canary record, members first."""
        return np.concatenate([self.canary_members, self.canary_nonmembers]).astype(np.int64)

    def canary_split(self) -> "MembershipSplit":
        """This split with the canaries as its evaluation records: every attack then scores the canaries alone,
        fitted and chosen on the attacker's records as for the average case."""
        if not len(self.canary_members):
            raise ValueError("this split has no canaries ([roles].canaries = 0)")
        empty = np.zeros(0, dtype=np.int64)
        return replace(self, eval_members=self.canary_members, eval_nonmembers=self.canary_nonmembers,
                       canary_members=empty, canary_nonmembers=empty)

    def attacker_halves(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """The attacker's known records split in two: (members, non-members) to fit attacks on, and
        (members, non-members) to choose the best attack on. Neither half is ever an evaluation record."""
        m, n = self.attacker_members, self.attacker_nonmembers
        if len(m) < 2 or len(n) < 2:
            raise ValueError("the attacker needs at least 2 known members and 2 known non-members")
        return (m[: len(m) // 2], n[: len(n) // 2]), (m[len(m) // 2 :], n[len(n) // 2 :])


def membership_split(total: int, members: int, defender: int, attacker: int, evaluation: int,
                     seed: int = 0, population: int = 0, canaries: int = 0, public: int = 0) -> MembershipSplit:
    """Split ``range(total)`` at random: ``members`` training samples, and per role that many of each kind.

    ``population`` further non-members become the attacker's population records, ``canaries`` members and as
    many non-members the canaries, ``public`` non-members public data; the non-members left over form
    ``attacker_pool``.
    """
    need_n = defender + attacker + evaluation + population + canaries + public
    if members + need_n > total:
        raise ValueError(f"split needs {members + need_n} non-overlapping samples ({members} members + {need_n} "
                         f"non-members), have {total}")
    if defender + attacker + evaluation + canaries > members:
        raise ValueError(f"the member roles need {defender + attacker + evaluation + canaries} members, only "
                         f"{members} exist")
    order = np.random.default_rng(seed).permutation(total)
    return _assign(order[:members], order[:members], order[members:], defender, attacker, evaluation, population,
                   canaries, public)


def _assign(members: np.ndarray, mem: np.ndarray, non: np.ndarray, defender: int, attacker: int, evaluation: int,
            population: int, canaries: int = 0, public: int = 0) -> MembershipSplit:
    """Roles in order from shuffled members ``mem`` and non-members ``non``; the rest of ``non`` is the pool.
    The canaries, then the public records, come after every other role, so a split without them is the same
    as before they existed."""
    a, b = defender, defender + attacker
    c = b + evaluation
    d = c + population
    e = d + canaries
    return MembershipSplit(members=members, defender_members=mem[:a], defender_nonmembers=non[:a],
                           attacker_members=mem[a:b], attacker_nonmembers=non[a:b],
                           eval_members=mem[b:c], eval_nonmembers=non[b:c], population=non[c:d],
                           attacker_pool=non[e + public :], canary_members=mem[c : c + canaries],
                           canary_nonmembers=non[d:e], public=non[e : e + public])


def roles_from_members(members: np.ndarray, total: int, defender: int, attacker: int, evaluation: int,
                       population: int = 0, seed: int = 0, canaries: int = 0, public: int = 0) -> MembershipSplit:
    """Roles for a target trained on the given ``members`` (indices into ``range(total)``); every other record
    is a non-member. Roles are drawn at random with ``seed``."""
    members = np.asarray(members, dtype=np.int64)
    nonmembers = np.setdiff1d(np.arange(total), members)
    need_m = defender + attacker + evaluation + canaries
    need_n = defender + attacker + evaluation + population + canaries + public
    if need_m > len(members):
        raise ValueError(f"the member roles need {need_m} members, only {len(members)} exist")
    if need_n > len(nonmembers):
        raise ValueError(f"the non-member roles need {need_n} non-members, only {len(nonmembers)} exist")
    rng = np.random.default_rng(seed)
    return _assign(members, rng.permutation(members), rng.permutation(nonmembers), defender, attacker, evaluation,
                   population, canaries, public)


def shuffle_pixels(x: np.ndarray, indices: np.ndarray, seed: int) -> np.ndarray:
    """A copy of ``x`` in which each image of ``indices`` has its pixel positions permuted (each its own seeded
    permutation; a pixel's channels move together): out-of-distribution images with the data's own colours,
    range and grid but none of its structure, the second kind of canary (Aerni, Zhang & Tramer, CCS 2024).
    Their labels are kept, which no image content supports any more, so a model can only memorise them."""
    out = np.array(x, copy=True)
    if not len(indices):
        return out
    rng = np.random.default_rng(seed)
    flat = out.reshape(len(out), out.shape[1], -1)
    for i in indices:
        flat[i] = flat[i][:, rng.permutation(flat.shape[-1])]
    return out


def flip_labels(y: np.ndarray, indices: np.ndarray, nb_classes: int, seed: int) -> np.ndarray:
    """A copy of ``y`` in which each record of ``indices`` carries another label, drawn uniformly among the
    ``nb_classes - 1`` wrong ones with ``seed``: mislabelled records, the canaries that stand in for the most
    vulnerable samples (Aerni, Zhang & Tramer, CCS 2024). The target and the attacker's references train on,
    and every attack scores, the flipped label."""
    if nb_classes < 2:
        raise ValueError(f"flipping a label needs at least 2 classes, got {nb_classes}")
    out = np.array(y, copy=True)
    shift = np.random.default_rng(seed).integers(1, nb_classes, size=len(indices))
    out[indices] = (out[indices] + shift) % nb_classes
    return out
