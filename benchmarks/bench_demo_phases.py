"""Time the demo's expensive phases at 1 and 2 torch threads: 16 digits reference models, DDPM training,
reconstruction, and LiRA/RMIA scoring. Each setting runs in a fresh process so thread pools do not mix.

    python benchmarks/bench_demo_phases.py --threads 1 2 --references 16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from diffence_plugin import Diffence, train_diffusion
from diffence_plugin.data import digits_images
from diffence_plugin.attacks import LiRA, RMIA, ReferenceRecipe, membership_split, train_references
from diffence_plugin.attacks.lira import logit_confidence

refs_count, inputs = int(sys.argv[2]), int(sys.argv[3])
x, y = digits_images()
split = membership_split(len(x), 300, 75, 75, 150, seed=0, population=150)
out = {"threads": torch.get_num_threads()}
recipe = ReferenceRecipe.from_training("digits_mlp", 10, 1, epochs=60, batch_size=64)
universe = np.concatenate([split.members, split.population, split.attacker_pool])[:600]
start = time.perf_counter()
refs = train_references(recipe, x[universe], y[universe], refs_count, seed=1, progress=False)
out["references_s"] = time.perf_counter() - start
start = time.perf_counter()
ddpm = train_diffusion(torch.from_numpy(x[split.members]), steps=400, max_timestep=100, seed=0, progress=False)
out["ddpm_400_steps_s"] = time.perf_counter() - start
defense = Diffence(ddpm, n=50, t=100, k=10, scenario=3, seed=2**40, levels=16)
start = time.perf_counter()
defense.candidates(refs.models[0], torch.from_numpy(x[universe[:inputs]]))
out["reconstruct_ms_per_input"] = 1000 * (time.perf_counter() - start) / inputs
with torch.no_grad():
    probs = np.stack([torch.softmax(m(torch.from_numpy(x[universe])).double(), -1).numpy() for m in refs.models])
stats = logit_confidence(probs, y[universe])
start = time.perf_counter()
for _ in range(10):
    LiRA().score(stats[0], stats[1:], refs.in_mask[1:])
    RMIA().score(probs[0, np.arange(600), y[universe]], probs[1:, np.arange(600), y[universe]], None,
                 probs[0, np.arange(100), y[universe][:100]], probs[1:, np.arange(100), y[universe][:100]])
out["lira_plus_rmia_ms_600_records"] = 100 * (time.perf_counter() - start)
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--references", type=int, default=16)
    parser.add_argument("--inputs", type=int, default=100, help="inputs to reconstruct (N = 50, T = 100, k = 10)")
    args = parser.parse_args()
    rows = []
    for threads in args.threads:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(args.references), str(args.inputs)],
                              check=True, capture_output=True, text=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(json.dumps(row))
    print("\n| threads | 16 references (s) | DDPM 400 steps (s) | reconstruct (ms/input) | LiRA+RMIA (ms) |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['references_s']:.1f} | {r['ddpm_400_steps_s']:.1f} | "
              f"{r['reconstruct_ms_per_input']:.1f} | {r['lira_plus_rmia_ms_600_records']:.1f} |")


if __name__ == "__main__":
    main()
