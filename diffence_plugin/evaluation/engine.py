"""The audit engine: one plan (``evaluation.plan``), run in named stages, behind every command.

``diffence evaluate``, ``diffence demo`` and ``diffence reproduce`` are plans (the last two shipped as
presets); benchmarks and examples call ``run_plan`` or its stages. The stages, each a function here:

1. prepare (``prepare.py``): data, roles, the target (loaded or trained), the defender's diffusion model.
2. defend: every defense is fitted on the defender's known records and releases one vector per record of
   every role. Diffence defenses on the same diffusion model and draws share one reconstruction of every
   input; calibration (and the choice of t, where the plan offers several) reuses it.
3. arm the attacker: reference models trained like the target, and for every defense the attacker's copy
   of it (``attacker_view``): Diffence on the attacker's own DDPM with the same public settings, a
   post-inference stage rebuilt and fitted on the attacker's own records, a pipeline stage by stage.
4. attack: the threshold attacks, LiRA, RMIA and ART's attacks on every release (``families.evaluate_defense``),
   the attacker's choice made on its own records, changes with paired intervals, selection-draw spread and,
   with ``[attacks].defense_seeds``, the spread over further defense seeds.
5. write: ``results.json`` (the shareable plan, metrics, timings, machine), plots and ``report.html``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..progress import logger, phase
from .plan import ConfigError, shareable
from .prepare import (Prepared, build_split, check_target, load_data, load_target, nb_classes_of, placement,
                      reference_recipe, train_ddpm, training_recipe, unet_config)
from .stages import Stages, claim_folder, make_folder, stage_key
from .attacker import (AttackerView, ShadowDiffence, attacker_universe, diffence_view, post_view,
                       reference_candidates, shadow_pool, undefended_view)
from .attacks import compare_to
from .compare import RESULTS_FORMAT, records_digest
from .families import SPREAD_FAMILIES, evaluate_defense, plan_families, selection_spread
from .protocol import CANARY_ROLES, CANARY_WORDS, MembershipSplit, flip_labels, shuffle_pixels
from .releases import hflip, labels_kept, release_all, roles_of, undefended_releases


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


@dataclass
class Armed:
    """The attacker: its answers on its universe per query and defense, and ART shadows answering through
    its own Diffence."""

    views: dict[str, dict[str, AttackerView]] = field(default_factory=dict)
    shadows: dict[str, ShadowDiffence] = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    references: Any = None  # its ReferenceModels, when it trains any
    copies: Any = None  # its AttackerDiffence: its own DDPMs and Diffence copies, for studies of its own attacks


# ---- stage 1 -----------------------------------------------------------------------------------------------

@dataclass
class Inputs:
    """The data and roles of a plan, read and checked (and the target, when it is loaded), before any training."""

    x: np.ndarray
    y: np.ndarray
    test: tuple[np.ndarray, np.ndarray] | None
    split: Any
    nb_classes: int
    model: torch.nn.Module | None


def read_inputs(plan: dict) -> Inputs:
    """Every check of the data against the plan: shape, labels, classes, members, a loaded target's fit."""
    x, y, test = load_data(plan)
    split = build_split(plan, len(x))
    nb_classes = nb_classes_of(plan, y)
    if len(split.canary_members):  # the canaries are what they are everywhere: in training and in every query
        seed = int(np.random.SeedSequence([plan["roles"]["seed"], 0xCA4A]).generate_state(1)[0])
        if plan["roles"]["canary_kind"] == "shuffled_pixels":
            x = shuffle_pixels(x, split.canaries, seed)
        else:
            y = flip_labels(y, split.canaries, nb_classes, seed)
    check_ddpm_sizes(plan, x)
    model = None
    if "weights" in plan["target"]:
        model = load_target(plan, x, nb_classes)
        check_target(model, x, nb_classes)
    return Inputs(x=x, y=y, test=test, split=split, nb_classes=nb_classes, model=model)


