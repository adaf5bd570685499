"""``diffence reproduce cifar10``: the paper's CIFAR experiment in one command, in two presets.

``--preset cpu`` (``CpuSettings``) runs on a 2-core machine in 44 to 80 minutes: a small CNN that memorises
5,000 members, a small low-noise DDPM trained within a time budget, the noise step chosen by calibration,
and the full audit of the demo (defense-aware LiRA and RMIA with reference models, threshold and ART
attacks, the attacker choosing its best attack on its own records) through ``run_experiment``.

``--preset gpu`` (``ReproduceSettings``), sized for one GPU: trains ResNet-18 on 25,000 members (Adam 1e-3, weight decay 1e-6, batch 128, no augmentation), trains the
DDPM on the same members (a low-noise specialist: timesteps <= T only, within a time budget), calibrates on
1,000 known members and 1,000 known non-members, and runs the attack suite on held-out records undefended
and under Scenarios 1-3. On a GPU: data on the device, bf16 autocast, channels-last. Every size is a
parameter, so the same code runs at toy sizes on a CPU (the tests do).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..classify import probabilities
from ..data import build_model, load_dataset, paper_split
from ..diffusion import train_diffusion
from ..evaluation.experiment import ExperimentSettings, run_experiment
from ..evaluation.metrics import accuracy
from ..evaluation.protocol import MembershipSplit, membership_split
from ..evaluation.references import ReferenceRecipe
from ..evaluation.report import machine
from ..evaluation.runner import (compare_to, diffence_scenarios, evaluate_defense, labels_kept,
                                 undefended_releases)
from ..plugins import DefensePipeline
from ..progress import echo, phase
from ..randomness import experiment_seed
from ..reconstruct import cifar_unet_config, tiny_unet_config


@dataclass(frozen=True)
class CpuSettings:
    """The CPU preset: sizes chosen by ``benchmarks/study_cifar_cpu.py`` (see docs/results.md) so that the
    whole run, the attacker's reference models included, fits 45 minutes on 2 cores at the speed of a fast day
    (43.7 min measured 2026-11-24; 79.7 on a slow day, 2026-12-01: docs/results.md)."""

    dataset: str = "cifar10"
    members: int = 5_000  # 2,500 lowers the best attack's AUC too, but LiRA's TPR change is not resolved
    calibration: int = 500  # the defender's known members and non-members each
    attacker: int = 500  # the attacker's known members and non-members each
    evaluation: int = 4_000  # held-out members and non-members each: TPR at 1% FPR rests on 40 false positives
    population: int = 500  # RMIA's population records
    model: str = "cifar_cnn"
    target_epochs: int = 50  # with the cosine schedule: train accuracy 0.994-1.000 over seeds 0-3 (about 65 s)
    batch_size: int = 64
    lr: float = 2e-3
    schedule: str = "cosine"  # a constant rate ends on loss spikes: 0.89-0.92 train accuracy at 30-40 epochs
    ddpm_width: int = 16  # 395 UNet images/s on 2 cores (width 32: 149); see the study's throughput table
    ddpm_seconds: float = 225.0  # per DDPM (the defender's and the attacker's)
    ddpm_steps: int = 100_000
    ddpm_batch_size: int = 64
    n: int = 8
    t: int = 40
    k: int = 20
    t_choices: tuple[int, ...] = (40, 60, 100)  # 2, 3 or 5 DDIM steps at k = 20; calibration picks one
    references: int = 8
    selection_draws: int = 5
    defense_seeds: int = 1  # 3: two more defense seeds, each costing about one more reconstruction phase
    attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf", "rule_based")
    seed: int = 0

    def __post_init__(self) -> None:
        for name, t in [("t", self.t)] + [("t_choices", t) for t in self.t_choices]:
            if not (0 < t < 1000 and t % self.k == 0):
                raise ValueError(f"{name} {t} must be a multiple of k = {self.k} between {self.k} and 980: "
                                 "the reconstruction runs t / k DDIM steps on a 1,000-step schedule")

    def experiment(self) -> ExperimentSettings:
        return ExperimentSettings(
            unet_config=tiny_unet_config(32, 3, width=self.ddpm_width), ddpm_steps=self.ddpm_steps,
            ddpm_max_timestep=max((self.t, *self.t_choices)), ddpm_seconds=self.ddpm_seconds,
            ddpm_batch_size=self.ddpm_batch_size, n=self.n, t=self.t, k=self.k, levels=255,
            t_choices=self.t_choices, seed=self.seed, references=self.references,
            selection_draws=self.selection_draws, defense_seeds=self.defense_seeds, art_attacks=self.attacks, memguard=False,
            attacker_pool_size=self.members, extra={"preset": "cpu", **asdict(self)})


def reproduce_cpu(data_folder: str | Path, settings: CpuSettings = CpuSettings(),
                  out_dir: str | Path = "runs/reproduce-cpu", progress: bool = True, log=echo) -> dict:
    """The CPU preset: the training set as the record pool, the test set for the target's test accuracy."""
    s = settings
    data = load_dataset(s.dataset, data_folder)
    split = membership_split(len(data.x_train), s.members, s.calibration, s.attacker, s.evaluation, seed=s.seed,
                             population=s.population)
    recipe = ReferenceRecipe.from_training(s.model, data.nb_classes, data.x_train.shape[1], epochs=s.target_epochs,
                                           batch_size=s.batch_size, lr=s.lr, options={"schedule": s.schedule})
    return run_experiment(recipe, data.x_train, data.y_train, split, s.experiment(), out_dir=out_dir,
                          progress=progress, log=log, test=(data.x_test, data.y_test))


