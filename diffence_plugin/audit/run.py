"""The run: the only module that knows the order of the stages (prepare, defend, arm, attack, write)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from diffence_plugin.audit.context import RunContext
from diffence_plugin.audit.plan import Plan
from diffence_plugin.audit.stages.arm import Armed, arm
from diffence_plugin.audit.stages.attack import Attacks, attack, attack_canaries, defense_seed_spread
from diffence_plugin.audit.stages.defend import Defended, defend
from diffence_plugin.audit.stages.prepare import Prepared, prepare, read_inputs
from diffence_plugin.audit.stages.write import collect_results, write_record, write_results
from diffence_plugin.audit.store import claim_folder, make_folder
from diffence_plugin.progress import logger


@dataclass
class Run:
    """What ``run_plan`` produced: the results (as ``results.json`` holds them) and the run's folder."""

    results: dict
    out: Path


@dataclass
class Staged:
    """A plan through its first three stages: prepared, defended and armed, ready to attack (see ``run_stages``)."""

    ctx: RunContext
    prep: Prepared
    defended: Defended
    armed: Armed
    load: dict


def run_stages(plan: Plan, log: Callable[[str], None] | None = None, executor=None) -> Staged:
    """Stages 1-3 of a resolved plan in its folder ``[run].out``: the data, target and DDPM; every defense's
    releases; the attacker's references and copies. ``run_plan`` attacks what this returns."""
    from diffence_plugin.audit.executor import get_executor
    from diffence_plugin.audit.machine import describe_load, machine_load

    run, log = plan.run, log or logger.info
    out = Path(run.out)
    mode = claim_folder(plan)  # refuses a folder it must not touch; adopts a resumed run's secret seeds
    torch.manual_seed(run.seed)
    inputs = read_inputs(plan)  # every check of the data, before the folder is made or anything trained
    make_folder(out, mode)
    if mode == "resume":
        log(f"resuming the unfinished run in {out}: its trained models are reused")
    write_record(plan, out)
    load = machine_load()
    log(describe_load(load))
    executor = executor or get_executor(run.executor, address=run.address or None,
                                        threads=run.threads or torch.get_num_threads(), progress=run.progress)
    ctx = RunContext(plan=plan, out=out, executor=executor, log=log)
    prep = prepare(ctx, inputs)
    defended = defend(ctx, prep)
    return Staged(ctx=ctx, prep=prep, defended=defended, armed=arm(ctx, prep, defended), load=load)


def run_plan(plan: Plan, log: Callable[[str], None] | None = None, executor=None) -> Run:
    """Run a resolved plan (``load_plan`` / ``load_preset``) through every stage into ``[run].out``.

    Reference models and reconstruction shards run on ``executor`` (default: the one ``[run].executor``
    names, local or Ray); the results do not depend on which.
    """
    start = time.perf_counter()
    s = run_stages(plan, log, executor)
    suite = Attacks(plan, s.prep, s.armed)  # ART's estimator and the plugins' attacks, built once
    rows = attack(s.ctx, s.prep, s.defended, suite)
    canaries = attack_canaries(s.ctx, s.prep, s.defended, suite)
    noise = defense_seed_spread(s.ctx, s.prep, s.defended, suite, rows)
    with s.ctx.phase("[6/6] writing results", "report_s"):
        results = collect_results(plan, s.prep, s.defended, s.armed, rows, noise, s.ctx.timings, start, s.load,
                                  canaries)
        write_results(results, s.ctx.out)
    return Run(results=results, out=s.ctx.out)