def check_ddpm_sizes(plan: dict, x: np.ndarray) -> None:
    """Every saved diffusion model the plan names reconstructs images of the data's channels and size."""
    folders = {"[diffusion].path": plan["diffusion"].get("path")}
    folders |= {f"[[defenses]] {d['label']!r} path": d["options"]["diffence"].get("path")
                for d in plan["defenses"] if "diffence" in d["options"]}
    for where, folder in folders.items():
        if folder is None:
            continue
        configs = sorted(Path(folder).glob("**/unet/config.json"))
        for config in configs:
            try:
                unet = json.loads(config.read_text())
            except ValueError as exc:
                raise ConfigError(f"{where}: {str(config)!r} is not valid JSON ({exc})") from exc
            size, channels = unet.get("sample_size"), unet.get("in_channels")
            if (channels, size) != (x.shape[1], x.shape[-1]):
                raise ConfigError(f"{where}: the diffusion model in {folder!r} is for {channels}x{size}px images, "
                                  f"the data are {x.shape[1]}x{x.shape[-1]}px")


def prepare(plan: dict, log: Callable[[str], None], timings: dict, inputs: Inputs | None = None,
            stages: Stages | None = None) -> Prepared:
    """Stage 1: data, roles, the target and the defender's DDPM (each trained model kept in ``stages``)."""
    inputs = inputs or read_inputs(plan)
    x, y, split, nb_classes, model = inputs.x, inputs.y, inputs.split, inputs.nb_classes, inputs.model
    stages = stages or Stages(None)
    training = {}
    if model is None:
        target = plan["target"]
        recipe = training_recipe(plan, {"model": target["model"], **target["train"]}, nb_classes, x.shape[1],
                                 reference=(x[split.defender_nonmembers], y[split.defender_nonmembers]))
        with phase(f"[1/6] training the target ({target['model']}) on {len(split.members)} members", timings,
                   "target_s", log):
            model, metrics = stages.model(
                "target", stage_key(recipe=recipe.key, members=split.members.tolist(), seed=plan["run"]["seed"],
                                    **({"canaries": split.canaries.tolist(), "canary_labels": y[split.canaries].tolist(),
                                        "canary_kind": plan["roles"]["canary_kind"]} if len(split.canaries) else {})),
                recipe.build, lambda: recipe.train_with_metrics(x[split.members], y[split.members], plan["run"]["seed"]))
        model = model.eval()
        check_target(model, x, nb_classes)
        training = {"target": {"recipe": recipe.key, **metrics}}
    else:
        source = plan["target"].get("weights", "the caller")
        log(f"[1/6] the target {plan['target'].get('model', type(model).__name__)} from {source}: "
            f"{len(split.members)} members of {len(x)} records, {nb_classes} classes")
    prep = Prepared(x=x, y=y, split=split, model=model, nb_classes=nb_classes, test=inputs.test, training=training)
    prep.target_accuracy = _accuracies(prep)
    log("      target accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in prep.target_accuracy.items()))
    if _needs_defender_ddpm(plan):
        prep.reconstructor = _defender_ddpm(plan, prep, log, timings, plan["run"]["progress"], stages)
    elif any("diffence" in d["name"] for d in plan["defenses"]):
        log("[2/6] the defender's diffusion model: each Diffence defense loads its own (options.path)")
    else:
        log("[2/6] no diffusion model: no Diffence defense in the plan")
    return prep


def _accuracies(prep: Prepared) -> dict[str, float]:
    from ..classify import probabilities
    from .metrics import accuracy

    members = prep.split.members
    out = {"train": accuracy(probabilities(prep.model, torch.from_numpy(prep.x[members])).numpy(), prep.y[members])}
    if prep.test is not None:
        out["test"] = accuracy(probabilities(prep.model, torch.from_numpy(prep.test[0])).numpy(), prep.test[1])
    return out


def _needs_defender_ddpm(plan: dict) -> bool:
    return any("diffence" in d["name"] and "path" not in d["options"]["diffence"] for d in plan["defenses"])


def _compiled(plan: dict, ddpm):
    """``ddpm``, compiled when ``[run].compile`` asks for it (``Reconstructor.compile``)."""
    return ddpm.compile() if plan["run"]["compile"] else ddpm


def _defender_ddpm(plan: dict, prep: Prepared, log, timings: dict, progress: bool, stages: Stages):
    from ..reconstruct import Reconstructor

    d = plan["diffusion"]
    if "path" in d:
        log(f"[2/6] the defender's diffusion model from {d['path']}")
        try:
            ddpm = Reconstructor.from_pretrained(d["path"], placement(plan)["device"])
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"[diffusion].path: {exc}") from exc
        return _compiled(plan, ddpm)
    budget = f", at most {d['seconds']:.0f} s" if d.get("seconds") else ""
    records = ddpm_records(plan, prep.split)
    what = "the same members" if d["data"] == "members" else f"{len(records)} public records"
    with phase(f"[2/6] training the DDPM on {what} ({d['steps']} steps{budget}, t <= {d['max_timestep']})",
               timings, "ddpm_s", log):
        config = unet_config(plan, prep.x)
        kind = plan["roles"]["canary_kind"] if len(prep.split.canaries) else None  # shuffled canaries change x
        key = stage_key(diffusion=d, unet=config, members=records.tolist(), seed=plan["run"]["seed"],
                        device=placement(plan), canaries=kind)
        ddpm = stages.ddpm("defender-ddpm", key,
                           lambda: train_ddpm(plan, prep.x[records], config, plan["run"]["seed"], d["steps"],
                                              d["max_timestep"], progress, d["kind"]), placement(plan)["device"])
    _compiled(plan, ddpm)
    runs = [m.training for m in ddpm.models] if hasattr(ddpm, "models") else [ddpm.training]
    log(f"      {d['kind']}: " + "; ".join(f"{r['steps']} DDPM steps ({r['stopped']})" for r in runs))
    record = runs[0] if len(runs) == 1 else {"kind": d["kind"], "models": runs}
    prep.training["defender_ddpm"] = {**record, "data": d["data"], "records": len(records)}
    return ddpm


