"""Every attack against every defense, with the roles of ``protocol``: the pieces the audit engine runs.

Data flow: each defense releases a probability vector for every record of every role once; the attacker's
reference models answer on the attacker's own universe of records through the same kind of defense
(defense-aware) or undefended; then the threshold attacks, LiRA, RMIA and ART's attacks score the
releases. Attacks are fitted on the attacker's first half of known records, the best attack is chosen on
its second half, and every figure is measured on the evaluation records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ..data.models import reinitialised
from ..defense import Diffence
from ..outputs import Candidates
from .lira import LIRA_VARIANTS, logit_confidence
from .metrics import (AttackResult, accuracy, auc_difference, choose_best, fit_threshold, membership_metrics,
                      tpr_difference)
from .protocol import POPULATION, ROLES, MembershipSplit
from .references import ReferenceModels
from .rmia import RMIA, fit_offline_a
from .threshold import threshold_attacks
from .utility import utility_metrics

Released = dict[str, np.ndarray]  # role -> (S, K) float64 released probabilities


def roles_of(split: MembershipSplit) -> tuple[str, ...]:
    """The roles a split queries: the six of ``ROLES``, plus the population records when it has them."""
    return ROLES + ((POPULATION,) if len(split.population) else ())


def onehot(y: np.ndarray, k: int) -> np.ndarray:
    """(S, K) float32 one-hot labels, the form ART's attacks expect."""
    return np.eye(k, dtype=np.float32)[y]


@dataclass
class DefenseRow:
    """One line of the results table: the attacker's chosen attack, LiRA and RMIA, and every attack."""

    defense: str
    train_accuracy: float
    test_accuracy: float
    best: AttackResult
    attacks: list[AttackResult] = field(default_factory=list)
    labels_kept: float = 1.0
    reference_aware: bool | None = None  # None: no reference-model attacks were run
    spread: dict | None = None  # over the defense's selection draws: mean and sd per figure
    change: dict | None = None  # AUC change from the undefended row, with a paired interval
    utility: dict | None = None  # ECE, NLL, Brier of the released vectors on evaluation non-members / members

    def attack(self, prefix: str) -> AttackResult | None:
        """The attack of this family (e.g. "lira", "rmia") the attacker would pick on its selection records."""
        family = [a for a in self.attacks if a.attack.startswith(prefix)]
        return choose_best(family) if family else None

    def to_dict(self, scores: bool = True) -> dict:
        lira, rmia, floor = self.attack("lira"), self.attack("rmia"), self.attack("correctness")
        return {"defense": self.defense, "train_accuracy": self.train_accuracy, "test_accuracy": self.test_accuracy,
                "labels_kept": self.labels_kept, "reference_aware": self.reference_aware,
                "best": self.best.to_dict(scores=False), "lira": lira.to_dict(scores=False) if lira else None,
                "rmia": rmia.to_dict(scores=False) if rmia else None,
                "correctness": floor.to_dict(scores=False) if floor else None,
                "spread": self.spread, "change": self.change, "utility": self.utility,
                "attacks": [a.to_dict(scores=scores) for a in self.attacks]}


# ---- releases ---------------------------------------------------------------------------------------------

def release_all(defense: Diffence, cands: dict[str, Candidates]) -> Released:
    """Every role's released vectors (float64) under one selection rule."""
    return {r: defense.release(c).probs.numpy() for r, c in cands.items()}


def undefended_releases(model, x: np.ndarray, split: MembershipSplit, device: torch.device | str = "cpu") -> Released:
    """Softmax of the undefended model on every role's inputs, in float64 (``released["undefended"]``)."""
    with torch.no_grad():
        return {r: torch.softmax(model(torch.from_numpy(x[getattr(split, r)]).to(device)).double(), -1).cpu().numpy()
                for r in roles_of(split)}


def hflip(x: np.ndarray) -> np.ndarray:
    """Horizontally flipped copies of (S, C, H, W) images: LiRA's second augmented query for natural images."""
    return np.ascontiguousarray(x[..., ::-1])


