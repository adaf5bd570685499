"""Stage 2, defend: every defense fitted on the defender's known records, releasing one vector per record of
every role and query. Diffence defenses on the same diffusion model and draws share one reconstruction of
every input; calibration (and the choice of t, where the plan offers several) reuses it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from diffence_plugin.attacks.releases import (
    hflip,
    release_all,
    roles_of,
    undefended_releases,
)
from diffence_plugin.audit.plan import ConfigError, DefenseSpec, Plan
from diffence_plugin.audit.stages.prepare import Prepared, placement
if TYPE_CHECKING:
    from diffence_plugin.audit.context import RunContext
from diffence_plugin.progress import phase


@dataclass
class Defense:
    """One row's defense: its fitted stages, the pipeline ART sees, and its Diffence stage if it has one."""

    label: str
    pre: list
    post: list
    pipeline: Any
    diffence: Any = None  # the Diffence stage (fitted), when the pipeline's only pre-inference stage is one
    candidates: dict = field(default_factory=dict)  # role -> Candidates of ``diffence`` (query "")

    @property
    def plain_diffence(self) -> bool:
        """Only a Diffence stage: its randomness can be redrawn (selection spread, defense seeds)."""
        return self.diffence is not None and not self.post


@dataclass
class Defended:
    defenses: dict[str, Defense]
    released: dict[str, dict[str, dict[str, np.ndarray]]]  # query -> label -> role -> (S, K)
    queries: dict[str, np.ndarray]
    recon: Any = None  # the shared Reconstructions


def defense_seed(plan: Plan, draw: int = 0) -> int | None:
    """The Diffence seed of the ``draw``-th defense seed: derived from ``[run].seed`` ("derived") or from the
    plan's secret (None: each defense's own ``seed`` option), and redrawn for ``[run].draw``."""
    from diffence_plugin.randomness import experiment_seed

    if plan.run.defense_seed == "derived":
        base = plan.run.seed
        seed = experiment_seed(base) if draw == 0 else experiment_seed(base, f"diffence-draw-{draw}")
        return plan.redrawn(seed, "diffence")
    if draw == 0 and plan.run.draw == 0:
        return None
    secrets = [d.options["diffence"]["seed"] for d in plan.diffences if "seed" in d.options["diffence"]]
    secret = secrets[0] if secrets else 0
    return plan.redrawn(secret if draw == 0 else experiment_seed(secret, f"diffence-draw-{draw}"), "diffence")


def build_stage(name: str, options: dict, prep: Prepared, plan: Plan, draw: int = 0, t: int | None = None):
    """One registered defense, built with its options (a Diffence stage on the defender's DDPM by default)."""
    from diffence_plugin.registry import get_defenses, option_defaults, option_names

    entry = get_defenses()[name]
    options = dict(options)
    if name == "diffence":
        seed = defense_seed(plan, draw)
        if seed is not None:
            options["seed"] = seed
        if t is not None:
            options["t"] = t
        if "path" not in options:
            options["reconstructor"] = prep.reconstructor
        if placement(plan)["bf16"] or plan.run.reconstruct_bf16:
            options.setdefault("autocast", torch.bfloat16)
        options.setdefault("max_batch", plan.run.max_batch)
    elif plan.run.draw and "seed" in (option_names(entry.factory) or ()):  # a randomised defense: redrawn too
        options["seed"] = plan.redrawn(int(options.get("seed", option_defaults(entry.factory).get("seed") or 0)), name)
    try:
        stage = entry.factory(**options)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"[[defenses]] {name!r}: {exc}") from exc
    if name == "diffence":
        stage.progress = plan.run.progress
    return stage


def _diffence_key(defense, q: str) -> tuple:
    c = defense.config
    return (defense.fingerprint(), c.n, c.t, c.k, c.seed, c.deterministic, c.levels, c.key, c.lsh_projections,
            c.lsh_width, c.output, q)


class Reconstructions:
    """Each Diffence configuration's candidates for every role and query, computed once and shared."""

    def __init__(self, prep: Prepared, queries: dict[str, np.ndarray], executor, shard_size: int) -> None:
        self.prep, self.queries, self.executor, self.shard_size = prep, queries, executor, shard_size
        self.cache: dict[tuple, dict] = {}

    def get(self, defense, q: str = "", roles: tuple[str, ...] | None = None) -> dict:
        """role -> Candidates of ``defense`` on query ``q`` (default: every role)."""
        from diffence_plugin.audit.executor import candidates_in_shards

        split = self.prep.split
        roles = roles or roles_of(split)
        have = self.cache.setdefault(_diffence_key(defense, q), {})
        missing = [r for r in roles if r not in have]
        if missing:
            order = np.concatenate([getattr(split, r) for r in missing])
            every = candidates_in_shards(self.executor, defense, self.prep.model, self.queries[q][order],
                                         self.shard_size)
            bounds = np.cumsum([0] + [len(getattr(split, r)) for r in missing])
            for i, r in enumerate(missing):
                have[r] = every.subset(torch.arange(bounds[i], bounds[i + 1]))
        return {r: have[r] for r in roles}