@dataclass(frozen=True)
class ReproduceSettings:
    dataset: str = "cifar10"
    model: str = "resnet18"
    members: int = 25_000
    calibration: int = 1_000  # known members and known non-members each, for the defender
    attacker: int = 1_000  # the attacker's own known members and non-members each
    evaluation: int = 2_000  # held-out members and non-members each, for scoring
    target_epochs: int = 30
    batch_size: int = 128
    ddpm_seconds: float = 150.0
    ddpm_steps: int = 100_000
    ddpm_batch_size: int = 256
    unet: str = "cifar"  # or "tiny" (tests)
    n: int = 50
    t: int = 40
    k: int = 10
    max_batch: int = 8192
    seed: int = 0
    attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf")


def train_resnet(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: ReproduceSettings,
                 device: torch.device, progress: bool) -> torch.nn.Module:
    """The paper's target training, with the whole training set on the device and no per-sample loops."""
    model = model.to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    gen = torch.Generator(device="cpu").manual_seed(s.seed)
    bf16 = device.type == "cuda"
    model.train()
    for _ in tqdm(range(s.target_epochs), desc="resnet", unit="epoch", disable=None if progress else True):
        for idx in torch.randperm(len(x), generator=gen).to(device).split(s.batch_size):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x[idx].contiguous(memory_format=torch.channels_last)), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