def ddpm_records(plan: dict, split) -> np.ndarray:
    """The records the defender's DDPM trains on: the target's members, or ``split.public_data``."""
    return split.members if plan["diffusion"]["data"] == "members" else split.public_data


# ---- stage 2 -----------------------------------------------------------------------------------------------

def defense_seed(plan: dict, draw: int = 0) -> int | None:
    """The Diffence seed of the ``draw``-th defense seed: derived from ``[run].seed`` ("derived") or from the
    plan's secret (None: each defense's own ``seed`` option)."""
    from ..randomness import experiment_seed

    if plan["run"]["defense_seed"] == "derived":
        base = plan["run"]["seed"]
        return experiment_seed(base) if draw == 0 else experiment_seed(base, f"diffence-draw-{draw}")
    if draw == 0:
        return None
    secrets = [d["options"]["diffence"]["seed"] for d in plan["defenses"] if "seed" in d["options"].get("diffence", {})]
    return experiment_seed(secrets[0] if secrets else 0, f"diffence-draw-{draw}")


def build_stage(name: str, options: dict, prep: Prepared, plan: dict, draw: int = 0, t: int | None = None):
    """One registered defense, built with its options (a Diffence stage on the defender's DDPM by default)."""
    from ..plugins import get_defenses

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
        if placement(plan)["bf16"] or plan["run"]["reconstruct_bf16"]:
            options.setdefault("autocast", torch.bfloat16)
        options.setdefault("max_batch", plan["run"]["max_batch"])
    try:
        stage = entry.factory(**options)
    except (TypeError, ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"[[defenses]] {name!r}: {exc}") from exc
    if name == "diffence":
        stage.progress = plan["run"]["progress"]
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
        from .executor import candidates_in_shards

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


def tune_t(plan: dict, prep: Prepared, recon: Reconstructions, draw: int = 0) -> tuple[int | None, list | None]:
    """The noise step the defender's calibration chooses among ``[diffusion].t_choices`` (Scenario 1's
    criterion, on its known records), with the search; (None, None) when the plan offers none."""
    choices = plan["diffusion"]["t_choices"]
    if not choices:
        return None, None
    first = next(d for d in plan["defenses"] if "diffence" in d["name"] and "path" not in d["options"]["diffence"])
    base = build_stage("diffence", {**first["options"]["diffence"], "scenario": 1}, prep, plan, draw, t=choices[0])
    known = ("defender_members", "defender_nonmembers")
    found = {t: tuple(recon.get(base.with_config(t=t), "", known).values()) for t in choices}
    tuned = base.tune_from_candidates(found)
    return tuned.config.t, tuned.calibration.extra.get("t_search")


def _fast(pre: list, post: list) -> bool:
    """Whether a pipeline can be released from shared candidates: at most one Diffence stage before the
    classifier, and post-inference stages fitted on released vectors (or needing no fit)."""
    from ..defense import Diffence

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