def labels_kept(released: dict[str, Released]) -> dict[str, float]:
    """Per defense, the share of released vectors whose argmax equals the undefended one."""
    base = released["undefended"]
    return {name: float(np.mean(np.concatenate([probs[r].argmax(-1) == base[r].argmax(-1) for r in base])))
            for name, probs in released.items()}


# ---- the attacker's reference models ------------------------------------------------------------------------

def attacker_universe(split: MembershipSplit, size: int) -> np.ndarray:
    """The records the attacker's references train on and answer for: its known records, the evaluation
    candidates, its population records, then its own pool up to ``size`` (about twice the target's
    training set, so that a random half matches it)."""
    core = np.concatenate([split.attacker_members, split.attacker_nonmembers, split.eval_members,
                           split.eval_nonmembers, split.population])
    fill = split.attacker_pool[: max(0, size - len(core))]
    return np.concatenate([core, fill]).astype(np.int64)


@dataclass
class AttackerView:
    """What the attacker's reference models release on its universe under one kind of defense."""

    probs: np.ndarray  # (R, U, K) float64
    in_mask: np.ndarray  # (R, U) bool
    universe: np.ndarray  # (U,) dataset indices
    aware: bool  # whether the references answer through the same kind of defense as the target

    def __post_init__(self) -> None:
        self._lookup = {int(i): p for p, i in enumerate(self.universe)}

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


# ---- attacks ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sets:
    """The record sets every attack uses: fit, select (attacker's halves) and evaluation, plus population."""

    fit: tuple[np.ndarray, np.ndarray]
    select: tuple[np.ndarray, np.ndarray]
    evaluation: tuple[np.ndarray, np.ndarray]
    population: np.ndarray

    @classmethod
    def of(cls, split: MembershipSplit) -> "Sets":
        fit, select = split.attacker_halves()
        return cls(fit, select, (split.eval_members, split.eval_nonmembers), split.population)


def _by_index(released: Released, split: MembershipSplit) -> dict[int, np.ndarray]:
    """Map each queried dataset index to its released vector."""
    table = {}
    for role, probs in released.items():
        for i, row in zip(getattr(split, role), probs):
            table[int(i)] = row
    return table


def _gather(table: dict[int, np.ndarray], indices: np.ndarray) -> np.ndarray:
    return np.stack([table[int(i)] for i in indices])


def reference_attacks(released: Released, y: np.ndarray, split: MembershipSplit, view: AttackerView, *,
                      flipped: tuple[Released, AttackerView] | None = None, seed: int = 0,
                      bootstrap: int = 1000) -> list[AttackResult]:
    """LiRA (four variants) and RMIA (online, and offline with ``a`` fitted on the attacker's references).

    ``flipped`` holds the same releases and reference answers for horizontally flipped queries (``hflip``);
    with it, four more LiRA variants (``..._flip``) add the two views' log-likelihood ratios, as the LiRA
    paper does for natural images. The attacker chooses among all variants on its own records.
    """
    sets = Sets.of(split)
    table = _by_index(released, split)
    flip_table = _by_index(flipped[0], split) if flipped is not None else None
    results = []

    def lira_scores(lira, indices, both):
        pos = view.positions(indices)
        target = logit_confidence(_gather(table, indices), y[indices])
        refs = logit_confidence(view.probs[:, pos], y[indices])
        if both:
            fpos = flipped[1].positions(indices)
            target = np.stack([target, logit_confidence(_gather(flip_table, indices), y[indices])], axis=-1)
            refs = np.stack([refs, logit_confidence(flipped[1].probs[:, fpos], y[indices])], axis=-1)
        return lira.score(target, refs, view.in_mask[:, pos])

    for both in (False, True) if flipped is not None else (False,):
        for lira in LIRA_VARIANTS:
            results.append(scored_attack(lira.name + ("_flip" if both else ""),
                                   lambda idx, lira=lira, both=both: lira_scores(lira, idx, both), sets, seed,
                                   bootstrap))

    if len(sets.population):
        zpos = view.positions(sets.population)
        target_z = _true_probs(_gather(table, sets.population), y[sets.population])
        refs_z = _true_probs(view.probs[:, zpos], y[sets.population])
        in_z = view.in_mask[:, zpos]
        own = view.positions(np.concatenate([*sets.fit, *sets.select]))
        own_y = y[view.universe[own]]
        a = fit_offline_a(_true_probs(view.probs[:, own], own_y), view.in_mask[:, own], refs_z, in_z)
        for rmia in (RMIA(), RMIA(offline_a=a)):
            def rmia_scores(indices, rmia=rmia):
                pos = view.positions(indices)
                return rmia.score(_true_probs(_gather(table, indices), y[indices]),
                                  _true_probs(view.probs[:, pos], y[indices]), view.in_mask[:, pos],
                                  target_z, refs_z, in_z)
            results.append(scored_attack(rmia.name, rmia_scores, sets, seed, bootstrap))
    return results


