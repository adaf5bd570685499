"""Run the attack suite against a set of defenses, with the roles of ``protocol``.

Shared by every recipe: release each role's records through every defense once, then score the threshold
attacks and ART's attacks on those releases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.models import DigitsMLP
from ..defense import Diffence
from ..outputs import Candidates
from .metrics import AttackResult, accuracy, best_attack, threshold_attacks
from .protocol import ROLES, MembershipSplit


@dataclass
class DefenseRow:
    """One line of the results table."""

    defense: str
    train_accuracy: float
    test_accuracy: float
    best: AttackResult
    attacks: list[AttackResult] = field(default_factory=list)
    labels_kept: float = 1.0


def _onehot(y: np.ndarray, k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[y]


def diffence_scenarios(model, reconstructor, x: np.ndarray, split: MembershipSplit, *, n: int, t: int, k: int,
                       seed: int, progress: bool, max_batch: int = 1024, autocast: torch.dtype | None = None,
                       ) -> tuple[dict[str, Diffence], dict[str, Candidates], dict[str, dict]]:
    """Reconstruct every role's inputs once, calibrate Scenarios 1 and 2, and release all three scenarios."""
    base = Diffence(reconstructor, n=n, t=t, k=k, scenario=3, seed=seed, output="logits", progress=progress,
                    max_batch=max_batch, autocast=autocast)
    cands = {r: base.candidates(model, torch.from_numpy(x[getattr(split, r)])) for r in ROLES}
    defenses = {"3": base}
    for scenario in (1, 2):
        d = base.with_config(scenario=scenario)
        d.calibrate_from_candidates(cands["defender_members"], cands["defender_nonmembers"] if scenario == 1 else None)
        defenses[str(scenario)] = d
    released = {f"scenario_{k}": {r: defenses[k].release(cands[r]).probs.numpy() for r in ROLES} for k in "123"}
    return defenses, cands, released


def undefended_releases(model, x: np.ndarray, split: MembershipSplit, device: torch.device | str = "cpu") -> dict:
    """Softmax of the undefended model on every role's inputs, in float64 (``released["undefended"]``)."""
    with torch.no_grad():
        return {r: torch.softmax(model(torch.from_numpy(x[getattr(split, r)]).to(device)).double(), -1).cpu().numpy()
                for r in ROLES}


def labels_kept(released: dict[str, dict]) -> dict[str, float]:
    """Per defense, the share of released vectors whose argmax equals the undefended one."""
    labels = {r: released["undefended"][r].argmax(-1) for r in ROLES}
    return {name: float(np.mean(np.concatenate([probs[r].argmax(-1) == labels[r] for r in ROLES])))
            for name, probs in released.items()}


def attack_rows(released: dict[str, dict], kept: dict[str, float], x: np.ndarray, y: np.ndarray,
                split: MembershipSplit, target, pipelines: dict, attacks: tuple[str, ...], seed: int,
                log=print) -> list[DefenseRow]:
    """Run the attack suite on each defense's released probabilities (``released[name][role]``).

    ``target`` is the undefended ART classifier; ``pipelines[name]`` the defense behind the released vectors,
    exposed to ART through ``DefendedClassifier`` (its loss follows the released vectors); a name without a
    pipeline is attacked through ``target`` itself.
    """
    from diffence_plugin.adapters import art_attacks
    from diffence_plugin.adapters.art import DefendedClassifier

    roles, nb_classes = ROLES, target.nb_classes
    shadow_idx = np.setdiff1d(np.arange(len(x)), np.concatenate([split.members] + [getattr(split, r) for r in roles]))
    shadow = art_attacks.AttackData(x[shadow_idx], _onehot(y[shadow_idx], nb_classes))
    rows = []
    for name, probs in released.items():
        data = {r: art_attacks.AttackData(x[getattr(split, r)], _onehot(y[getattr(split, r)], nb_classes), probs[r])
                for r in roles}
        known = (data["attacker_members"], data["attacker_nonmembers"])
        evaluation = (data["eval_members"], data["eval_nonmembers"])
        results = threshold_attacks(*[(probs[r], y[getattr(split, r)]) for r in roles[2:]])
        estimator = DefendedClassifier(target, pipelines[name]) if name in pipelines else target
        for attack in attacks:
            if attack in art_attacks.BLACK_BOX:
                results.append(art_attacks.black_box(estimator, attack, known, evaluation, seed=seed))
            elif attack == "shadow_models":
                template = art_attacks.probability_classifier(DigitsMLP(nb_classes), target.input_shape, nb_classes)
                results.append(art_attacks.shadow_models(estimator, template, shadow, evaluation, seed=seed))
            elif attack == "rule_based" and name not in pipelines:
                results.append(art_attacks.rule_based(target, evaluation))
        rows.append(DefenseRow(
            defense=name,
            train_accuracy=accuracy(probs["eval_members"], y[split.eval_members]),
            test_accuracy=accuracy(probs["eval_nonmembers"], y[split.eval_nonmembers]),
            best=best_attack(results), attacks=results, labels_kept=kept[name]))
        log(f"      {name}: best-attack AUC {rows[-1].best.auc:.3f}")
    return rows