def build_defense(spec: dict, prep: Prepared, plan: dict, draw: int = 0, t: int | None = None) -> Defense:
    """A row's defense from its plan entry: its stages built, pre- and post-inference in the listed order."""
    from ..defense import Diffence
    from ..plugins import DefensePipeline, get_defenses

    registry = get_defenses()
    pre, post = [], []
    for name in spec["name"]:
        stage = build_stage(name, spec["options"][name], prep, plan, draw, t if name == "diffence" else None)
        (pre if registry[name].stage == "pre_inference" else post).append(stage)
    pipeline = DefensePipeline(prep.model, pre, post)
    diffence = pre[0] if len(pre) == 1 and isinstance(pre[0], Diffence) else None
    return Defense(label=spec["label"], pre=pre, post=post, pipeline=pipeline, diffence=diffence)


def defend(plan: dict, prep: Prepared, executor, log, timings: dict) -> Defended:
    """Stage 2: fit every defense on the defender's known records and release every role once per query."""
    queries = {"": prep.x} | ({"flip": hflip(prep.x)} if plan["attacks"]["augment"] else {})
    recon = Reconstructions(prep, queries, executor, plan["run"]["shard_size"])
    released = {q: {"undefended": undefended_releases(prep.model, xq, prep.split)} for q, xq in queries.items()}
    inputs = sum(len(getattr(prep.split, r)) for r in roles_of(prep.split))
    with phase(f"[3/6] defending: {len(plan['defenses'])} defenses on {inputs} inputs", timings, "diffence_s", log):
        tuned, search = tune_t(plan, prep, recon)
        if tuned is not None:
            log(f"      calibration chose t = {tuned} among {plan['diffusion']['t_choices']}")
        defenses = {}
        for spec in plan["defenses"]:
            on_own_ddpm = "diffence" in spec["name"] and "path" not in spec["options"]["diffence"]
            defense = build_defense(spec, prep, plan, t=tuned if on_own_ddpm else None)
            fast = _fast(defense.pre, defense.post)
            for q, rel in (_release_fast(defense, prep, recon, queries) if fast
                           else _release_generic(defense, prep, queries)).items():
                released[q][spec["label"]] = rel
            if defense.diffence is not None and defense.diffence.calibration is not None and search:
                defense.diffence.calibration.extra["t_search"] = search
            defenses[spec["label"]] = defense
    return Defended(defenses=defenses, released=released, queries=queries, recon=recon)


# ---- stage 3 -----------------------------------------------------------------------------------------------

def _unet_of(reconstructor) -> dict:
    unet = reconstructor.unet if hasattr(reconstructor, "unet") else reconstructor.models[0].unet
    return {k: v for k, v in unet.config.items() if not k.startswith("_")}


class AttackerDiffence:
    """The attacker's own copies of Diffence: one DDPM per UNet architecture and public setting, trained on its
    pool, and its reconstructions of its universe (per query) and of ART's shadow records, made once."""

    def __init__(self, plan: dict, prep: Prepared, universe: np.ndarray, queries: dict, refs, log, armed,
                 stages: Stages | None = None) -> None:
        self.plan, self.prep, self.universe, self.queries, self.refs = plan, prep, universe, queries, refs
        self.log, self.armed, self.cache, self.stages = log, armed, {}, stages or Stages(None)

    def get(self, defense) -> dict:
        """{"mine": Diffence, "images": q -> recon, "refs": q -> reference candidates, "pool": recon | None}."""
        from ..defense import Diffence
        from ..randomness import experiment_seed

        c, plan, prep = defense.config, self.plan, self.prep
        unet = _unet_of(defense.reconstructor)
        key = json.dumps([unet, c.n, c.t, c.k, c.levels], sort_keys=True, default=str)
        if key not in self.cache:
            attacks, run = plan["attacks"], plan["run"]
            steps = attacks.get("attacker_ddpm_steps", plan["diffusion"]["steps"])
            public = plan["diffusion"]["data"] == "public"  # then it has the defender's data: it is public
            pool = ddpm_records(plan, prep.split) if public else \
                prep.split.attacker_pool[: attacks.get("attacker_ddpm_records") or None]
            limit = (defense.reconstructor.training or {}).get("max_timestep") or c.t
            where = "the public data" if public else "its pool"
            self.log(f"      the attacker's own DDPM: {steps} steps on {len(pool)} records of {where}, t <= {limit}")
            stage = stage_key(diffusion=plan["diffusion"], unet=unet, steps=steps, limit=limit, pool=pool.tolist(),
                              seed=run["seed"] + 1, device=placement(plan))
            ddpm = self.stages.ddpm(f"attacker-ddpm-{stage}", stage,
                                    lambda: train_ddpm(plan, prep.x[pool], unet, run["seed"] + 1, steps, limit,
                                                       run["progress"]), placement(plan)["device"])
            self.armed.training.setdefault("attacker_ddpm", {**ddpm.training, "data": "public" if public else "pool",
                                                             "records": len(pool)})
            _compiled(plan, ddpm)
            mine = Diffence(ddpm, **{**c.to_dict(), "seed": experiment_seed(run["seed"] + 1)}, progress=run["progress"],
                            autocast=defense.autocast)
            images = {q: mine.reconstructions(torch.from_numpy(xq[self.universe])) for q, xq in self.queries.items()}
            refs = {q: reference_candidates(self.refs, mine, xq, self.universe, images[q])
                    for q, xq in self.queries.items()}
            pool_images = None
            if "shadow_models" in attacks["art"]:
                shadow = shadow_pool(prep.split, 2 * len(prep.split.members))
                pool_images = mine.reconstructions(torch.from_numpy(prep.x[shadow]))
            self.cache[key] = {"mine": mine, "images": images, "refs": refs, "pool": pool_images}
        return self.cache[key]


