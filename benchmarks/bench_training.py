"""Where the CPU preset's training time goes: one DDPM step and one classifier epoch, by part, against the
roofline, and the settings that might make them faster (channels-last, ``torch.compile``).

The settings are the CPU preset's: the tiny UNet of width 16 on 32x32x3 images, batch 64, and ``cifar_cnn``
trained on 5,000 records in batches of 64 (the target and each reference model). Speed does not depend on the
data, so random images stand in. Each row is timed after warm-up calls; FLOPs (2 per multiply-add) are counted
by torch's ``FlopCounterMode`` for the forward and backward pass.

    python benchmarks/bench_training.py --out runs/bench-training.json

Run it alone: anything else on the CPU changes every figure.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from bench_reconstruct import roofline

from diffence_plugin.data.models import build_model
from diffence_plugin.diffusion.train import _step
from diffence_plugin.reconstruct import default_scheduler, tiny_unet_config
from diffence_plugin.report import machine

BATCH, RECORDS = 64, 5000


def train_flops(model, x: torch.Tensor, *args) -> float:
    """FLOPs of one forward and backward pass of ``model`` on ``x``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = model(x, *args)
        (out.sample if hasattr(out, "sample") else out).float().pow(2).mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def ddpm_rows(steps: int) -> list[dict]:
    """ms per DDPM step: the library's whole step (``diffusion.train._step``: batch draw, UNet forward and
    backward, clipping, AdamW, EMA), then the UNet's forward + backward alone per layout and compile."""
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    torch.manual_seed(0)
    unet = UNet2DModel(**tiny_unet_config(32, 3, width=16))
    data = torch.rand(RECORDS, 3, 32, 32) * 2 - 1
    ema = EMAModel(unet.parameters(), decay=0.999, use_ema_warmup=True, inv_gamma=1.0, power=0.75)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-4, weight_decay=0.0)
    gen, alphas = torch.Generator().manual_seed(0), default_scheduler().alphas_cumprod
    x, t = data[:BATCH].contiguous(), torch.randint(0, 101, (BATCH,))
    flops = train_flops(unet, x, t)
    rows = [{"what": "ddpm step (library: UNet + clip + AdamW + EMA)", "ms": timed(
        lambda: _step(unet, ema, optimizer, data, alphas, gen, BATCH, 100, "cpu", None, None), steps)}]
    for layout, compiled in (("contiguous", False), ("channels_last", False), ("contiguous", True)):
        net = UNet2DModel(**tiny_unet_config(32, 3, width=16))
        xi = x
        if layout == "channels_last":
            net, xi = net.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        call = torch.compile(net) if compiled else net
        start = time.perf_counter()
        F.mse_loss(call(xi, t).sample, xi).backward()
        first = time.perf_counter() - start
        ms = timed(lambda: F.mse_loss(call(xi, t).sample, xi).backward(), steps)
        rows.append({"what": f"ddpm UNet forward+backward, {layout}{', torch.compile' if compiled else ''}",
                     "ms": ms, "first_call_s": round(first, 1), "gflops": flops / ms / 1e6})
    return rows


def classifier_rows(epochs: int) -> list[dict]:
    """Seconds per ``cifar_cnn`` epoch on 5,000 records: the library's loop (``train_classifier``) and a bare
    loop per layout, with the bare loop's forward, backward and Adam shares."""
    from diffence_plugin.defenses.training.common import train_classifier

    x, y = torch.rand(RECORDS, 3, 32, 32), torch.randint(0, 10, (RECORDS,))
    flops = train_flops(build_model("cifar_cnn", 10, 3), x[:BATCH]) * RECORDS / BATCH
    model = build_model("cifar_cnn", 10, 3)
    train_classifier(model, x.numpy(), y.numpy(), epochs=1, progress=False)  # warm-up
    start = time.perf_counter()
    train_classifier(model, x.numpy(), y.numpy(), epochs=epochs, progress=False)
    rows = [{"what": "cifar_cnn epoch (library: train_classifier)", "s": (time.perf_counter() - start) / epochs}]
    for layout in ("contiguous", "channels_last"):
        model, xs = build_model("cifar_cnn", 10, 3), x
        if layout == "channels_last":
            model, xs = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        parts = {"forward": 0.0, "backward": 0.0, "adam": 0.0}
        for epoch in range(epochs + 1):
            for idx in torch.randperm(RECORDS).split(BATCH):
                a = time.perf_counter()
                loss = F.cross_entropy(model(xs[idx]), y[idx])
                b = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                c = time.perf_counter()
                optimizer.step()
                if epoch:  # epoch 0 warms up
                    for key, value in zip(parts, (b - a, c - b, time.perf_counter() - c)):
                        parts[key] += value / epochs
        total = sum(parts.values())
        rows.append({"what": f"cifar_cnn epoch (bare loop), {layout}", "s": total, "gflops": flops / total / 1e9,
                     **{f"{k}_share": v / total for k, v in parts.items()}})
    return rows


def timed(fn, calls: int) -> float:
    """ms per call of ``fn`` over ``calls`` calls, after two warm-up calls."""
    fn(), fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-training.json")
    parser.add_argument("--steps", type=int, default=20, help="DDPM steps timed per row")
    parser.add_argument("--epochs", type=int, default=3, help="classifier epochs timed per row")
    args = parser.parse_args()
    peak = roofline(3.0)
    rows = ddpm_rows(args.steps) + classifier_rows(args.epochs)
    print(f"roofline (fp32 matmul, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s\n")
    print("| what | time | GFLOP/s | share of roofline | notes |\n|---|---|---|---|---|")
    for r in rows:
        time_text = f"{r['ms']:.0f} ms/step" if "ms" in r else f"{r['s']:.2f} s/epoch"
        rate = f"{r['gflops']:.1f}" if "gflops" in r else "-"
        share = f"{r['gflops'] / peak:.0%}" if "gflops" in r else "-"
        notes = ", ".join(f"{k.removesuffix('_share')} {v:.0%}" for k, v in r.items() if k.endswith("_share"))
        if "first_call_s" in r:
            notes = f"first call {r['first_call_s']} s"
        print(f"| {r['what']} | {time_text} | {rate} | {share} | {notes} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"roofline_gflops": peak, "rows": rows, "machine": machine()}, indent=2))


if __name__ == "__main__":
    main()
