"""Speed on this machine: the UNet's images per second, Diffence per input, and one training step of the DDPM
and one epoch of the classifier, on every device present (a CPU, and CUDA where there is one).

It replaces four overlapping scripts (reconstruction, training, UNet throughput, defense); their published
figures stay in docs/results/speed.md with the commits that made them. Speed does not depend on the weights or
the data, so random ones stand in. Each figure is timed after a warm-up call; run it alone, since anything
else on the CPU changes every figure.

    python benchmarks/bench_speed.py --out runs/bench-speed.json                 # the CPU preset's sizes
    python benchmarks/bench_speed.py --unet cifar --devices cuda --inputs 512    # the GPU preset's UNet
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from diffence_plugin import Diffence, Reconstructor, cifar_unet_config, tiny_unet_config
from diffence_plugin.audit.machine import machine
from diffence_plugin.data.models import build_model


def _timed(fn, device: str, repeats: int = 1) -> float:
    """Seconds per call of ``fn`` after one warm-up call (CUDA synchronised)."""
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def unet_config(name: str, width: int) -> dict:
    return cifar_unet_config() if name == "cifar" else tiny_unet_config(32, 3, width)


def unet_images_per_s(device: str, config: dict, batch: int, autocast: bool) -> float:
    """One denoising call of the UNet, without gradients, in images per second."""
    unet = UNet2DModel(**config).to(device).eval()
    x = torch.rand(batch, 3, 32, 32, device=device)
    steps = torch.full((batch,), 50, device=device)

    def call():
        with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            unet(x, steps)
    return batch / _timed(call, device, repeats=3)


def diffence_ms_per_input(device: str, config: dict, inputs: int, n: int, t: int, k: int) -> float:
    """Diffence's whole release (reconstruct, classify, select) per input, in milliseconds."""
    classifier = build_model("cifar_cnn", 10, 3).to(device).eval()
    defense = Diffence(Reconstructor(UNet2DModel(**config).to(device)), n=n, t=t, k=k, scenario=3, seed=0,
                       autocast=torch.bfloat16 if device == "cuda" else None)
    x = torch.rand(inputs, 3, 32, 32)
    return 1000 * _timed(lambda: defense.defend(classifier, x), device) / inputs


def ddpm_step_s(device: str, config: dict, batch: int) -> float:
    """One DDPM training step (noise prediction loss, backward, AdamW) at ``batch`` images."""
    unet = UNet2DModel(**config).to(device).train()
    optimiser = torch.optim.AdamW(unet.parameters(), lr=2e-4)
    x = torch.rand(batch, 3, 32, 32, device=device)

    def step():
        noise = torch.randn_like(x)
        steps = torch.randint(0, 100, (batch,), device=device)
        loss = F.mse_loss(unet(x + noise, steps).sample, noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return _timed(step, device, repeats=3)


def classifier_epoch_s(device: str, records: int, batch: int) -> float:
    """One epoch of the CPU preset's target (``cifar_cnn``) over ``records`` records in batches of ``batch``."""
    model = build_model("cifar_cnn", 10, 3).to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.rand(records, 3, 32, 32, device=device), torch.randint(0, 10, (records,), device=device)

    def epoch():
        for i in range(0, records, batch):
            loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return _timed(epoch, device)


def measure(device: str, args: argparse.Namespace) -> dict:
    config = unet_config(args.unet, args.width)
    torch.manual_seed(0)
    return {"device": device, "unet": args.unet if args.unet == "cifar" else f"tiny-{args.width}",
            "unet_images_per_s": unet_images_per_s(device, config, args.batch, autocast=False),
            "unet_images_per_s_bf16": unet_images_per_s(device, config, args.batch, autocast=True),
            "diffence_ms_per_input": diffence_ms_per_input(device, config, args.inputs, args.n, args.t, args.k),
            "ddpm_step_s": ddpm_step_s(device, config, 64), "classifier_epoch_s": classifier_epoch_s(device, 5000, 64),
            "n": args.n, "t": args.t, "k": args.k, "inputs": args.inputs, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unet", choices=("tiny", "cifar"), default="tiny", help="the CPU preset's or the GPU one's")
    parser.add_argument("--width", type=int, default=16, help="the tiny UNet's width (the CPU preset's: 16)")
    parser.add_argument("--batch", type=int, default=256, help="images per UNet call")
    parser.add_argument("--inputs", type=int, default=8, help="inputs Diffence releases")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--t", type=int, default=100)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--devices", default=None, help="comma-separated (default: cpu, and cuda if present)")
    parser.add_argument("--out", default=None, help="also write the figures and the machine to this JSON file")
    args = parser.parse_args()
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [measure(device, args) for device in devices]
    print("| device | UNet | UNet images/s (fp32) | (bf16) | Diffence ms/input (N, T, k) | DDPM step s (batch 64) | "
          "classifier epoch s (5,000) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['device']} | {r['unet']} | {r['unet_images_per_s']:.0f} | {r['unet_images_per_s_bf16']:.0f} | "
              f"{r['diffence_ms_per_input']:.1f} ({r['n']}, {r['t']}, {r['k']}) | {r['ddpm_step_s']:.3f} | "
              f"{r['classifier_epoch_s']:.1f} |")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"rows": rows, "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