def attacker_view(defense: Defense, q: str, plain: AttackerView, copies: AttackerDiffence, plan: dict,
                  prep: Prepared) -> AttackerView:
    """The references' answers through the attacker's copy of ``defense`` (defense-aware), or their plain
    answers (defense-unaware) where a stage cannot be copied."""
    seed = plan["run"]["seed"] + 1
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


def arm(plan: dict, prep: Prepared, defended: Defended, executor, out: Path, log, timings: dict) -> Armed:
    """Stage 3: the attacker's reference models and its copy of every defense."""
    from .references import train_references

    attacks, armed = plan["attacks"], Armed()
    if not attacks["references"]:
        return armed
    x, y, split = prep.x, prep.y, prep.split
    with phase(f"[4/6] the attacker: {attacks['references']} reference models and its copy of every defense",
               timings, "attacker_s", log):
        universe = attacker_universe(split, 2 * len(split.members))
        recipe = reference_recipe(plan, prep.nb_classes, x, y, split)
        refs = train_references(recipe, x[universe], y[universe], attacks["references"], seed=plan["run"]["seed"] + 1,
                                cache=out / "reference-cache", progress=plan["run"]["progress"], executor=executor)
        copies = AttackerDiffence(plan, prep, universe, defended.queries, refs, log, armed, Stages(out))
        armed.references, armed.copies = refs, copies
        for q, xq in defended.queries.items():
            plain = undefended_view(refs, xq, universe)
            armed.views[q] = {"undefended": plain}
            for label, defense in defended.defenses.items():
                armed.views[q][label] = attacker_view(defense, q, plain, copies, plan, prep) if attacks["aware"] \
                    else plain
        for label, defense in defended.defenses.items():
            if attacks["aware"] and defense.diffence is not None and "shadow_models" in attacks["art"]:
                own = copies.get(defense.diffence)
                mine = own["mine"].with_config(scenario=defense.diffence.config.scenario)
                armed.shadows[label] = ShadowDiffence.for_split(mine, x, split, own["pool"], universe,
                                                                own["images"][""])
    return armed


# ---- stage 4 -----------------------------------------------------------------------------------------------

class Attacks:
    """The attack families a plan turns on (``families.plan_families``), built once, and the attacker's views
    and shadows they use on each release."""

    def __init__(self, plan: dict, prep: Prepared, armed: Armed) -> None:
        self.plan, self.prep, self.armed = plan, prep, armed
        self.families = plan_families(plan)
        self.spread_families = [f for f in self.families if f.name in SPREAD_FAMILIES]

    def row(self, label: str, released: dict, flipped: dict | None, kept: float, defense: Defense | None,
            split: MembershipSplit | None = None):
        """One defense's row: every attack on ``released`` (and ``flipped`` queries), with intervals, scored on
        the evaluation records of ``split`` (default: the audit's)."""
        run, prep = self.plan["run"], self.prep
        view = self.armed.views.get("", {}).get(label)
        flip = None
        if flipped is not None and view is not None:
            flip = (flipped, self.armed.views["flip"][label])
        return evaluate_defense(label, released, prep.x, prep.y, split or prep.split, view=view, flipped=flip,
                                families=self.families, kept=kept, seed=run["seed"], bootstrap=run["bootstrap"],
                                pipeline=defense.pipeline if defense is not None else None, model=prep.model,
                                nb_classes=prep.nb_classes, shadow_answer=self.armed.shadows.get(label))


