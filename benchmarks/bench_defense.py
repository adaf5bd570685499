"""Time Diffence (reconstruction + classification + selection) and MemGuard per input, on CPU and CUDA.

The UNet is the DDPM CIFAR-10 UNet (35.7 M parameters, random weights: speed does not depend on them) or,
with --tiny, the small digits UNet; the classifier is a small CNN. Usage:

    python benchmarks/bench_defense.py --inputs 2 --n 50 --t 40 --k 10
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from diffusers import UNet2DModel
from torch import nn

from diffence_plugin import (
    Diffence,
    MemGuard,
    Reconstructor,
    cifar_unet_config,
    tiny_unet_config,
)


def small_cnn(channels: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(512, classes))


def naive_defend(defense: Diffence, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The public code's way: one reconstruction and one classifier call at a time (same maths)."""
    cfg, rec = defense.config, defense.reconstructor
    out = []
    with torch.no_grad():
        for image in x:
            image = image[None].to(rec.device)
            original = torch.log_softmax(model(image).double(), -1)
            cands = []
            for _ in range(cfg.n):
                recon = rec.reconstruct(image, 1, cfg.t, cfg.k, generator=torch.Generator().manual_seed(len(cands)),
                                        autocast=defense.autocast)[:, 0]
                cands.append(torch.log_softmax(model(recon).double(), -1))
            cand = torch.stack(cands, dim=1)
            match = cand.argmax(-1) == original.argmax(-1, keepdim=True)
            pick = int(match[0].nonzero()[0]) if match.any() else None
            out.append(cand[:, pick].exp() if pick is not None else original.exp())
    return torch.cat(out)


def measure(device: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    config = tiny_unet_config(8, 1) if args.tiny else cifar_unet_config()
    unet = UNet2DModel(**config).to(device)
    channels, size = config["in_channels"], config["sample_size"]
    model = small_cnn(channels).to(device).eval()
    autocast = torch.bfloat16 if device == "cuda" else None
    defense = Diffence(Reconstructor(unet), n=args.n, t=args.t, k=args.k, scenario=3, max_batch=args.max_batch,
                       autocast=autocast)
    x = torch.rand(args.inputs, channels, size, size)
    defense.defend(model, x[:1])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    defense.defend(model, x)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    naive_ms = None
    if args.naive_inputs:
        xs = x[: args.naive_inputs]
        if device == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        naive_defend(defense, model, xs)
        if device == "cuda":
            torch.cuda.synchronize()
        naive_ms = 1000 * (time.perf_counter() - begin) / len(xs)
    return dict(device=device, unet="tiny" if args.tiny else "ddpm-cifar10", inputs=args.inputs, n=args.n, t=args.t,
                k=args.k, max_batch=args.max_batch, naive_ms_per_input=naive_ms,
                speedup=None if naive_ms is None else naive_ms / (1000 * seconds / args.inputs),
                ms_per_input=1000 * seconds / args.inputs,
                images_per_s=args.inputs * args.n * (args.t // args.k) / seconds,
                threads=torch.get_num_threads(), cpu=platform.processor() or platform.machine(),
                torch=torch.__version__)


def measure_memguard(device_count: int, classes: int = 10, seed: int = 0) -> dict:
    """MemGuard's cost per input (CPU): its attack model fitted on 500 + 500 vectors, then a batch perturbed."""
    gen = torch.Generator().manual_seed(seed)
    members = torch.softmax(torch.randn(500, classes, generator=gen) * 6, -1)
    nonmembers = torch.softmax(torch.randn(500, classes, generator=gen) * 2, -1)
    guard = MemGuard(seed=seed).fit_probabilities(members, nonmembers)
    queries = torch.softmax(torch.randn(device_count, classes, generator=gen) * 4, -1)
    start = time.perf_counter()
    out = guard.perturb(queries)
    seconds = time.perf_counter() - start
    return dict(device="cpu", defense="memguard", inputs=device_count, classes=classes,
                ms_per_input=1000 * seconds / device_count, found=float(out.found.float().mean()),
                threads=torch.get_num_threads(), torch=torch.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--t", type=int, default=40)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--devices", default=None, help="comma-separated devices (default: cpu, and cuda if present)")
    parser.add_argument("--tiny", action="store_true", help="use the small digits UNet instead of the CIFAR one")
    parser.add_argument("--naive-inputs", type=int, default=0,
                        help="also time the one-reconstruction-at-a-time loop on this many inputs")
    parser.add_argument("--memguard-inputs", type=int, default=1000, help="queries for MemGuard's timing (0: skip)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [measure(d, args) for d in devices]
    print("| device | unet | inputs | N | T | k | ms/input | UNet images/s | naive loop ms/input | speed-up |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        naive = "-" if r["naive_ms_per_input"] is None else f"{r['naive_ms_per_input']:.1f}"
        ratio = "-" if r["speedup"] is None else f"{r['speedup']:.1f}x"
        print(f"| {r['device']} | {r['unet']} | {r['inputs']} | {r['n']} | {r['t']} | {r['k']} | "
              f"{r['ms_per_input']:.1f} | {r['images_per_s']:.0f} | {naive} | {ratio} |")
    if args.memguard_inputs:
        guard = measure_memguard(args.memguard_inputs)
        print(f"\n| defense | device | inputs | classes | ms/input | noise found |\n|---|---|---|---|---|---|\n"
              f"| memguard | cpu | {guard['inputs']} | {guard['classes']} | {guard['ms_per_input']:.2f} | "
              f"{100 * guard['found']:.0f}% |")
        rows.append(guard)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
