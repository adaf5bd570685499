"""What Diffence needs to protect a CIFAR-10 classifier on a 2-core CPU: DDPM size and training time, the
noise step T, the number of reconstructions N, and how much the target memorises.

For every DDPM (UNet: the tiny one at each ``--widths``, diffusers' CIFAR UNet at 1/divisor of its channels for
each ``--cifar-divisors``; x DDPM training steps, trained in stages on the target's members, so the
4,600-step model continues the 2,300-step one; fixed by steps, so a rerun on any machine trains the same models) and every T, the study reconstructs the defender's, the attacker's and the
evaluation records once at the largest N (smaller N use the first reconstructions), classifies them with
every target, calibrates Scenario 1 on the defender's records, and reports:
- the change of the best attack's AUC (threshold attacks, chosen on the attacker's held-out half) and of
  LiRA's AUC from the undefended target, with paired bootstrap 95% intervals;
- the share of reconstructions that keep the original label, for members and for non-members;
- the JS divergence calibration minimises, and which T calibration would choose (``Diffence.tune``).
LiRA here uses reference models that answer undefended (defense-unaware): the study varies the defense and
cannot afford the attacker's own DDPM per cell. The CPU preset's run has the defense-aware attacker.

    python benchmarks/study_cifar_cpu.py --data ../shared/data/cifar10 --out runs/study
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from diffence_plugin import Diffence, train_diffusion
from diffence_plugin.attacks.families import evaluate_defense
from diffence_plugin.attacks.releases import release_all, roles_of, undefended_releases
from diffence_plugin.attacks.scoring import compare_to
from diffence_plugin.audit.plan import load_preset
from diffence_plugin.audit.run import run_stages
from diffence_plugin.randomness import experiment_seed
from diffence_plugin.reconstruct import cifar_unet_config, tiny_unet_config
from diffence_plugin.report import format_change, machine
from diffence_plugin.select import label_matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/cifar10")
    parser.add_argument("--out", default="runs/study")
    parser.add_argument("--members", type=int, default=2500)
    parser.add_argument("--defender", type=int, default=250)
    parser.add_argument("--attacker", type=int, default=250)
    parser.add_argument("--evaluation", type=int, default=500)
    parser.add_argument("--epochs", type=int, nargs="+", default=[30, 6], help="target epochs: how much it memorises")
    parser.add_argument("--lr", type=float, default=1e-3, help="the target's Adam rate (the CPU preset: 2e-3)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                        help="the target's rate schedule (the CPU preset: cosine, which memorises)")
    parser.add_argument("--widths", type=int, nargs="*", default=[16], help="tiny UNet widths")
    parser.add_argument("--cifar-divisors", type=int, nargs="*", default=[],
                        help="diffusers' CIFAR UNet at 1/divisor of its channels (8: 0.56 M parameters)")
    parser.add_argument("--steps", type=int, nargs="+", default=[2300], help="cumulative DDPM training stages (steps)")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="also stop each stage after this many minutes (not reproducible on another machine)")
    parser.add_argument("--t", type=int, nargs="+", default=[20, 40, 60, 100])
    parser.add_argument("--n", type=int, nargs="+", default=[8])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--references", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", help="only print the table (and redraw the plot) of a study.json")
    args = parser.parse_args()
    if args.table:
        result = json.loads(Path(args.table).read_text())
        plot(result["rows"], Path(args.table).with_name("study_auc_drop.png"))
        print_table(result)
        return
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    targets, (x, y, split) = train_targets(args, out, start)
    roles = roles_of(split)

    rows = []
    unets = {f"w{w}": tiny_unet_config(32, 3, width=w) for w in args.widths}
    unets.update({f"cifar-1/{d}": cifar_unet_config(d) for d in args.cifar_divisors})
    for name, unet in unets.items():
        for stage in sorted(args.steps):
            budget = args.budget_minutes * 60 if args.budget_minutes else None
            ddpm = train_diffusion(torch.from_numpy(x[split.members]), unet_config=unet, steps=stage,
                                   batch_size=64, max_timestep=max(args.t), seed=args.seed, progress=False,
                                   max_seconds=budget, checkpoint=out / f"ddpm-{name.replace('/', '-')}.pt",
                                   checkpoint_every=1_000_000)
            steps = ddpm.training["steps"]
            for t in args.t:
                clock = time.perf_counter()
                defense = Diffence(ddpm, n=max(args.n), t=t, k=args.k, scenario=1, seed=experiment_seed(args.seed),
                                   output="logits", key="quantised")
                inputs = {r: torch.from_numpy(x[getattr(split, r)]) for r in roles}
                images = {r: defense.reconstructions(q) for r, q in inputs.items()}
                recon_s = time.perf_counter() - clock
                for epochs, target in targets.items():
                    cell = dict(unet=name, stage_steps=stage, ddpm_steps=steps, t=t, epochs=epochs,
                                reconstruct_s=recon_s, inputs=sum(len(v) for v in inputs.values()))
                    rows += score_cell(defense, target, inputs, images, (x, y, split), args, cell, start)
                del images
                (out / "study.json").write_text(json.dumps({"args": vars(args), "rows": rows, "partial": True,
                                                             "machine": machine()}, indent=2, default=float))
    for epochs in args.epochs:  # which T calibration would choose, per DDPM and target (at the largest N)
        for name in unets:
            for stage in args.steps:
                cell = [r for r in rows if (r["epochs"], r["unet"], r["stage_steps"], r["n"]) ==
                        (epochs, name, stage, max(args.n))]
                if cell:
                    chosen = min(cell, key=lambda r: r["js"])
                    for r in cell:
                        r["chosen_by_calibration"] = r is chosen
    result = {"args": vars(args), "rows": rows, "seconds": time.perf_counter() - start, "machine": machine(),
              "targets": {e: {"train_acc": t["train_acc"], "test_acc": t["test_acc"],
                              "undefended_best_auc": t["base"].best.auc,
                              "undefended_lira_auc": t["base"].attack("lira").auc if t["view"] else None}
                          for e, t in targets.items()}}
    (out / "study.json").write_text(json.dumps(result, indent=2, default=float))
    plot(rows, out / "study_auc_drop.png")
    print_table(result)
    print(f"done in {result['seconds']:.0f} s")


def score_cell(defense: Diffence, target: dict, inputs: dict, images: dict, data: tuple, args, cell: dict,
               start: float) -> list[dict]:
    """One DDPM, T and target: Scenario 1 calibrated and attacked at every N (the first N reconstructions)."""
    x, y, split = data
    roles = list(inputs)
    cands = {r: defense.candidates_from_reconstructions(target["model"], inputs[r], images[r]) for r in roles}
    match = {r: float(label_matches(c.original_log_probs, c.candidate_log_probs).double().mean())
             for r, c in cands.items()}
    rows = []
    for n in args.n:
        d = defense.with_config(n=n)
        sub = {r: c.first(n) for r, c in cands.items()}
        cal = d.calibrate_from_candidates(sub["defender_members"], sub["defender_nonmembers"])
        row = evaluate_defense(f"s1 t={cell['t']} n={n}", release_all(d, sub), x, y, split, view=target["view"],
                               seed=args.seed)
        change = compare_to(row, target["base"], seed=args.seed)
        r = {**cell, "n": n, "train_acc": target["train_acc"], "test_acc": target["test_acc"],
             "undefended_best_auc": target["base"].best.auc, "best_auc": row.best.auc,
             "best_attack": row.best.attack, "best_change": change["best"], "lira_change": change.get("lira"),
             "label_match_members": match["eval_members"], "label_match_nonmembers": match["eval_nonmembers"],
             "js": cal.js_divergence, "js_undefended": cal.js_divergence_undefended}
        rows.append(r)
        print(f"{r['unet']} {r['ddpm_steps']} DDPM steps t={r['t']} n={n} epochs={r['epochs']}: best "
              f"{format_change(r['best_change'])}, LiRA {format_change(r['lira_change'])}"
              f", match m/n {r['label_match_members']:.2f}/{r['label_match_nonmembers']:.2f}, "
              f"JS {r['js']:.4f} (undefended {r['js_undefended']:.4f}), {time.perf_counter() - start:.0f} s",
              flush=True)
    return rows


def train_targets(args: argparse.Namespace, out: Path, start: float) -> tuple[dict, tuple]:
    """Per target epoch count: the engine's target, the undefended row and the references' view; and the
    data and split (the same for every epoch count: they depend on the seed only)."""
    targets, data = {}, None
    for epochs in args.epochs:
        staged = run_stages(target_plan(args, epochs, out), log=lambda line: print(line, flush=True))
        prep = staged.prep
        data = (prep.x, prep.y, prep.split)
        view = staged.armed.views.get("", {}).get("undefended")
        base_row = evaluate_defense("undefended", undefended_releases(prep.model, prep.x, prep.split), prep.x,
                                    prep.y, prep.split, view=view, seed=args.seed)
        train_acc, test_acc = prep.target_accuracy["train"], prep.target_accuracy["test"]
        targets[epochs] = dict(model=prep.model, view=view, base=base_row, train_acc=train_acc, test_acc=test_acc)
        print(f"target {epochs} epochs: train {train_acc:.3f} test {test_acc:.3f}, undefended best "
              f"{base_row.best.attack} AUC {base_row.best.auc:.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    return targets, data


def target_plan(args: argparse.Namespace, epochs: int, out: Path) -> dict:
    """The CPU preset at the study's sizes with the target trained for ``epochs``: the engine's first stages
    give the data, the split, the target and the attacker's references (undefended answers: ``aware`` off);
    labels only stands in for the defenses, so no DDPM is trained there (the study trains its own)."""
    overrides = [f"data.folder={json.dumps(str(Path(args.data).resolve()))}", f"members.count={args.members}",
                 f"roles.defender={args.defender}", f"roles.attacker={args.attacker}",
                 f"roles.evaluation={args.evaluation}", f"roles.population={args.defender}",
                 f"roles.seed={args.seed}", f"run.seed={args.seed}", f"target.train.epochs={epochs}",
                 f"target.train.lr={args.lr}", f"target.train.options.schedule={json.dumps(args.schedule)}",
                 f"attacks.references={args.references}", "attacks.aware=false", "attacks.art=[]",
                 "attacks.selection_draws=0", "diffusion.t_choices=[]", "run.progress=false",
                 f"run.out={json.dumps(str(out / f'engine-{epochs}'))}"]
    plan = load_preset("cifar10-cpu", overrides)
    plan["defenses"] = [d for d in plan["defenses"] if d["label"] == "labels_only"]
    return plan


def unet_of(row: dict) -> str:
    """The row's DDPM UNet ("w16": tiny, width 16; "cifar-1/8"); rows of older study.json files have a width."""
    return row.get("unet") or f"w{row['width']}"


