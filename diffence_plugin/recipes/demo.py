"""The embedded demo: an overfit digits classifier, attacked with and without Diffence, on a CPU.

The pipeline is ``evaluation.experiment.run_experiment``; this recipe supplies sklearn's digits, the demo's
split and sizes, and the MLP target that memorises its members.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..data import digits_images
from ..evaluation.experiment import ExperimentSettings, run_experiment
from ..evaluation.protocol import MembershipSplit, membership_split
from ..evaluation.references import ReferenceRecipe
from ..progress import logger
from ..reconstruct import tiny_unet_config

DIGITS_LEVELS = 16  # sklearn's digits hold 17 grey levels, k / 16: the quantised key's grid


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and seeds of the demo; the defaults run in under 5 minutes on 2 CPU cores."""

    members: int = 300
    defender: int = 75
    attacker: int = 75
    evaluation: int = 150
    population: int = 150  # the attacker's own non-members, queried as RMIA's z records
    target_epochs: int = 60  # enough to memorise: train loss 0.003 vs 0.21 on non-members
    ddpm_steps: int = 400
    ddpm_max_timestep: int = 100
    ddpm_width: int = 16  # tiny_unet_config width: 8x8 digits need little, and it halves the CPU time
    n: int = 50
    t: int = 100  # the paper's T = 40 barely perturbs 8x8 digits with 17 grey levels; see docs/results.md
    k: int = 20  # 5 DDIM steps from T = 100 (the paper: 4 steps from T = 40)
    seed: int = 0
    references: int = 8  # defense-aware reference models for LiRA and RMIA (0: none)
    selection_draws: int = 10  # fresh selection draws per Diffence row, for the spread over its randomness
    art_attacks: tuple[str, ...] = ("bb_nn", "bb_rf", "bb_gb", "bb_loss_rf", "shadow_models", "rule_based")
    memguard: bool = True  # rows for MemGuard alone and Diffence (scenario 1) + MemGuard
    bootstrap: int = 1000

    def split(self, total: int) -> MembershipSplit:
        """The demo's roles over ``total`` records (population records only when there are references)."""
        return membership_split(total, self.members, self.defender, self.attacker, self.evaluation, seed=self.seed,
                                population=self.population if self.references else 0)

    def experiment(self) -> ExperimentSettings:
        """The pipeline's settings for these sizes."""
        return ExperimentSettings(
            unet_config=tiny_unet_config(8, 1, width=self.ddpm_width), ddpm_steps=self.ddpm_steps,
            ddpm_max_timestep=self.ddpm_max_timestep, n=self.n, t=self.t, k=self.k, levels=DIGITS_LEVELS,
            seed=self.seed, references=self.references, selection_draws=self.selection_draws,
            art_attacks=self.art_attacks, memguard=self.memguard, bootstrap=self.bootstrap,
            extra={"demo": asdict(self)})


def run_demo(settings: DemoSettings = DemoSettings(), out_dir: str | Path = "diffence-demo",
             progress: bool = True, log=logger.info) -> dict:
    """Train, defend, attack; write ``results.json``, plots and ``report.html`` to ``out_dir``; return the results."""
    x, y = digits_images()
    recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=settings.target_epochs, batch_size=64)
    return run_experiment(recipe, x, y, settings.split(len(x)), settings.experiment(), out_dir=out_dir,
                          progress=progress, log=log)
