"""The embedded demo: an overfit digits classifier, attacked with and without Diffence, on a CPU.

Every number is measured in the run: the target and the DDPM are trained here, the attacker fits on its own
known records, and all attacks are scored on disjoint evaluation records.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..data import DigitsMLP, digits_images
from ..defenses import MemGuard
from ..defenses.training import train_classifier
from ..diffusion import train_diffusion
from ..evaluation.protocol import ROLES, membership_split
from ..evaluation.report import write_report
from ..evaluation.runner import attack_rows, diffence_scenarios, labels_kept, undefended_releases
from ..plugins import DefensePipeline


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
    defenses, cands, diffence_released = diffence_scenarios(model, reconstructor, x, split, n=s.n, t=s.t, k=s.k,
                                                             seed=s.seed, progress=progress)

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