def _true_probs(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(..., S) probability of each record's true label from (..., S, K) probabilities."""
    return probs[..., np.arange(labels.size), labels]


def scored_attack(name: str, score, sets: Sets, seed: int = 0, bootstrap: int = 1000) -> AttackResult:
    """Threshold from the fit half, selection AUC from the select half, metrics on the evaluation records.

    ``score`` is called once, on all six record sets together: a score that pools over its candidates (LiRA's
    global variance) must not be pooled over members and non-members separately, or the two sides are
    scored on different scales.
    """
    groups = [*sets.fit, *sets.select, *sets.evaluation]
    scores = np.asarray(score(np.concatenate(groups)))
    if scores.shape != (sum(len(g) for g in groups),):
        raise ValueError(f"attack {name!r} returned scores of shape {scores.shape} for {sum(map(len, groups))} records")
    fm, fn, sm, sn, em, en = np.split(scores, np.cumsum([len(g) for g in groups])[:-1])
    selection = float(roc_auc_score(np.r_[np.ones(sm.size), np.zeros(sn.size)], np.r_[sm, sn]))
    return membership_metrics(name, em, en, fit_threshold(fm, fn), selection_auc=selection, seed=seed,
                              bootstrap=bootstrap)


def threshold_suite(released: Released, y: np.ndarray, split: MembershipSplit, *, seed: int = 0,
                    bootstrap: int = 1000) -> list[AttackResult]:
    """The threshold attacks on one defense's releases (fit / select / evaluation as in ``Sets``)."""
    sets, table = Sets.of(split), _by_index(released, split)
    pairs = [tuple((_gather(table, idx), y[idx]) for idx in pair) for pair in (sets.fit, sets.select, sets.evaluation)]
    return threshold_attacks(*pairs, seed=seed, bootstrap=bootstrap)


def art_suite(released: Released, x: np.ndarray, y: np.ndarray, split: MembershipSplit, estimator, target, model,
              attacks: tuple[str, ...], defended: bool, shadow_answer=None, seed: int = 0) -> list[AttackResult]:
    """ART's attacks. ``estimator`` answers through the defense; ``target`` is the undefended ART classifier.

    The shadow-model attack trains shadows of the target's own architecture on ``shadow_pool``; they answer
    through ``shadow_answer`` (e.g. a ``ShadowDiffence``: defense-aware) or, when it is None, undefended.
    The rule-based attack sees labels only, which Diffence keeps: it is run on undefended rows.
    """
    from ..adapters import art_attacks

    sets, table = Sets.of(split), _by_index(released, split)
    nb_classes = target.nb_classes

    def data(idx):
        return art_attacks.AttackData(x[idx], onehot(y[idx], nb_classes), _gather(table, idx))

    fit, select, evaluation = ((data(a), data(b)) for a, b in (sets.fit, sets.select, sets.evaluation))
    results = []
    for attack in attacks:
        if attack in art_attacks.BLACK_BOX:
            results.append(art_attacks.black_box(estimator, attack, fit, select, evaluation, seed=seed))
        elif attack == "shadow_models":
            pool = shadow_pool(split, 2 * len(split.members))
            shadow = art_attacks.AttackData(x[pool], onehot(y[pool], nb_classes))
            template = art_attacks.probability_classifier(reinitialised(model, seed), target.input_shape,
                                                          nb_classes)
            results.append(art_attacks.shadow_models(estimator, template, shadow, select, evaluation,
                                                     answer=shadow_answer, seed=seed))
        elif attack == "rule_based" and not defended:
            results.append(art_attacks.rule_based(target, select, evaluation, seed=seed))
        elif attack not in ("rule_based",):
            raise ValueError(f"unknown ART attack {attack!r}; choose from {sorted(art_attacks.BLACK_BOX)}, "
                             "shadow_models, rule_based")
    return results


def evaluate_defense(name: str, released: Released, x: np.ndarray, y: np.ndarray, split: MembershipSplit, *,
                     view: AttackerView | None = None, flipped: tuple[Released, AttackerView] | None = None,
                     art: dict | None = None, kept: float = 1.0, seed: int = 0, bootstrap: int = 1000,
                     threshold: bool = True) -> DefenseRow:
    """All attacks on one defense's releases; ``art`` holds ``art_suite``'s keyword arguments (or None), and
    ``flipped`` the releases and reference answers on flipped queries (see ``reference_attacks``);
    ``threshold`` False leaves out the threshold attacks (the label-only floor among them)."""
    results = threshold_suite(released, y, split, seed=seed, bootstrap=bootstrap) if threshold else []
    if view is not None:
        results += reference_attacks(released, y, split, view, flipped=flipped, seed=seed, bootstrap=bootstrap)
    if art is not None:
        results += art_suite(released, x, y, split, seed=seed, **art)
    utility = {side: utility_metrics(released[role], y[getattr(split, role)], seed=seed, bootstrap=bootstrap)
               for side, role in (("nonmembers", "eval_nonmembers"), ("members", "eval_members"))}
    return DefenseRow(defense=name, train_accuracy=accuracy(released["eval_members"], y[split.eval_members]),
                      test_accuracy=accuracy(released["eval_nonmembers"], y[split.eval_nonmembers]),
                      best=choose_best(results), attacks=results, labels_kept=kept,
                      reference_aware=None if view is None else view.aware, utility=utility)


def compare_to(row: DefenseRow, baseline: DefenseRow, seed: int = 0) -> dict:
    """AUC change of the chosen best attack and of LiRA from ``baseline``, and the change of LiRA's TPR at 1%
    FPR (where 1% is resolvable), with paired bootstrap intervals."""
    out = {}
    for key, pick in (("best", lambda r: r.best), ("lira", lambda r: r.attack("lira"))):
        after, before = pick(row), pick(baseline)
        if after is None or before is None:
            continue
        diff, ci = auc_difference(after, before, seed=seed)
        out[key] = {"auc_change": diff, "ci": list(ci), "attack": after.attack, "baseline_attack": before.attack}
        if key == "lira":
            tpr = tpr_difference(after, before, 0.01, seed=seed)
            if tpr is not None:
                out[key]["tpr@0.01_change"], out[key]["tpr_ci"] = tpr[0], list(tpr[1])
    return out


def selection_spread(defense: Diffence, cands: dict[str, Candidates], y: np.ndarray, split: MembershipSplit,
                     view: AttackerView | None, draws: int, seed: int = 0, post=None) -> dict:
    """Mean and sd, over ``draws`` fresh selection draws (reconstructions fixed), of the chosen attack's AUC
    and of LiRA's AUC and TPR at 1% FPR (threshold, LiRA and RMIA attacks; no intervals inside).

    ``post(role, probs)``, if given, is applied to every release, for a post-processing defense stacked on
    Diffence (e.g. HAMP's output modification).
    """
    figures: dict[str, list[float]] = {"best_auc": [], "lira_auc": [], "lira_tpr@0.01": []}
    for draw in range(draws):
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, draw]).generate_state(1)[0]))
        released = release_all(defense, {r: c.redraw(gen) for r, c in cands.items()})
        if post is not None:
            released = {r: post(r, p) for r, p in released.items()}
        row = evaluate_defense("draw", released, None, y, split, view=view, seed=seed, bootstrap=0)
        figures["best_auc"].append(row.best.auc)
        lira = row.attack("lira")
        if lira is not None:
            figures["lira_auc"].append(lira.auc)
            if lira.tpr.get(0.01) is not None:
                figures["lira_tpr@0.01"].append(lira.tpr[0.01])
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "draws": len(v)}
            for k, v in figures.items() if v}