def attack(plan: dict, prep: Prepared, defended: Defended, suite: Attacks, log, timings: dict) -> list:
    """Stage 4: every attack on every release; changes from the undefended row; selection-draw spread."""
    draws, seed = plan["attacks"]["selection_draws"], plan["run"]["seed"]
    with phase("[5/6] attacking every defense (threshold, LiRA, RMIA, ART)", timings, "attacks_s", log):
        armed = suite.armed
        released = defended.released[""]
        kept = labels_kept(released)
        rows = []
        for label, probs in released.items():
            defense = defended.defenses.get(label)
            flipped = defended.released["flip"][label] if "flip" in defended.released else None
            row = suite.row(label, probs, flipped, kept[label], defense)
            if defense is not None and defense.plain_diffence and draws > 1:
                row.spread = selection_spread(defense.diffence, defense.candidates, prep.y, prep.split,
                                              armed.views.get("", {}).get(label), draws, seed=seed,
                                              families=suite.spread_families)
            if rows:
                row.change = compare_to(row, rows[0], seed=seed)
            rows.append(row)
            log(f"      {label}: {row.best.attack} AUC {row.best.auc:.3f}")
    return rows


def as_evaluation(released: dict) -> dict:
    """A release with its canaries in place of its evaluation records (read with ``canary_split``)."""
    out = {r: p for r, p in released.items() if r not in CANARY_ROLES}
    out["eval_members"], out["eval_nonmembers"] = released["canary_members"], released["canary_nonmembers"]
    return out


def attack_canaries(plan: dict, prep: Prepared, defended: Defended, suite: Attacks, log, timings: dict) -> list:
    """Stage 4b: every attack on every release again, scored on the canaries alone (the worst case), fitted
    and chosen on the attacker's records as in the average case; changes from the undefended canary row.
    Empty without ``[roles].canaries``."""
    if not len(prep.split.canary_members):
        return []
    split, seed = prep.split.canary_split(), plan["run"]["seed"]
    kind = CANARY_WORDS[plan["roles"]["canary_kind"]]
    with phase(f"[5/6] the canaries: {len(split.eval_members)} {kind} members and as many non-members",
               timings, "canaries_s", log):
        released, rows = defended.released[""], []
        kept = labels_kept(released)
        for label, probs in released.items():
            flipped = as_evaluation(defended.released["flip"][label]) if "flip" in defended.released else None
            row = suite.row(label, as_evaluation(probs), flipped, kept[label], defended.defenses.get(label), split)
            if rows:
                row.change = compare_to(row, rows[0], seed=seed)
            rows.append(row)
            lira = row.attack("lira")
            log(f"      {label} on the canaries: {row.best.attack} AUC {row.best.auc:.3f}"
                + (f", LiRA TPR@1%FPR {lira.tpr[0.01]:.3f}" if lira is not None and lira.tpr.get(0.01) is not None
                   else ""))
    return rows


def defense_seed_spread(plan: dict, prep: Prepared, defended: Defended, suite: Attacks, rows: list, log,
                        timings: dict) -> dict | None:
    """Every plain Diffence row under ``[attacks].defense_seeds - 1`` further defense seeds, each reconstructing,
    calibrating (and choosing t) again, against the same attacker: per seed the chosen t, the chosen attack's
    AUC and the changes; over all seeds the mean and sd of each change."""
    seeds, seed = plan["attacks"]["defense_seeds"], plan["run"]["seed"]
    names = [label for label, d in defended.defenses.items() if d.plain_diffence]
    if seeds < 2 or not names:
        return None
    by_label = {r.defense: r for r in rows}
    per_seed = {n: [{"draw": 0, "t": defended.defenses[n].diffence.config.t, "best_auc": by_label[n].best.auc,
                     "best_attack": by_label[n].best.attack, "change": by_label[n].change}] for n in names}
    with phase(f"[5b/6] the defense's own noise: {seeds - 1} more defense seeds", timings, "defense_seeds_s", log):
        specs = {d["label"]: d for d in plan["defenses"]}
        for draw in range(1, seeds):
            recon = Reconstructions(prep, {"": prep.x}, defended.recon.executor, plan["run"]["shard_size"])
            tuned, _ = tune_t(plan, prep, recon, draw)
            fresh = {n: build_defense(specs[n], prep, plan, draw, tuned) for n in names}
            released = {n: _release_fast(fresh[n], prep, recon, {"": prep.x})[""] for n in names}
            kept = labels_kept({"undefended": defended.released[""]["undefended"], **released})
            for n in names:
                row = suite.row(n, released[n], None, kept[n], fresh[n])
                per_seed[n].append({"draw": draw, "t": fresh[n].diffence.config.t, "best_auc": row.best.auc,
                                    "best_attack": row.best.attack, "change": compare_to(row, rows[0], seed=seed)})
                log(f"      defense seed {draw}, {n}: {row.best.attack} AUC {row.best.auc:.3f}")
    return {"seeds": seeds, "rows": per_seed, "summary": {n: _seed_summary(d) for n, d in per_seed.items()}}