def plot(rows: list[dict], path: Path) -> None:
    """AUC change of the best attack at the largest N against T (one line per DDPM and target) and, when the
    DDPM was trained in several stages, against its training steps (one line per T and target)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(r["n"] for r in rows)
    rows = [r for r in rows if r["n"] == n]
    panels = [axis for axis, key in (("t", "t"), ("steps", "ddpm_steps")) if len({r[key] for r in rows}) > 1] or ["t"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)

    def draw(ax, line_key, x_key, label):
        for key in sorted({line_key(r) for r in rows}):
            cell = sorted((r for r in rows if line_key(r) == key), key=lambda r: r[x_key])
            xs = [r[x_key] for r in cell]
            line, = ax.plot(xs, [r["best_change"]["auc_change"] for r in cell], marker="o", label=label(key))
            ax.fill_between(xs, [r["best_change"]["ci"][0] for r in cell], [r["best_change"]["ci"][1] for r in cell],
                            color=line.get_color(), alpha=0.15)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("best-attack AUC change (Scenario 1)")
        ax.legend(fontsize=7)

    for ax, panel in zip(axes[0], panels):
        if panel == "t":
            draw(ax, lambda r: (unet_of(r), r["ddpm_steps"], r["epochs"]), "t",
                 lambda k: f"DDPM {k[0]}, {k[1]} steps; target {k[2]} epochs")
            ax.set_xlabel("noise step T")
        else:
            draw(ax, lambda r: (unet_of(r), r["t"], r["epochs"]), "ddpm_steps",
                 lambda k: f"DDPM {k[0]}, T = {k[1]}; target {k[2]} epochs")
            ax.set_xlabel("DDPM training steps")
    fig.suptitle(f"CIFAR-10 on 2 CPU cores, N = {n}, 95% CIs")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(result: dict) -> None:
    print("\n| DDPM | DDPM steps | target epochs (train/test acc) | T | N | undefended best AUC | S1 best AUC | "
          "best-attack change [95% CI] | LiRA change [95% CI] | label kept m / n | JS (undefended) | chosen |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in result["rows"]:
        print(f"| {unet_of(r)} | {r['ddpm_steps']} | {r['epochs']} ({r['train_acc']:.2f}/"
              f"{r['test_acc']:.2f}) | {r['t']} | {r['n']} | {r['undefended_best_auc']:.3f} | {r['best_auc']:.3f} | "
              f"{format_change(r['best_change'])} | {format_change(r['lira_change'])} | {r['label_match_members']:.2f} / "
              f"{r['label_match_nonmembers']:.2f} | {r['js']:.4f} ({r['js_undefended']:.4f}) | "
              f"{'yes' if r.get('chosen_by_calibration') else ''} |")


if __name__ == "__main__":
    main()
