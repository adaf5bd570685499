"""The one interface every membership attack sits behind, and the built-in families behind it.

An attack family declares what it needs (``Needs``: the attacker's reference models, population records, the
records themselves and an estimator, or labels only) and turns one defense's releases into attack results
(``run(context) -> list[AttackResult]``). The audit looks families up by name in the registry that
``diffence_register_attacks`` fills (``registry.get_attacks``): "threshold", "lira" and "rmia" are registered
by the built-in plugin, "art" by the ART adapter, and a plugin's object with ``score(released, labels)``
becomes a family of one attack (``ScoredFamily``). A family whose needs the run cannot meet is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from diffence_plugin.attacks.attacker import AttackerView, top1
from diffence_plugin.attacks.metrics import AttackResult, accuracy, choose_best
from diffence_plugin.attacks.releases import Released, release_all
from diffence_plugin.attacks.roles import MembershipSplit
from diffence_plugin.attacks.scoring import (
    DefenseRow,
    lira_attacks,
    plugin_suite,
    rmia_attacks,
    threshold_suite,
)
from diffence_plugin.attacks.utility import utility_metrics
from diffence_plugin.defense import Diffence
from diffence_plugin.outputs import Candidates

# families a plan turns on by their own keys, not [attacks].plugins
BUILTIN = ("threshold", "lira", "rmia", "labels", "art", "adaptive")
# those that need no estimator: rerun on each selection draw
SPREAD_FAMILIES = ("threshold", "lira", "rmia", "labels")


@dataclass(frozen=True)
class Needs:
    """What a family needs beyond the released vectors and the labels of the queried records."""

    references: bool = False  # the attacker's reference models (an ``AttackerView``: LiRA, RMIA)
    population: bool = False  # population records the attacker did not query for membership (RMIA's z)
    records: bool = False  # the records themselves and the defense to query (ART's estimator-based attacks)
    labels_only: bool = False  # only the released labels (so it says nothing new where labels are kept)


@dataclass
class Context:
    """Everything the attacks on one defense's releases may use; fields a run lacks are None."""

    released: Released
    y: np.ndarray
    split: MembershipSplit
    seed: int = 0
    bootstrap: int = 1000
    x: np.ndarray | None = None
    view: AttackerView | None = None  # the attacker's reference models' answers
    flipped: tuple[Released, AttackerView] | None = None  # the same on horizontally flipped queries
    pipeline: Any = None  # the defense behind ``released`` (answers ``pipeline(x)``); None: undefended
    model: Any = None  # the undefended target (a torch module)
    nb_classes: int | None = None
    shadow_answer: Any = None  # how the attacker's shadow models answer (a defense copy), or None

    def meets(self, needs: Needs) -> bool:
        """Whether this run can give a family what it needs."""
        if needs.references and self.view is None:
            return False
        if needs.population and not len(self.split.population):
            return False
        return not (needs.records and (self.x is None or self.model is None))


@runtime_checkable
class AttackFamily(Protocol):
    """A named group of membership attacks on released vectors."""

    name: str
    needs: Needs

    def run(self, context: Context) -> list[AttackResult]:
        """Every attack of the family on ``context.released``, under the audit's fit / select / evaluate protocol."""


class ThresholdFamily:
    """Loss, confidence, entropy, modified entropy and the label-only correctness floor (``threshold.py``)."""

    name, needs = "threshold", Needs()

    def run(self, context: Context) -> list[AttackResult]:
        return threshold_suite(context.released, context.y, context.split, seed=context.seed,
                               bootstrap=context.bootstrap)


class LiRAFamily:
    """LiRA's four variants (online/offline, global/per-example variance), and four more on flipped queries."""

    name, needs = "lira", Needs(references=True)

    def run(self, context: Context) -> list[AttackResult]:
        return lira_attacks(context.released, context.y, context.split, context.view, flipped=context.flipped,
                            seed=context.seed, bootstrap=context.bootstrap)


class RMIAFamily:
    """RMIA online, and offline with ``a`` fitted on the attacker's own references."""

    name, needs = "rmia", Needs(references=True, population=True)

    def run(self, context: Context) -> list[AttackResult]:
        return rmia_attacks(context.released, context.y, context.split, context.view, seed=context.seed,
                            bootstrap=context.bootstrap)


class LabelViewFamily:
    """LiRA's variants on the released labels alone: every release, and every reference answer, reduced to its
    one-hot top-1 (the ``labels_only`` defense), named ``labels_<variant>``.

    Every release shows its label, so what the label gives away is a floor for every row, and the attacker
    may choose it on its own records like any other attack. Without it a release that keeps every label but
    flattens the scores (HAMP's output modification) scored below "labels only" of the same run (LiRA 0.772
    against 0.805 on CIFAR-10, docs/results/cifar10-stacking.md). On a row that keeps every label these are the "labels only"
    row's LiRA attacks up to the references' own labels.
    """

    name, needs = "labels", Needs(references=True)

    def run(self, context: Context) -> list[AttackResult]:
        released = {role: top1(probs) for role, probs in context.released.items()}
        flipped = None
        if context.flipped is not None:
            flipped = ({role: top1(p) for role, p in context.flipped[0].items()}, context.flipped[1].labels())
        results = lira_attacks(released, context.y, context.split, context.view.labels(), flipped=flipped,
                               seed=context.seed, bootstrap=context.bootstrap)
        return [replace(r, attack=f"labels_{r.attack}") for r in results]