def _seed_summary(draws: list[dict]) -> dict:
    figures = {"best": [d["change"]["best"]["auc_change"] for d in draws]}
    if all("lira" in d["change"] for d in draws):
        figures["lira"] = [d["change"]["lira"]["auc_change"] for d in draws]
        if all("tpr@0.01_change" in d["change"]["lira"] for d in draws):
            figures["lira_tpr@0.01"] = [d["change"]["lira"]["tpr@0.01_change"] for d in draws]
    return {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "seeds": len(v)} for k, v in figures.items()}


# ---- stage 5 and the whole run -----------------------------------------------------------------------------

def _diffusion_setting(plan: dict) -> Any:
    """The defender's diffusion model as the report names it: its recipe only when the run trains it."""
    if "path" in plan["diffusion"]:
        return f"loaded from {plan['diffusion']['path']}"
    if _needs_defender_ddpm(plan):
        return plan["diffusion"]
    if any("diffence" in d["name"] for d in plan["defenses"]):
        return "not trained: each Diffence defense loads its own (options.path)"
    return "none (no Diffence defense)"


def _defense_setting(d: dict, defense: Defense | None) -> dict:
    """A defense's options as given, and for a Diffence stage every setting it ran with (defaults included,
    the secret seed left out) and its diffusion model's training."""
    import inspect

    from ..plugins import get_defenses

    registry, shown = get_defenses(), {}
    for name, options in d["options"].items():
        entry = registry.get(name)
        params = inspect.signature(entry.factory).parameters.values() if entry is not None else ()
        defaults = {p.name: p.default for p in params if p.default not in (inspect.Parameter.empty, None)}
        shown[name] = {k: v for k, v in {**defaults, **options}.items() if k not in ("seed", "progress")}
    stage = getattr(defense, "diffence", None)
    if stage is not None:
        config = {f.name: getattr(stage.config, f.name) for f in fields(stage.config) if f.name != "seed"}
        run = getattr(stage.reconstructor, "training", None) or {}
        if "steps" in run:
            config["diffusion model"] = f"{run['steps']} steps on {run.get('images', ['?'])[0]} images, " \
                                        f"t <= {run.get('max_timestep')}"
        shown["diffence"] = {**shown.get("diffence", {}), **config}
    return shown


def settings_summary(plan: dict, defended: Defended | None = None) -> dict:
    """What the report shows of a plan: the target, data, roles, every defense's settings, the attacker."""
    target, data = plan["target"], plan["data"]
    where = data.get("npz") or data["dataset"]
    return {
        "title": f"{target['model']} on {Path(where).name if 'npz' in data else where}",
        "plan": plan["name"],
        "target": target["model"] + (f" from {target['weights']}" if "weights" in target else
                                     f" trained with {target['train']}"),
        "data": data.get("npz") or f"{data['dataset']}" + (f" in {data['folder']}" if "folder" in data else ""),
        "members": {k: v for k, v in plan["members"].items()},
        "roles": plan["roles"],
        "diffusion": _diffusion_setting(plan),
        **{f"defense {d['label']}": _defense_setting(d, defended.defenses.get(d["label"]) if defended else None)
           for d in plan["defenses"]},
        "attacks": plan["attacks"],
        "run seed": plan["run"]["seed"],
    }


