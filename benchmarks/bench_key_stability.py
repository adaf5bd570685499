"""How often a near-duplicate keeps the defense's key (hence its noise and selection draw), per key,
perturbation kind and size: the measured side of the deterministic mode's guarantee. Hashing only, no
reconstruction, so it runs in seconds.

    python benchmarks/bench_key_stability.py --cifar ../shared/data/cifar10 --out runs/key-stability.json

Digits (17 grey levels, levels = 16): all 1,797 records. CIFAR-10 (8-bit, levels = 255): 2,000 training
records, when ``--cifar`` names the folder. Each record gets ``--copies`` perturbed copies per cell; the
flat-region attack's cells (one and two grey levels on the flattest pixels, ``--flat-copies`` copies) also
report how many distinct keys, hence fresh draws of the defense's randomness, the M copies of a record get.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffence_plugin.attacks.adaptive import perturbed_copies
from diffence_plugin.data import digits_images
from diffence_plugin.randomness import experiment_seed, input_keys
from diffence_plugin.audit.machine import machine


def kept(x: np.ndarray, kind: str, size: float, key: str, levels: int, copies: int, seed: int) -> float:
    """Share of (record, copy) pairs whose key equals the record's own key."""
    secret = experiment_seed(seed, "key-stability")
    own = input_keys(torch.from_numpy(x), key, levels=levels, seed=secret)
    same = 0
    for copy in perturbed_copies(x, kind, copies, size=size, seed=seed):
        same += sum(a == b for a, b in zip(own, input_keys(torch.from_numpy(copy), key, levels=levels, seed=secret)))
    return same / (copies * len(x))


def distinct(x: np.ndarray, kind: str, size: float, key: str, levels: int, copies: int, seed: int) -> float:
    """Mean number of distinct keys among each record's ``copies`` perturbed copies."""
    secret = experiment_seed(seed, "key-stability")
    keys = [input_keys(torch.from_numpy(c), key, levels=levels, seed=secret)
            for c in perturbed_copies(x, kind, copies, size=size, seed=seed)]
    return float(np.mean([len({k[i] for k in keys}) for i in range(len(x))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar", default=None, help="CIFAR-10 folder (optional)")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--flat-copies", type=int, default=64, help="copies M of the flat-region cells")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/key-stability.json")
    args = parser.parse_args()
    data = {"digits": (digits_images()[0], 16)}
    if args.cifar:
        from diffence_plugin.data import load_dataset

        x = load_dataset("cifar10", args.cifar).x_train[:2000]
        data["cifar10"] = (x, 255)
    rows = []
    for name, (x, levels) in data.items():
        q = 1.0 / levels
        cells = [("zero_sign", 0.0), ("ulp", 0.0), ("grey_level", 1 / 255), ("gaussian", 1 / 255)]
        cells += [("grey_level", s * q) for s in (1, 2, 4, 8)] + [("gaussian", s * q) for s in (0.25, 0.5, 1, 2)]
        for kind, size in cells:
            row = {"data": name, "levels": levels, "kind": kind, "size": size}
            for key in ("raw", "quantised", "lsh"):
                row[key] = kept(x, kind, size or 1 / 255, key, levels, args.copies, args.seed)
            rows.append(row)
            print(f"| {name} | {kind} | {size:.4f} ({size * levels:.2f} grey levels) | "
                  + " | ".join(f"{row[k]:.3f}" for k in ("raw", "quantised", "lsh")) + " |", flush=True)
        for grey in (1, 2):
            row = {"data": name, "levels": levels, "kind": "flat", "size": grey * q, "copies": args.flat_copies}
            for key in ("raw", "quantised", "lsh"):
                row[key] = kept(x, "flat", grey * q, key, levels, args.flat_copies, args.seed)
                row[f"{key}_distinct"] = distinct(x, "flat", grey * q, key, levels, args.flat_copies, args.seed)
            rows.append(row)
            print(f"| {name} | flat, M = {args.flat_copies} | {grey * q:.4f} ({grey} grey levels) | "
                  + " | ".join(f"{row[k]:.3f} ({row[k + '_distinct']:.1f} keys)" for k in ("raw", "quantised", "lsh"))
                  + " |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "copies": args.copies, "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
