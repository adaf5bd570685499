"""DualMD and DistillMD against a single DDPM: the diffusion model's own leakage, Diffence's protection of
the classifier with each reconstructor, and the training cost.

Every reconstructor is trained on the target's members (the defender's data) with the same steps per model:
the single DDPM on all members, DualMD's two models on disjoint halves (twice the cost), DistillMD's student
on all members from DualMD's teachers (the teachers' cost plus one model). The diffusion model's leakage is
measured by ``evaluation.diffusion_attacks.diffusion_audit`` (loss at each timestep and the attacker's best
timestep, loss trajectory, SecMI, reconstruction distance; fitted and chosen on the attacker's records,
scored on the evaluation records). With ``--classifier`` each reconstructor also protects the classifier,
through the audit engine with the reconstructor saved and named by ``[diffusion].path``: on digits the demo
preset's full audit (defense-aware LiRA/RMIA with the attacker's own DDPM, threshold and ART attacks); on
CIFAR-10, where that audit takes 38 minutes per reconstructor on 2 cores, a lighter plan of the CPU preset
(``classifier_audit``: threshold attacks, LiRA and RMIA with reference models that answer undefended,
1,000 + 1,000 evaluation records, smaller defender and attacker sets).

    python benchmarks/bench_dual.py --dataset digits --out runs/dual-digits --classifier
    python benchmarks/bench_dual.py --dataset cifar10 --data ../shared/data/cifar10 --out runs/dual-cifar --classifier
    python benchmarks/bench_dual.py --table runs/dual-digits/dual.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from diffence_plugin import DualReconstructor, train_diffusion
from diffence_plugin.attacks.diffusion_attacks import diffusion_audit
from diffence_plugin.audit.plan import load_preset
from diffence_plugin.audit.run import run_plan
from diffence_plugin.audit.stages.prepare import build_split, load_data, unet_config
from diffence_plugin.diffusion import train_distilled, train_dual
from diffence_plugin.attacks.metrics import format_change
from diffence_plugin.audit.machine import machine


def echo(message: str) -> None:
    print(message, flush=True)


ATTACKS = ("loss (best t)", "loss_trajectory", "secmi", "reconstruction", "best")


def setting(dataset: str, data: str | None, steps: int | None, seed: int):
    """(plan, x, y, split, the DDPM settings, timesteps) of the demo's digits or the CPU preset's CIFAR-10
    (at t = 60: the study's choice, no calibration search), read from the shipped presets."""
    common = [f"run.seed={seed}", f"roles.seed={seed}", "run.progress=false"]
    if dataset == "digits":
        plan = load_preset("demo", common + ([f"diffusion.steps={steps}"] if steps else []))
        timesteps = (10, 20, 40, 60, 100)
    else:
        plan = load_preset("cifar10-cpu", common + [f"data.folder={json.dumps(data)}", "diffusion.t_choices=[]",
                                                    "diffence.t=60", f"diffusion.steps={steps or 500}"])
        timesteps = (10, 20, 40, 60)  # CIFAR: 500 steps, about 3.5 minutes per model here
    x, y, _ = load_data(plan)
    split = build_split(plan, len(x))
    d, o = plan.diffusion, plan.defenses[0].options["diffence"]
    exp = SimpleNamespace(unet_config=unet_config(plan, x), ddpm_steps=d.steps, ddpm_batch_size=d.batch_size,
                          ddpm_max_timestep=d.max_timestep, n=o["n"], t=o["t"], k=o["k"], levels=o["levels"])
    return plan, x, y, split, exp, timesteps


def train_all(members: torch.Tensor, exp, seed: int) -> tuple[dict, dict]:
    """The four reconstructors and each one's training seconds (DistillMD's include its teachers')."""
    common = dict(unet_config=exp.unet_config, steps=exp.ddpm_steps, batch_size=exp.ddpm_batch_size,
                  max_timestep=exp.ddpm_max_timestep, progress=False)
    seconds, models = {}, {}
    clock = time.perf_counter()
    models["single"] = train_diffusion(members, seed=seed, **common)
    seconds["single"] = time.perf_counter() - clock
    clock = time.perf_counter()
    models["dual"] = train_dual(members, split_seed=seed, seed=seed, **common)
    seconds["dual"] = seconds["dual_keyed"] = time.perf_counter() - clock
    models["dual_keyed"] = DualReconstructor(*models["dual"].models, mode="keyed")
    clock = time.perf_counter()
    models["distill"] = train_distilled(members, models["dual"], seed=seed, **common)
    seconds["distill"] = seconds["dual"] + time.perf_counter() - clock
    return models, seconds


def classifier_audit(models: dict, plan: dict, out: Path, aware: bool) -> dict:
    """The engine's audit of the classifier with each reconstructor (saved, then named by ``[diffusion].path``),
    Scenarios 1 and 3. ``aware`` False is the lighter audit a CPU affords on CIFAR-10: 4 references that answer
    undefended, threshold attacks, LiRA and RMIA, 250 defender / attacker / population records, 1,000 + 1,000
    evaluation records."""
    light = [] if aware else ["attacks.aware=false", "attacks.art=[]", "attacks.references=4",
                              "attacks.selection_draws=0", "roles.defender=250", "roles.attacker=250",
                              "roles.population=250", "roles.evaluation=1000"]
    rows = {}
    for name, model in models.items():
        if name == "dual_keyed":
            continue
        folder = out / f"ddpm-{name}"
        model.save_pretrained(folder)
        clock = time.perf_counter()
        overrides = [f"diffusion.path={json.dumps(str(folder))}", f"run.out={json.dumps(str(out / f'classifier-{name}'))}",
                     "run.overwrite=true", *light]
        run = plan_with(plan, overrides, ("scenario_1", "scenario_3"))
        res = run_plan(run, log=lambda *_: None).results
        rows[name] = [{k: row[k] for k in ("defense", "best", "lira", "change", "labels_kept")} for row in res["rows"]]
        echo(f"  {name}: scenario 1 {rows[name][1]['best']['attack']} AUC {rows[name][1]['best']['auc']:.3f} "
             f"(undefended {rows[name][0]['best']['auc']:.3f}), {time.perf_counter() - clock:.0f} s")
    return rows


def plan_with(plan: dict, overrides: list[str], labels: tuple[str, ...]) -> dict:
    """``plan``'s preset again with ``overrides`` and only the defenses ``labels``."""
    from diffence_plugin.audit.plan import (
        apply_overrides,
        preset_path,
        read_config_file,
        resolve,
    )

    raw = apply_overrides(read_config_file(preset_path(plan.name)), [])
    raw["defenses"] = [d for d in raw["defenses"] if d.get("label") in labels]
    keep = [f"run.seed={plan.run.seed}", f"roles.seed={plan.roles.seed}", "run.progress=false",
            f"diffusion.steps={plan.diffusion.steps}"]
    if plan.data.folder:
        keep += [f"data.folder={json.dumps(plan.data.folder)}", "diffusion.t_choices=[]", "diffence.t=60"]
    return resolve(apply_overrides(raw, keep + overrides), Path.cwd())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--out", default="runs/dual")
    parser.add_argument("--steps", type=int, default=None, help="DDPM steps per model (default: the setting's)")
    parser.add_argument("--repeats", type=int, default=4, help="noise draws per record for the loss attacks")
    parser.add_argument("--classifier", action="store_true", help="also run the classifier audit per reconstructor")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="only print the tables of a dual.json")
    args = parser.parse_args()
    if args.table:
        print_tables(json.loads(Path(args.table).read_text()))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan, x, y, split, exp, timesteps = setting(args.dataset, args.data, args.steps, args.seed)
    members = torch.from_numpy(x[split.members])
    echo(f"training single, DualMD and DistillMD DDPMs ({exp.ddpm_steps} steps per model) on {len(members)} members")
    models, seconds = train_all(members, exp, args.seed)
    images = {r: torch.from_numpy(x[getattr(split, r)]) for r in
              ("attacker_members", "attacker_nonmembers", "eval_members", "eval_nonmembers")}
    result = {"settings": {**vars(args), "ddpm_steps": exp.ddpm_steps, "t": exp.t, "k": exp.k,
                           "timesteps": list(timesteps), "members": len(members),
                           "unet_config": exp.unet_config, "max_timestep": exp.ddpm_max_timestep},
              "training_seconds": seconds, "diffusion": {}, "classifier": {}, "machine": machine()}
    for name, model in models.items():
        clock = time.perf_counter()
        audit = diffusion_audit(model, (images["attacker_members"], images["attacker_nonmembers"]),
                                (images["eval_members"], images["eval_nonmembers"]), timesteps=timesteps, t=exp.t,
                                k=exp.k, repeats=args.repeats, n=4, seed=args.seed)
        result["diffusion"][name] = {attack: r.to_dict(scores=False) for attack, r in audit.items()}
        echo(f"  {name}: best attack {audit['best'].attack} AUC {audit['best'].auc:.3f} "
             f"({time.perf_counter() - clock:.0f} s)")
    if args.classifier:
        aware = args.dataset != "cifar10"  # on CIFAR-10 the full audit takes 38 minutes per reconstructor
        echo(f"classifier audit ({'defense-aware' if aware else 'defense-unaware references'}) per reconstructor")
        result["classifier_protocol"] = "aware" if aware else "unaware"
        result["classifier"] = classifier_audit(models, plan, out, aware)
    result["seconds"] = time.perf_counter() - start
    (out / "dual.json").write_text(json.dumps(result, indent=2, default=str))
    print_tables(result)


