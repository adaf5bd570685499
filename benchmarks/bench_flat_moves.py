"""How much the flat-region attack's copies move each Diffence release, per key and pick rule: the share of
copies that keep the record's key and the share whose released vector moves by more than 0.05 (max over
classes) from the record's own release. No attack is fitted; it explains the recovery figures of
``bench_adaptive.py --only flat``.

    python benchmarks/bench_flat_moves.py --out runs/adaptive-flat-stable --copies 8

The engine stages come from ``OUT/engine`` (the demo preset as ``bench_adaptive.py`` runs it; trained there if
missing). The records are the first ``--records`` of the attacker's known and the evaluation records.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_adaptive import DEFENSES, ROLES4, Releases, engine_plan

from diffence_plugin.attacks.adaptive import perturbed_copies
from diffence_plugin.audit.run import run_stages
from diffence_plugin.audit.machine import machine


def moves(releases: Releases, x: np.ndarray, copies: np.ndarray, threshold: float) -> dict:
    """Key kept, and per defense the median of max |release change| and how many (record, copy) pairs move
    by more than ``threshold``, among all pairs and among those that keep the key."""
    base, own = releases(x), releases.base.keys(torch.from_numpy(x))
    kept, moved = [], {d: [] for d in DEFENSES}
    for copy in copies:
        answer = releases(copy)
        kept.append([a == b for a, b in zip(own, releases.base.keys(torch.from_numpy(copy)))])
        for d in DEFENSES:
            moved[d].append(np.abs(answer[d] - base[d]).max(axis=1))
    kept = np.array(kept)
    return {"key_kept": float(kept.mean()), "pairs": int(kept.size), "pairs_key_kept": int(kept.sum()),
            **{d: {"median": float(np.median(v)), "count_above": int(np.sum(np.array(v) > threshold)),
                   "count_above_key_kept": int(np.sum((np.array(v) > threshold) & kept))}
               for d, v in moved.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/adaptive-flat-stable")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--keys", default="quantised,lsh")
    args = parser.parse_args()
    start = time.perf_counter()
    args.quick, args.preset, args.data, args.set = False, "demo", None, []
    staged = run_stages(engine_plan(args), log=lambda line: print(line, flush=True))
    x, split, model = staged.prep.x, staged.prep.split, staged.prep.model
    records = np.concatenate([getattr(split, r) for r in ROLES4])[: args.records]
    s3 = staged.defended.defenses["scenario_3"].diffence
    defender = (x[split.defender_members], x[split.defender_nonmembers])
    copies = perturbed_copies(x[records], "flat", args.copies, size=1 / s3.config.levels, seed=args.seed + 7)
    rows = []
    for key in args.keys.split(","):
        for pick in ("rank", "stable"):
            row = {"key": key, "pick": pick, **moves(Releases(s3.with_config(key=key, pick=pick), model, defender),
                                                     x[records], copies, args.threshold)}
            rows.append(row)
            print(f"{key}/{pick}: key kept {row['key_kept']:.3f}; " + "; ".join(
                f"{d} median {row[d]['median']:.1e}, moved > {args.threshold} {row[d]['count_above']}/{row['pairs']} "
                f"({row[d]['count_above_key_kept']}/{row['pairs_key_kept']} that keep the key)" for d in DEFENSES),
                flush=True)
    out = Path(args.out) / f"flat-moves-{args.keys.replace(',', '-')}.json"
    out.write_text(json.dumps({"rows": rows, "seconds": time.perf_counter() - start, "machine": machine(),
                               "settings": vars(args)}, indent=2, default=str))
    print(f"wrote {out} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
