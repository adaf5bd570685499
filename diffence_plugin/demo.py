"""The embedded demo: an overfit digits classifier, attacked with and without Diffence, on a CPU.

Every number is measured in the run: the target and the DDPM are trained here, the attacker fits on its own
known records, and all attacks are scored on disjoint evaluation records.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .data import MembershipSplit, digits_images, membership_split
from .defense import Diffence
from .evaluate import AttackResult, accuracy, best_attack, threshold_attacks
from .models import DigitsMLP, train_classifier
from .memguard import MemGuard
from .outputs import Candidates
from .pipeline import DefensePipeline
from .report import write_report
from .train_diffusion import train_diffusion


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and seeds of the demo; the defaults run in a few minutes on 2 CPU cores."""

    members: int = 300
    defender: int = 75
    attacker: int = 75
    evaluation: int = 150
    target_epochs: int = 200
    ddpm_steps: int = 400
    ddpm_max_timestep: int = 100
    n: int = 50
    t: int = 100  # the paper's T = 40 barely perturbs 8x8 digits with 17 grey levels; see docs/results.md
    k: int = 10
    seed: int = 0
    art_attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf", "shadow_models", "rule_based")
    memguard: bool = True  # rows for MemGuard alone and Diffence (scenario 1) + MemGuard


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


ROLES = ("defender_members", "defender_nonmembers", "attacker_members", "attacker_nonmembers",
         "eval_members", "eval_nonmembers")


def diffence_scenarios(model, reconstructor, x: np.ndarray, split: MembershipSplit, s: DemoSettings,
                       progress: bool, max_batch: int = 1024, autocast: torch.dtype | None = None,
                       ) -> tuple[dict[str, Diffence], dict[str, Candidates], dict[str, dict]]:
    """Reconstruct every role's inputs once, calibrate Scenarios 1 and 2, and release all three scenarios."""
    base = Diffence(reconstructor, n=s.n, t=s.t, k=s.k, scenario=3, seed=s.seed, output="logits", progress=progress,
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


def run_demo(settings: DemoSettings = DemoSettings(), out_dir: str | Path = "diffence-demo",
             progress: bool = True, log=print) -> dict:
    """Train, defend, attack; write ``results.json`` and plots to ``out_dir``; return the results."""
    from diffence_plugin.adapters import art_attacks

    start = time.perf_counter()
    s = settings
    torch.manual_seed(s.seed)
    x, y = digits_images()
    split = membership_split(len(x), s.members, s.defender, s.attacker, s.evaluation, seed=s.seed)
    nb_classes = 10

    log(f"[1/5] training the target MLP on {s.members} members ({s.target_epochs} epochs)")
    model = train_classifier(DigitsMLP(nb_classes), x[split.members], y[split.members], epochs=s.target_epochs,
                             seed=s.seed, progress=progress)
    log(f"[2/5] training the DDPM on the same members ({s.ddpm_steps} steps, t <= {s.ddpm_max_timestep})")
    reconstructor = train_diffusion(torch.from_numpy(x[split.members]), steps=s.ddpm_steps,
                                    max_timestep=s.ddpm_max_timestep, seed=s.seed, progress=progress)

    roles = ROLES
    log(f"[3/5] reconstructing {sum(len(getattr(split, r)) for r in roles)} inputs x {s.n} (t={s.t}, k={s.k})")
    defenses, cands, diffence_released = diffence_scenarios(model, reconstructor, x, split, s, progress)

    log("[4/5] attacking the undefended model, Scenarios 1, 2, 3 and MemGuard")
    released = {"undefended": undefended_releases(model, x, split), **diffence_released}
    memguards = {}
    if s.memguard:
        log("      fitting MemGuard on the defender's records (alone, and after Diffence scenario 1)")
        for name, source in (("memguard", "undefended"), ("diffence+memguard", "scenario_1")):
            guard = MemGuard(seed=s.seed).fit_probabilities(torch.from_numpy(released[source]["defender_members"]),
                                                           torch.from_numpy(released[source]["defender_nonmembers"]))
            released[name] = {r: guard(None, torch.from_numpy(released[source][r])).numpy() for r in roles}
            memguards[name] = guard
    kept = labels_kept(released)

    target = art_attacks.probability_classifier(model, (1, 8, 8), nb_classes)
    pipelines = {f"scenario_{k}": DefensePipeline(pre=[defenses[str(k)]]) for k in (1, 2, 3)}
    if s.memguard:
        pipelines["memguard"] = DefensePipeline(post=[memguards["memguard"]])
        pipelines["diffence+memguard"] = DefensePipeline(pre=[defenses["1"]], post=[memguards["diffence+memguard"]])
    rows = attack_rows(released, kept, x, y, split, target, pipelines, s.art_attacks, s.seed, log)

    log("[5/5] writing results")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "settings": asdict(s),
        "calibration": {k: asdict(defenses[k].calibration) for k in ("1", "2")},
        "rows": [dict(defense=r.defense, train_accuracy=r.train_accuracy, test_accuracy=r.test_accuracy,
                      labels_kept=r.labels_kept, best=r.best.to_dict(), attacks=[a.to_dict() for a in r.attacks])
                 for r in rows],
        "seconds": time.perf_counter() - start,
        "torch": torch.__version__,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, released, {r: y[getattr(split, r)] for r in roles}, out)
    return results