def write_results(plan: dict, prep: Prepared, defended: Defended, armed: Armed, rows: list, noise: dict | None,
                  timings: dict, start: float, out: Path, load: dict | None = None,
                  canaries: list | None = None) -> dict:
    """Stage 5: ``results.json``, the plots and ``report.html``; returns the results."""
    from .report import machine, write_report

    calibration = {label: asdict(d.diffence.calibration) for label, d in defended.defenses.items()
                   if d.diffence is not None and d.diffence.calibration is not None}
    results = {"format": RESULTS_FORMAT, "settings": settings_summary(plan, defended), "plan": shareable(plan),
               "target_accuracy": prep.target_accuracy, "training": {**prep.training, **armed.training},
               "records": {"evaluation": records_digest(prep.split.eval_members, prep.split.eval_nonmembers)},
               "calibration": calibration, "rows": [r.to_dict() for r in rows],
               **({"defense_seeds": noise} if noise else {}),
               **({"canaries": {"kind": plan["roles"]["canary_kind"], "members": len(prep.split.canary_members),
                                "nonmembers": len(prep.split.canary_nonmembers),
                                "rows": [r.to_dict() for r in canaries]}} if canaries else {}), "timings": timings,
               "seconds": time.perf_counter() - start, "machine": {**machine(), "at_start": load}}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    write_report(results, defended.released[""], {r: prep.y[getattr(prep.split, r)] for r in roles_of(prep.split)},
                 out)
    return results


def write_record(plan: dict, out: Path) -> None:
    """``config.json``: the resolved plan, secret seed included, readable by its owner only; a rerun from it
    gives the same numbers."""
    record = json.loads(json.dumps(plan, default=str))
    record["run"]["overwrite"] = False  # a rerun from the record never replaces a folder silently
    path = out / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(record, indent=2))
    os.chmod(path, 0o600)


@dataclass
class Run:
    """What ``run_plan`` produced."""

    results: dict
    out: Path


@dataclass
class Staged:
    """A plan through its first three stages: prepared, defended and armed, ready to attack (see ``run_stages``)."""

    prep: Prepared
    defended: Defended
    armed: Armed
    timings: dict
    load: dict
    out: Path


def run_stages(plan: dict, log: Callable[[str], None] | None = None, executor=None) -> Staged:
    """Stages 1-3 of a resolved plan in its folder ``[run].out``: the data, target and DDPM; every defense's
    releases; the attacker's references and copies. ``run_plan`` attacks what this returns; a benchmark that
    studies its own attacker (``benchmarks/bench_adaptive.py``) starts from it too."""
    from .executor import get_executor
    from .report import describe_load, machine_load

    log, timings, run = log or logger.info, {}, plan["run"]
    out = Path(run["out"])
    mode = claim_folder(plan)  # refuses a folder it must not touch; adopts a resumed run's secret seeds
    torch.manual_seed(run["seed"])
    inputs = read_inputs(plan)  # every check of the data, before the folder is made or anything trained
    make_folder(out, mode)
    if mode == "resume":
        log(f"resuming the unfinished run in {out}: its trained models are reused")
    write_record(plan, out)
    load = machine_load()
    log(describe_load(load))
    prep = prepare(plan, log, timings, inputs, Stages(out))
    threads = run["threads"] or torch.get_num_threads()
    executor = executor or get_executor(run["executor"], address=run["address"] or None, threads=threads,
                                        progress=run["progress"])
    defended = defend(plan, prep, executor, log, timings)
    armed = arm(plan, prep, defended, executor, out, log, timings)
    return Staged(prep=prep, defended=defended, armed=armed, timings=timings, load=load, out=out)


def run_plan(plan: dict, log: Callable[[str], None] | None = None, executor=None) -> Run:
    """Run a resolved plan (``plan.load_plan`` / ``load_preset``) through every stage into ``[run].out``.

    Reference models and reconstruction shards run on ``executor`` (default: the one ``[run].executor``
    names, local or Ray); the results do not depend on which.
    """
    start, log = time.perf_counter(), log or logger.info
    s = run_stages(plan, log, executor)
    suite = Attacks(plan, s.prep, s.armed)  # ART's estimator and the plugins' attacks, built once
    rows = attack(plan, s.prep, s.defended, suite, log, s.timings)
    canaries = attack_canaries(plan, s.prep, s.defended, suite, log, s.timings)
    noise = defense_seed_spread(plan, s.prep, s.defended, suite, rows, log, s.timings)
    with phase("[6/6] writing results", s.timings, "report_s", log):
        results = write_results(plan, s.prep, s.defended, s.armed, rows, noise, s.timings, start, s.out, s.load,
                                canaries)
    return Run(results=results, out=s.out)