def _ci(r: dict, key: str) -> str:
    lo, hi = r["ci"][key] if r["ci"].get(key) else (float("nan"),) * 2
    if key == "auc":
        return f"{r['auc']:.3f} [{lo:.3f}, {hi:.3f}]"
    value = r["tpr"].get("0.01")
    return "n/a" if value is None else f"{100 * value:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def print_tables(result: dict) -> None:
    s = result["settings"]
    print(f"\n{s['dataset']}: {s['members']} members, {s['ddpm_steps']} DDPM steps per model, t <= "
          f"{s['max_timestep']}; Diffence t = {s['t']}, k = {s['k']}; {result['seconds']:.0f} s in all\n")
    print("| reconstructor | training s | " + " | ".join(f"{a} AUC" for a in ATTACKS) + " | best: attack, TPR@1%FPR |")
    print("|---|---|" + "---|" * len(ATTACKS) + "---|")
    for name, audit in result["diffusion"].items():
        cells = [_ci(audit[a], "auc") for a in ATTACKS]
        best = audit["best"]
        print(f"| {name} | {result['training_seconds'][name]:.0f} | " + " | ".join(cells)
              + f" | {best['attack']}, {_ci(best, 'tpr@0.01')} |")
    if result["classifier"]:
        print("\n| reconstructor | defense | chosen attack AUC | change [95% CI] | LiRA AUC | LiRA change [95% CI] | "
              "labels kept |")
        print("|---|---|---|---|---|---|---|")
        for name, rows in result["classifier"].items():
            for row in rows:
                change = row["change"] or {}
                best, lira = change.get("best"), change.get("lira")
                print(f"| {name} | {row['defense']} | {row['best']['attack']} {row['best']['auc']:.3f} | "
                      f"{format_change(best, '')} | {(row['lira'] or {}).get('auc', float('nan')):.3f} | {format_change(lira, '')} | "
                      f"{row['labels_kept']:.3f} |")


if __name__ == "__main__":
    main()
