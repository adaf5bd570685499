"""The attacker's side of the audit: its universe of records, its reference models' answers on them
(``AttackerView``), plain (defense-unaware) or through its own copy of the defense (defense-aware: its own
Diffence, its own post-inference stages), and ART's shadow models answering through its own Diffence."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from diffence_plugin.attacks.references import ReferenceModels
from diffence_plugin.attacks.roles import MembershipSplit
from diffence_plugin.defense import Diffence
from diffence_plugin.defenses.labels_only import LabelsOnly
from diffence_plugin.outputs import Candidates


def attacker_universe(split: MembershipSplit, size: int) -> np.ndarray:
    """The records the attacker's references train on and answer for: its known records, the evaluation
    candidates, its population records, the canaries, then its own pool up to ``size`` (about twice the
    target's training set, so that a random half matches it)."""
    core = np.concatenate([split.attacker_members, split.attacker_nonmembers, split.eval_members,
                           split.eval_nonmembers, split.population, split.canaries])
    fill = split.attacker_pool[: max(0, size - len(core))]
    return np.concatenate([core, fill]).astype(np.int64)


def top1(probs: np.ndarray) -> np.ndarray:
    """(S, K) released vectors reduced to one-hot top-1 labels (``labels_only``), in float64."""
    return LabelsOnly()(None, torch.from_numpy(np.asarray(probs, dtype=np.float64))).numpy()


@dataclass
class AttackerView:
    """What the attacker's reference models release on its universe under one kind of defense."""

    probs: np.ndarray  # (R, U, K) float64
    in_mask: np.ndarray  # (R, U) bool
    universe: np.ndarray  # (U,) dataset indices
    aware: bool  # whether the references answer through the same kind of defense as the target

    def __post_init__(self) -> None:
        self._lookup = {int(i): p for p, i in enumerate(self.universe)}

    def labels(self) -> "AttackerView":
        """The same answers reduced to their top-1 labels (one-hot, through the ``labels_only`` defense): what
        the references release if only labels are read."""
        probs = top1(self.probs.reshape(-1, self.probs.shape[-1])).reshape(self.probs.shape)
        return AttackerView(probs, self.in_mask, self.universe, self.aware)

    def positions(self, indices: np.ndarray) -> np.ndarray:
        """Positions in the universe of the dataset ``indices``."""
        try:
            return np.array([self._lookup[int(i)] for i in indices], dtype=np.int64)
        except KeyError as exc:
            raise ValueError(f"record {exc} is not in the attacker's universe") from exc


def undefended_view(references: ReferenceModels, x: np.ndarray, universe: np.ndarray) -> AttackerView:
    """References answering with their plain softmax (the defense-unaware attacker)."""
    xs = torch.from_numpy(x[universe])
    with torch.no_grad():
        probs = np.stack([torch.softmax(m(xs).double(), -1).numpy() for m in references.models])
    return AttackerView(probs, references.in_mask, universe, aware=False)


def post_view(view: AttackerView, post: list, x: np.ndarray, split: MembershipSplit, seed: int, *,
              upstream_copied: bool | None = None, models: list | None = None) -> AttackerView | None:
    """The attacker's copy of post-inference defenses applied to ``view``'s answers, stage by stage.

    A stateless stage (``stateless = True``: no fit, no randomness, e.g. labels only) is applied as it is. A
    stage with ``attacker_copy(seed)`` (MemGuard, HAMP's output) is rebuilt with the same public settings and
    the attacker's seed for each reference: bound to the reference model (``models``) if it needs one, and
    fitted on the population records the reference did and did not train on if it learns, as the defender
    fits on its known members and non-members. The result is defense-aware when what comes
    before the post stages is copied too (``upstream_copied``; default ``view.aware``; pass True for the
    undefended view of a pipeline with no pre-inference stage). None when a stage can be copied neither way.
    """
    if not post or not all(getattr(s, "stateless", False) or hasattr(s, "attacker_copy") for s in post):
        return None
    xs = torch.from_numpy(x[view.universe])
    pop = np.isin(view.universe, split.population)
    probs = []
    for r, (answers, mask) in enumerate(zip(view.probs, view.in_mask)):
        out = torch.from_numpy(answers)
        for i, stage in enumerate(post):
            if not getattr(stage, "stateless", False):
                stage = stage.attacker_copy(int(np.random.SeedSequence([seed, r, i]).generate_state(1)[0]))
                if hasattr(stage, "bind"):
                    if models is None:
                        return None
                    stage.bind(models[r])
                if hasattr(stage, "fit_probabilities"):
                    stage.fit_probabilities(out[torch.from_numpy(pop & mask)], out[torch.from_numpy(pop & ~mask)])
            out = stage(xs, out).double()
        probs.append(out.numpy())
    aware = view.aware if upstream_copied is None else upstream_copied
    return AttackerView(np.stack(probs), view.in_mask, view.universe, aware=aware)


def reference_candidates(references: ReferenceModels, attacker: Diffence, x: np.ndarray, universe: np.ndarray,
                         images: torch.Tensor) -> list[Candidates]:
    """Each reference's candidates on the attacker's reconstructions of its universe: computed once, shared
    by the views of every scenario (they differ only in selection)."""
    xs = torch.from_numpy(x[universe])
    return [attacker.candidates_from_reconstructions(model, xs, images) for model in references.models]


def diffence_view(references: ReferenceModels, attacker: Diffence, x: np.ndarray, universe: np.ndarray,
                  images: torch.Tensor, split: MembershipSplit,
                  candidates: list[Candidates] | None = None) -> AttackerView:
    """References answering through the attacker's own Diffence (its DDPM, the target's n, t, k and scenario).

    The attacker reconstructs its universe once (``images``); each reference classifies the reconstructions
    (or ``candidates`` from ``reference_candidates`` are reused). For scenarios 1 and 2 each reference is
    calibrated on the population records it did and did not train on, as the defender calibrates on its known
    members and non-members.
    """
    if candidates is None:
        candidates = reference_candidates(references, attacker, x, universe, images)
    pop = np.isin(universe, split.population)
    probs = []
    for cands, mask in zip(candidates, references.in_mask):
        defense = attacker
        if attacker.config.needs_calibration:
            defense = attacker.with_config()
            known_out = cands.subset(torch.from_numpy(pop & ~mask))
            defense.calibrate_from_candidates(cands.subset(torch.from_numpy(pop & mask)),
                                              known_out if attacker.config.scenario == 1 else None)
        probs.append(defense.release(cands).probs.numpy())
    return AttackerView(np.stack(probs), references.in_mask, universe, aware=True)


def shadow_pool(split: MembershipSplit, size: int) -> np.ndarray:
    """The records ART's shadow models train on: the first ``size`` of the attacker's pool (about twice the
    target's training set, so that each shadow, trained on a random half, matches the target's size)."""
    return split.attacker_pool[:size]


class ShadowDiffence:
    """ART's shadow models answering through the attacker's own Diffence (defense-aware shadows).

    The attacker reconstructs its shadow records once (``images``, from ``attacker.reconstructions``); each
    shadow classifies the reconstructions of the records it is queried on and selects with the target's
    scenario. For scenarios 1 and 2 each shadow is calibrated on the records it trained on (and, for
    scenario 1, on ``outside``: records no shadow trained on), as the defender calibrates on known records.
    """

    def __init__(self, attacker: Diffence, x: np.ndarray, images: torch.Tensor, outside: np.ndarray | None = None,
                 outside_images: torch.Tensor | None = None) -> None:
        if attacker.config.scenario == 1 and outside is None:
            raise ValueError("scenario 1 calibrates on known non-members: pass outside records")
        self.attacker = attacker.with_config(output="probabilities")  # ART's shadows end in a softmax
        self.x, self.images = x, images
        self.outside, self.outside_images = outside, outside_images
        self._rows = {row.tobytes(): i for i, row in enumerate(np.ascontiguousarray(x))}
        self._calibrated: dict[int, Diffence] = {}

    @classmethod
    def for_split(cls, attacker: Diffence, x: np.ndarray, split: MembershipSplit, pool_images: torch.Tensor,
                  universe: np.ndarray, universe_images: torch.Tensor) -> "ShadowDiffence":
        """Shadows over ``shadow_pool`` (reconstructed as ``pool_images``); scenario 1 calibrates with the
        population records (no shadow trains on them), whose reconstructions are among ``universe_images``."""
        pool = shadow_pool(split, 2 * len(split.members))
        if len(pool_images) != len(pool):
            raise ValueError(f"{len(pool_images)} reconstructions for {len(pool)} shadow records")
        lookup = {int(i): p for p, i in enumerate(universe)}
        zpos = [lookup[int(i)] for i in split.population]
        return cls(attacker, x[pool], pool_images, x[split.population], universe_images[zpos])

    def _candidates(self, module, queries: np.ndarray) -> Candidates:
        try:
            pos = [self._rows[row.tobytes()] for row in np.ascontiguousarray(queries, dtype=self.x.dtype)]
        except KeyError:
            raise ValueError("a shadow model was queried on a record that was not reconstructed") from None
        return self.attacker.candidates_from_reconstructions(module, torch.from_numpy(self.x[pos]), self.images[pos])

    def __call__(self, module, queries: np.ndarray, trained_on: np.ndarray) -> np.ndarray:
        defense = self.attacker
        if defense.config.needs_calibration:
            if id(module) not in self._calibrated:
                defense = defense.with_config()
                outside = None
                if defense.config.scenario == 1:
                    outside = defense.candidates_from_reconstructions(module, torch.from_numpy(self.outside),
                                                                      self.outside_images)
                defense.calibrate_from_candidates(self._candidates(module, trained_on), outside)
                self._calibrated[id(module)] = defense
            defense = self._calibrated[id(module)]
        return defense.release(self._candidates(module, queries)).probs.numpy()