class ScoredFamily:
    """A plugin's attack with ``score(released, labels) -> (S,) scores`` (higher: member), as a family of one."""

    needs = Needs()

    def __init__(self, name: str, attack: Any) -> None:
        if not callable(getattr(attack, "score", None)):
            raise TypeError(f"attack {name!r} has neither run(context) nor score(released, labels)")
        self.name, self.attack = name, attack

    def run(self, context: Context) -> list[AttackResult]:
        return plugin_suite(context.released, context.y, context.split, {self.name: self.attack},
                            seed=context.seed, bootstrap=context.bootstrap)


def as_family(name: str, attack: Any) -> AttackFamily:
    """A registered attack object as a family: itself when it has ``run`` and ``needs``, else ``ScoredFamily``."""
    if callable(getattr(attack, "run", None)) and isinstance(getattr(attack, "needs", None), Needs):
        return attack
    return ScoredFamily(name, attack)


def run_families(families: list[AttackFamily], context: Context) -> list[AttackResult]:
    """Every family whose needs ``context`` meets, in order; their results together."""
    results: list[AttackResult] = []
    for family in families:
        if context.meets(family.needs):
            results += family.run(context)
    return results


def default_families() -> list[AttackFamily]:
    """The families that need no estimator: threshold, LiRA, RMIA and LiRA on the labels (the last three where
    references exist)."""
    return [ThresholdFamily(), LiRAFamily(), RMIAFamily(), LabelViewFamily()]


def plan_families(attacks: Any) -> list[AttackFamily]:
    """The families a plan's ``[attacks]`` section (``audit.plan.schema.AttacksSection``) turns on, built from the
    registry once per run: threshold, the plugins' attacks, LiRA, RMIA and LiRA on the labels (``references``
    > 0; the last unless ``labels`` is false), then ART's (``art``, by the ART adapter)."""
    from diffence_plugin.registry import get_attacks

    registry = get_attacks()
    names = (["threshold"] if attacks.threshold else []) + list(attacks.plugins)
    names += (["lira", "rmia"] + (["labels"] if attacks.labels else [])) if attacks.references else []
    families = [as_family(name, registry[name]()) for name in names]
    if attacks.art:
        families.append(as_family("art", registry["art"](attacks=tuple(attacks.art))))
    if attacks.adaptive:
        families.append(as_family("adaptive", registry["adaptive"](
            kinds=tuple(attacks.adaptive), copies=attacks.adaptive_copies, step=attacks.adaptive_step)))
    return families


def evaluate_defense(name: str, released: Released, x: np.ndarray | None, y: np.ndarray, split: MembershipSplit, *,
                     view: AttackerView | None = None, flipped: tuple[Released, AttackerView] | None = None,
                     families: list[AttackFamily] | None = None, kept: float = 1.0, seed: int = 0,
                     bootstrap: int = 1000, **context: Any) -> DefenseRow:
    """One defense's row: every family of ``families`` (default ``default_families``) whose needs this run
    meets, on ``released``, with the utility of what is released; ``context`` fills the rest of ``Context``
    (``pipeline``, ``model``, ``nb_classes``, ``shadow_answer``)."""
    families = default_families() if families is None else families
    results = run_families(families, Context(released, y, split, seed, bootstrap, x=x, view=view, flipped=flipped,
                                             **context))
    if not results:
        raise ValueError(f"no attack could run on {name!r}: the families {[f.name for f in families]} need "
                         f"{[f.needs for f in families]}")
    utility = {side: utility_metrics(released[role], y[getattr(split, role)], seed=seed, bootstrap=bootstrap)
               for side, role in (("nonmembers", "eval_nonmembers"), ("members", "eval_members"))}
    return DefenseRow(defense=name, train_accuracy=accuracy(released["eval_members"], y[split.eval_members]),
                      test_accuracy=accuracy(released["eval_nonmembers"], y[split.eval_nonmembers]),
                      best=choose_best(results), attacks=results, labels_kept=kept,
                      reference_aware=None if view is None else view.aware, utility=utility)


def selection_spread(defense: Diffence, cands: dict[str, Candidates], y: np.ndarray, split: MembershipSplit,
                     view: AttackerView | None, draws: int, seed: int = 0, post=None,
                     families: list[AttackFamily] | None = None) -> dict:
    """Mean and sd, over ``draws`` fresh selection draws (reconstructions fixed), of the chosen attack's AUC
    and of LiRA's AUC and TPR at 1% FPR (the attacks of ``families`` that need no estimator, default
    ``default_families``; no intervals inside).

    ``post(role, probs)``, if given, is applied to every release, for a post-processing defense stacked on
    Diffence (e.g. HAMP's output modification).
    """
    figures: dict[str, list[float]] = {"best_auc": [], "lira_auc": [], "lira_tpr@0.01": []}
    for draw in range(draws):
        gen = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, draw]).generate_state(1)[0]))
        released = release_all(defense, {r: c.redraw(gen) for r, c in cands.items()})
        if post is not None:
            released = {r: post(r, p) for r, p in released.items()}
        row = evaluate_defense("draw", released, None, y, split, view=view, families=families, seed=seed,
                               bootstrap=0)
        figures["best_auc"].append(row.best.auc)
        lira = row.attack("lira")
        if lira is not None:
            figures["lira_auc"].append(lira.auc)
            if lira.tpr.get(0.01) is not None:
                figures["lira_tpr@0.01"].append(lira.tpr[0.01])
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "draws": len(v)}
            for k, v in figures.items() if v}
