"""Wall time of training digits reference models on the local executor and on Ray (a local Ray instance on
this machine's cores), and whether the two give bit-identical models.

    python benchmarks/bench_executor.py --references 16 --out runs/executor.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from diffence_plugin.attacks.references import ReferenceRecipe, train_references
from diffence_plugin.audit.executor import LocalExecutor
from diffence_plugin.data import digits_images
from diffence_plugin.audit.machine import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--records", type=int, default=600, help="the attacker's universe (each reference: half)")
    parser.add_argument("--epochs", type=int, default=60, help="the demo's target epochs")
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--out", default="runs/executor.json")
    args = parser.parse_args()
    from diffence_plugin.adapters.ray_executor import RayExecutor

    x, y = digits_images()
    x, y = x[: args.records], y[: args.records]
    recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=args.epochs, batch_size=64)
    timings, runs = {}, {}
    for name, make in (("local", lambda: LocalExecutor(threads=1, progress=False)),
                       ("ray", lambda: RayExecutor(threads=1, init={"num_cpus": args.cpus}))):
        clock = time.perf_counter()
        executor = make()
        ready = time.perf_counter()
        runs[name] = train_references(recipe, x, y, args.references, seed=0, progress=False, executor=executor)
        timings[name] = {"start_s": ready - clock, "train_s": time.perf_counter() - ready}
        print(f"{name}: {timings[name]['train_s']:.1f} s training (+{timings[name]['start_s']:.1f} s start)",
              flush=True)
    identical = all(torch.equal(p, q) for a, b in zip(runs["local"].models, runs["ray"].models)
                    for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    result = {"settings": vars(args), "timings": timings, "bit_identical": identical, "machine": machine()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n| executor | start s | {args.references} references s | per reference s |\n|---|---|---|---|")
    for name, t in timings.items():
        print(f"| {name} | {t['start_s']:.1f} | {t['train_s']:.1f} | {t['train_s'] / args.references:.2f} |")
    print(f"\nbit-identical models: {identical}")


if __name__ == "__main__":
    main()