def tune_t(plan: Plan, prep: Prepared, recon: Reconstructions, draw: int = 0) -> tuple[int | None, list | None]:
    """The noise step the defender's calibration chooses among ``[diffusion].t_choices`` (Scenario 1's
    criterion, on its known records), with the search; (None, None) when the plan offers none."""
    choices = plan.diffusion.t_choices
    if not choices:
        return None, None
    first = next(d for d in plan.defenses if d.on_defender_ddpm)
    base = build_stage("diffence", {**first.options["diffence"], "scenario": 1}, prep, plan, draw, t=choices[0])
    known = ("defender_members", "defender_nonmembers")
    found = {t: tuple(recon.get(base.with_config(t=t), "", known).values()) for t in choices}
    tuned = base.tune_from_candidates(found)
    return tuned.config.t, tuned.calibration.extra.get("t_search")


def _fast(pre: list, post: list) -> bool:
    """Whether a pipeline can be released from shared candidates: at most one Diffence stage before the
    classifier, and post-inference stages fitted on released vectors (or needing no fit)."""
    from diffence_plugin.defense import Diffence

    return (len(pre) == 0 or (len(pre) == 1 and isinstance(pre[0], Diffence))) and all(
        hasattr(s, "fit_probabilities") or not hasattr(s, "fit") for s in post)


def _apply_post(post: list, model, x: np.ndarray, split, released: dict, fit: bool) -> dict:
    """``released`` (role -> vectors) through the post-inference stages in order; with ``fit``, each stage
    that learns is first fitted on the defender's known members' and non-members' vectors at its input."""
    for stage in post:
        if hasattr(stage, "bind"):
            stage.bind(model)
        if fit and hasattr(stage, "fit_probabilities"):
            stage.fit_probabilities(torch.from_numpy(released["defender_members"]),
                                    torch.from_numpy(released["defender_nonmembers"]))
        released = {r: stage(torch.from_numpy(x[getattr(split, r)]), torch.from_numpy(p)).double().numpy()
                    for r, p in released.items()}
    return released


def _release_fast(defense: Defense, prep: Prepared, recon: Reconstructions, queries: dict) -> dict:
    """Every query's releases of a fast pipeline (see ``_fast``), fitting its stages on query ""."""
    out = {}
    for q, xq in queries.items():
        if defense.diffence is not None:
            cands = recon.get(defense.diffence, q)
            d = defense.diffence
            if q == "" and d.config.needs_calibration and d.calibration is None:
                d.calibrate_from_candidates(cands["defender_members"],
                                            cands["defender_nonmembers"] if d.config.scenario == 1 else None)
            if q == "":
                defense.candidates = cands
            released = release_all(d, cands)
        else:
            released = undefended_releases(prep.model, xq, prep.split)
        out[q] = _apply_post(defense.post, prep.model, xq, prep.split, released, fit=q == "")
    return out


def _release_generic(defense: Defense, prep: Prepared, queries: dict) -> dict:
    """Every query's releases through the pipeline itself (fitted on the defender's known records)."""
    split = prep.split
    defense.pipeline.fit(torch.from_numpy(prep.x[split.defender_members]),
                         torch.from_numpy(prep.x[split.defender_nonmembers]))
    return {q: {r: defense.pipeline.release(prep.model, torch.from_numpy(xq[getattr(split, r)])).numpy()
                for r in roles_of(split)} for q, xq in queries.items()}


def build_defense(spec: DefenseSpec, prep: Prepared, plan: Plan, draw: int = 0, t: int | None = None) -> Defense:
    """A row's defense from its plan entry: its stages built, pre- and post-inference in the listed order."""
    from diffence_plugin.defense import Diffence
    from diffence_plugin.defenses.pipeline import DefensePipeline
    from diffence_plugin.registry import get_defenses

    registry = get_defenses()
    pre, post = [], []
    for name in spec.name:
        stage = build_stage(name, spec.options[name], prep, plan, draw, t if name == "diffence" else None)
        (pre if registry[name].stage == "pre_inference" else post).append(stage)
    pipeline = DefensePipeline(prep.model, pre, post)
    diffence = pre[0] if len(pre) == 1 and isinstance(pre[0], Diffence) else None
    return Defense(label=spec.label, pre=pre, post=post, pipeline=pipeline, diffence=diffence)


def defend(ctx: RunContext, prep: Prepared) -> Defended:
    """Stage 2: fit every defense on the defender's known records and release every role once per query."""
    plan, executor, log, timings = ctx.plan, ctx.executor, ctx.log, ctx.timings
    queries = {"": prep.x} | ({"flip": hflip(prep.x)} if plan.attacks.augment else {})
    recon = Reconstructions(prep, queries, executor, plan.run.shard_size)
    released = {q: {"undefended": undefended_releases(prep.model, xq, prep.split)} for q, xq in queries.items()}
    inputs = sum(len(getattr(prep.split, r)) for r in roles_of(prep.split))
    with phase(f"[3/6] defending: {len(plan.defenses)} defenses on {inputs} inputs", timings, "diffence_s", log):
        tuned, search = tune_t(plan, prep, recon)
        if tuned is not None:
            log(f"      calibration chose t = {tuned} among {plan.diffusion.t_choices}")
        defenses = {}
        for spec in plan.defenses:
            defense = build_defense(spec, prep, plan, t=tuned if spec.on_defender_ddpm else None)
            fast = _fast(defense.pre, defense.post)
            for q, rel in (_release_fast(defense, prep, recon, queries) if fast
                           else _release_generic(defense, prep, queries)).items():
                released[q][spec.label] = rel
            if defense.diffence is not None and defense.diffence.calibration is not None and search:
                defense.diffence.calibration.extra["t_search"] = search
            defenses[spec.label] = defense
    return Defended(defenses=defenses, released=released, queries=queries, recon=recon)
