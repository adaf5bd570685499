"""Stage 3, arm the attacker: reference models trained like the target, and its copy of every defense
(Diffence on its own DDPM with the same public settings, a post-inference stage refitted on its own records)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffence_plugin.attacks.attacker import (
    AttackerView,
    ShadowDiffence,
    attacker_universe,
    diffence_view,
    post_view,
    reference_candidates,
    shadow_pool,
    undefended_view,
)
from diffence_plugin.audit.plan import Plan
from diffence_plugin.audit.stages.defend import Defended, Defense
from diffence_plugin.audit.stages.prepare import (
    Prepared,
    _compiled,
    ddpm_records,
    placement,
    reference_recipe,
    train_ddpm,
)
from diffence_plugin.audit.store import Stages, stage_key
if TYPE_CHECKING:
    from diffence_plugin.audit.context import RunContext
from diffence_plugin.progress import phase


@dataclass
class Armed:
    """The attacker: its answers on its universe per query and defense, and ART shadows answering through
    its own Diffence."""

    views: dict[str, dict[str, AttackerView]] = field(default_factory=dict)
    shadows: dict[str, ShadowDiffence] = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    references: Any = None  # its ReferenceModels, when it trains any
    copies: Any = None  # its AttackerDiffence: its own DDPMs and Diffence copies, for studies of its own attacks


def _unet_of(reconstructor) -> dict:
    unet = reconstructor.unet if hasattr(reconstructor, "unet") else reconstructor.models[0].unet
    return {k: v for k, v in unet.config.items() if not k.startswith("_")}


class AttackerDiffence:
    """The attacker's own copies of Diffence: one DDPM per UNet architecture and public setting, trained on its
    pool, and its reconstructions of its universe (per query) and of ART's shadow records, made once."""

    def __init__(self, plan: Plan, prep: Prepared, universe: np.ndarray, queries: dict, refs, log, armed,
                 stages: Stages | None = None) -> None:
        self.plan, self.prep, self.universe, self.queries, self.refs = plan, prep, universe, queries, refs
        self.log, self.armed, self.cache, self.stages = log, armed, {}, stages or Stages(None)

    def get(self, defense) -> dict:
        """{"mine": Diffence, "images": q -> recon, "refs": q -> reference candidates, "pool": recon | None}."""
        from diffence_plugin.defense import Diffence
        from diffence_plugin.randomness import experiment_seed

        c, plan, prep = defense.config, self.plan, self.prep
        unet = _unet_of(defense.reconstructor)
        key = json.dumps([unet, c.n, c.t, c.k, c.levels], sort_keys=True, default=str)
        if key not in self.cache:
            attacks, run = plan.attacks, plan.run
            steps = attacks.attacker_ddpm_steps or plan.diffusion.steps
            public = plan.diffusion.data == "public"  # then it has the defender's data: it is public
            pool = ddpm_records(plan, prep.split) if public else \
                prep.split.attacker_pool[: attacks.attacker_ddpm_records or None]
            limit = (defense.reconstructor.training or {}).get("max_timestep") or c.t
            where = "the public data" if public else "its pool"
            self.log(f"      the attacker's own DDPM: {steps} steps on {len(pool)} records of {where}, t <= {limit}")
            stage = stage_key(diffusion=plan.diffusion.given(), unet=unet, steps=steps, limit=limit,
                              pool=pool.tolist(), seed=plan.attacker_seed, device=placement(plan))
            ddpm = self.stages.ddpm(f"attacker-ddpm-{stage}", stage,
                                    lambda: train_ddpm(plan, prep.x[pool], unet, plan.attacker_seed, steps, limit,
                                                       run.progress), placement(plan)["device"])
            self.armed.training.setdefault("attacker_ddpm", {**ddpm.training, "data": "public" if public else "pool",
                                                             "records": len(pool)})
            _compiled(plan, ddpm)
            mine = Diffence(ddpm, **{**c.to_dict(), "seed": experiment_seed(plan.attacker_draw_seed)},
                            progress=run.progress,
                            autocast=defense.autocast)
            images = {q: mine.reconstructions(torch.from_numpy(xq[self.universe])) for q, xq in self.queries.items()}
            refs = {q: reference_candidates(self.refs, mine, xq, self.universe, images[q])
                    for q, xq in self.queries.items()}
            pool_images = None
            if "shadow_models" in attacks.art:
                shadow = shadow_pool(prep.split, 2 * len(prep.split.members))
                pool_images = mine.reconstructions(torch.from_numpy(prep.x[shadow]))
            self.cache[key] = {"mine": mine, "images": images, "refs": refs, "pool": pool_images}
        return self.cache[key]


def attacker_view(defense: Defense, q: str, plain: AttackerView, copies: AttackerDiffence, plan: Plan,
                  prep: Prepared) -> AttackerView:
    """The references' answers through the attacker's copy of ``defense`` (defense-aware), or their plain
    answers (defense-unaware) where a stage cannot be copied."""
    seed = plan.attacker_draw_seed
    models = copies.refs.models
    if not defense.pre:
        return post_view(plain, defense.post, copies.queries[q], prep.split, seed, upstream_copied=True,
                         models=models) or plain
    if defense.diffence is None:
        return plain
    own = copies.get(defense.diffence)
    mine = own["mine"].with_config(scenario=defense.diffence.config.scenario)
    view = diffence_view(copies.refs, mine, copies.queries[q], copies.universe, own["images"][q], prep.split,
                         own["refs"][q])
    if not defense.post:
        return view
    return post_view(view, defense.post, copies.queries[q], prep.split, seed, models=models) or plain


def arm(ctx: RunContext, prep: Prepared, defended: Defended) -> Armed:
    """Stage 3: the attacker's reference models and its copy of every defense."""
    plan, executor, log, timings = ctx.plan, ctx.executor, ctx.log, ctx.timings
    from diffence_plugin.attacks.references import train_references

    attacks, armed = plan.attacks, Armed()
    if not attacks.references:
        return armed
    x, y, split = prep.x, prep.y, prep.split
    with phase(f"[4/6] the attacker: {attacks.references} reference models and its copy of every defense",
               timings, "attacker_s", log):
        universe = attacker_universe(split, 2 * len(split.members))
        recipe = reference_recipe(plan, prep.nb_classes, x, y, split)
        refs = train_references(recipe, x[universe], y[universe], attacks.references, seed=plan.attacker_draw_seed,
                                cache=ctx.cache / "reference-cache", progress=plan.run.progress, executor=executor)
        copies = AttackerDiffence(plan, prep, universe, defended.queries, refs, log, armed, ctx.stages)
        armed.references, armed.copies = refs, copies
        for q, xq in defended.queries.items():
            plain = undefended_view(refs, xq, universe)
            armed.views[q] = {"undefended": plain}
            for label, defense in defended.defenses.items():
                armed.views[q][label] = attacker_view(defense, q, plain, copies, plan, prep) if attacks.aware \
                    else plain
        for label, defense in defended.defenses.items():
            if attacks.aware and defense.diffence is not None and "shadow_models" in attacks.art:
                own = copies.get(defense.diffence)
                mine = own["mine"].with_config(scenario=defense.diffence.config.scenario)
                armed.shadows[label] = ShadowDiffence.for_split(mine, x, split, own["pool"], universe,
                                                                own["images"][""])
    return armed
