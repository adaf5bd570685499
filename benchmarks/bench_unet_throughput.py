"""Images per second of candidate DDPM UNets for 32x32 colour images on this CPU: Diffence's cost driver.

Measures one denoising UNet call (no gradient, batch ``--batch``) per configuration, at 1 and 2 torch threads,
in float32 and under bf16 autocast, and with ``torch.compile`` (float32, 2 threads). Also the training
step rate (forward + backward + Adam, batch 64) of each UNet in float32 at 2 threads, which is what a DDPM
time budget buys.

    python benchmarks/bench_unet_throughput.py --out runs/unet-throughput.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import UNet2DModel

from diffence_plugin.reconstruct import cifar_unet_config, tiny_unet_config
from diffence_plugin.report import machine


def configs() -> dict[str, dict]:
    """The UNets the CIFAR CPU study compares: the tiny two-level UNet at three widths and the diffusers
    CIFAR UNet (Ho et al.'s layout) at a quarter and an eighth of its width."""
    return {"tiny-16": tiny_unet_config(32, 3, 16), "tiny-32": tiny_unet_config(32, 3, 32),
            "tiny-64": tiny_unet_config(32, 3, 64), "cifar-1/8": cifar_unet_config(8),
            "cifar-1/4": cifar_unet_config(4)}


def rate(fn, images: int, seconds: float = 4.0) -> float:
    fn()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += images
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/unet-throughput.json")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    x = torch.randn(args.batch, 3, 32, 32)
    t = torch.full((args.batch,), 20)
    rows = []
    for name, cfg in configs().items():
        torch.manual_seed(0)
        unet = UNet2DModel(**cfg).eval().requires_grad_(False)
        params = sum(p.numel() for p in unet.parameters()) / 1e6
        row = {"unet": name, "params_m": round(params, 3)}
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with torch.no_grad():
                row[f"fp32_t{threads}"] = rate(lambda: unet(x, t).sample, args.batch, args.seconds)

                def bf16():  # a small batch: without native bf16 (no AVX512-BF16/AMX) it is emulated, slowly
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        return unet(x[:16], t[:16]).sample
                row[f"bf16_t{threads}"] = rate(bf16, 16, args.seconds)
        torch.set_num_threads(2)
        if not args.no_compile:
            try:
                compiled = torch.compile(unet)
                start = time.perf_counter()
                with torch.no_grad():
                    compiled(x, t)
                row["compile_s"] = time.perf_counter() - start
                with torch.no_grad():
                    row["compiled_fp32_t2"] = rate(lambda: compiled(x, t).sample, args.batch, args.seconds)
            except Exception as exc:  # a missing compiler toolchain is a result too
                row["compiled_fp32_t2"] = None
                row["compile_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        train = UNet2DModel(**cfg).train()
        opt = torch.optim.AdamW(train.parameters(), lr=2e-4)
        xb, tb = torch.randn(64, 3, 32, 32), torch.randint(0, 100, (64,))

        def step():
            loss = torch.nn.functional.mse_loss(train(xb, tb).sample, xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        row["train_steps_per_s_t2"] = rate(step, 1, args.seconds)
        rows.append(row)
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "batch": args.batch, "machine": machine()}, indent=2))
    print(f"\n{'UNet':10s} {'M params':>8s} {'fp32 1t':>8s} {'fp32 2t':>8s} {'bf16 1t':>8s} {'bf16 2t':>8s} "
          f"{'compiled':>8s} {'train/s':>8s}   (images/s of one UNet call; train: steps/s at batch 64)")
    for r in rows:
        compiled = r.get("compiled_fp32_t2")
        print(f"{r['unet']:10s} {r['params_m']:8.2f} {r['fp32_t1']:8.0f} {r['fp32_t2']:8.0f} {r['bf16_t1']:8.0f} "
              f"{r['bf16_t2']:8.0f} {compiled if compiled is None else round(compiled):>8} "
              f"{r['train_steps_per_s_t2']:8.2f}")


if __name__ == "__main__":
    main()