class FloatLogits(torch.nn.Module):
    """The target as Diffence and ART see it: channels-last input, bf16 autocast on GPUs, float32 logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = next(self.model.parameters()).device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = self.model(x.to(device).contiguous(memory_format=torch.channels_last))
        return out.float()


def reproduce(data_folder: str | Path, settings: ReproduceSettings = ReproduceSettings(),
              out_dir: str | Path = "runs/reproduce", device: str | None = None, progress: bool = True,
              log=echo) -> dict:
    """Run the experiment; write ``results.json``; return the results (timings included)."""
    from ..adapters import art_attacks
    from ..adapters.art import DefendedClassifier

    s = settings
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    log(f"loading {s.dataset} from {data_folder}")
    data = load_dataset(s.dataset, data_folder)
    split0 = paper_split(len(data.x_train), s.members, s.seed)
    rng = np.random.default_rng(s.seed)
    members, reference = rng.permutation(split0.members), rng.permutation(split0.reference)
    need = s.calibration + s.attacker + s.evaluation
    if need > len(members) or need > len(reference):
        raise ValueError(f"the roles need {need} members and non-members, have {len(members)} and {len(reference)}")
    a, b, c = s.calibration, s.calibration + s.attacker, need
    split = MembershipSplit(members=split0.members, defender_members=members[:a], defender_nonmembers=reference[:a],
                            attacker_members=members[a:b], attacker_nonmembers=reference[a:b],
                            eval_members=members[b:c], eval_nonmembers=reference[b:c],
                            attacker_pool=reference[c:])
    timings["load_data_s"] = time.perf_counter() - clock

    x_members = torch.from_numpy(data.x_train[split.members]).to(dev)
    y_members = torch.from_numpy(data.y_train[split.members]).to(dev)
    torch.manual_seed(s.seed)
    net = build_model(s.model, data.nb_classes, 3)
    with phase(f"training {s.model} on {len(x_members)} members for {s.target_epochs} epochs on {dev}", timings,
               "target_s", log):
        model = FloatLogits(train_resnet(net, x_members, y_members, s, dev, progress))

    with phase(f"training the DDPM on the members (t <= {s.t}, at most {s.ddpm_seconds:.0f} s)", timings, "ddpm_s",
               log):
        reconstructor = train_diffusion(x_members, unet_config=cifar_unet_config() if s.unet == "cifar" else None,
                                        steps=s.ddpm_steps, batch_size=s.ddpm_batch_size, max_timestep=s.t,
                                        seed=s.seed, device=dev, progress=progress, max_seconds=s.ddpm_seconds,
                                        autocast=torch.bfloat16 if dev.type == "cuda" else None)
    del x_members

    with phase(f"Diffence on {2 * need} inputs x {s.n} reconstructions", timings, "diffence_s", log):
        defenses, cands, released = diffence_scenarios(model, reconstructor, data.x_train, split, n=s.n, t=s.t,
                                                       k=s.k, seed=experiment_seed(s.seed), progress=progress,
                                                       max_batch=s.max_batch,
                                                       autocast=torch.bfloat16 if dev.type == "cuda" else None)

    clock = time.perf_counter()
    log("attacking every scenario")
    released["undefended"] = undefended_releases(model, data.x_train, split)
    test_probs = probabilities(model, torch.from_numpy(data.x_test)).cpu()
    order = {k: released[k] for k in ("undefended", "scenario_1", "scenario_2", "scenario_3")}
    kept = labels_kept(order)
    target = art_attacks.probability_classifier(model, (3, 32, 32), data.nb_classes)
    rows = []
    for name, probs in order.items():
        defended = name != "undefended"
        estimator = DefendedClassifier(target, DefensePipeline(pre=[defenses[name[-1]]])) if defended else target
        art = dict(estimator=estimator, target=target, model=model, attacks=s.attacks, defended=defended)
        row = evaluate_defense(name, probs, data.x_train, data.y_train, split, art=art, kept=kept[name], seed=s.seed)
        if rows:
            row.change = compare_to(row, rows[0], seed=s.seed)
        rows.append(row)
        log(f"      {name}: {row.best.attack} AUC {row.best.auc:.3f}")
    timings["attacks_s"] = time.perf_counter() - clock
    log(f"      done in {timings['attacks_s']:.1f} s")

    results = {
        "settings": asdict(s), "device": str(dev) if dev.type != "cuda" else torch.cuda.get_device_name(dev),
        "test_accuracy_undefended": accuracy(test_probs.numpy(), data.y_test),
        "rows": [r.to_dict() for r in rows],
        "timings": timings, "total_s": sum(timings.values()), "machine": machine(),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    return results
