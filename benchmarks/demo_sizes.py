"""The demo preset's sizes and seeds as one object, for the benchmarks that study parts of the demo's setting
(adaptive attackers, reference counts, the diffusion model's own leakage) outside the engine's fixed flow.

Everything is read from the shipped plan ``diffence_plugin/presets/demo.toml`` (the single source of the
demo's numbers), so these benchmarks follow the preset when it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


from diffence_plugin.evaluation.plan import load_preset
from diffence_plugin.evaluation.prepare import build_split
from diffence_plugin.evaluation.protocol import MembershipSplit


@dataclass(frozen=True)
class DemoSizes:
    """The demo's sizes and seeds (see the preset for what each means)."""

    members: int
    defender: int
    attacker: int
    evaluation: int
    population: int
    target_epochs: int
    ddpm_steps: int
    ddpm_max_timestep: int
    ddpm_width: int
    n: int
    t: int
    k: int
    levels: int
    references: int
    seed: int = 0

    @classmethod
    def of(cls, seed: int = 0, **changes) -> "DemoSizes":
        """The demo preset's values, with ``seed`` as its run and split seed and ``changes`` applied."""
        plan = load_preset("demo", [f"run.seed={seed}", f"roles.seed={seed}"])
        roles, diffusion = plan["roles"], plan["diffusion"]
        diffence = next(d for d in plan["defenses"] if "diffence" in d["name"])["options"]["diffence"]
        sizes = cls(members=plan["members"]["count"], defender=roles["defender"], attacker=roles["attacker"],
                    evaluation=roles["evaluation"], population=roles["population"],
                    target_epochs=plan["target"]["train"]["epochs"], ddpm_steps=diffusion["steps"],
                    ddpm_max_timestep=diffusion["max_timestep"], ddpm_width=diffusion["width"], n=diffence["n"],
                    t=diffence["t"], k=diffence["k"], levels=diffence["levels"],
                    references=plan["attacks"]["references"], seed=seed)
        return replace(sizes, **changes)

    def split(self, total: int) -> MembershipSplit:
        """The demo's roles over ``total`` records, as the engine draws them."""
        plan = load_preset("demo", [f"run.seed={self.seed}", f"roles.seed={self.seed}",
                                    f"members.count={self.members}", f"roles.defender={self.defender}",
                                    f"roles.attacker={self.attacker}", f"roles.evaluation={self.evaluation}",
                                    f"roles.population={self.population}", f"attacks.references={self.references}"])
        return build_split(plan, total)


__all__ = ["DemoSizes"]
