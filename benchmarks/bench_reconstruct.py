"""Diffence's reconstruction cost on this machine, against its FLOP floor, alone and beside a busy process.

One run prints (and writes as JSON; ``--frontier``: only Diffence ms/input per (n, DDIM steps), the cost axis
of ``presets/cifar10-frontier.toml``):
  1. the roofline: fp32 matmul GFLOP/s at the torch thread count;
  2. UNet images/s per setting (images per call, ``no_grad`` vs ``inference_mode``, channels-last);
  3. Diffence ms/input per setting (the UNet chunk the library measures, the former fixed 64, one 1024-image
     call as before issue 25, bf16 autocast where the CPU has bf16 units), with the share of
     reconstruction, classification and selection, and the naive loop (one UNet call per candidate and step);
  4. the ratios: each setting's ms/input over the FLOP floor (UNet FLOPs per input at the roofline's rate, and
     at the rate of a matmul of the UNet's arithmetic intensity);
  5. a busy machine: Diffence ms/input in a fresh process alone and beside one CPU-bound process, at 1 and 2
     torch threads, with OpenMP's default and passive wait policy.

The setting is the CPU preset's: tiny UNet width 16, 32x32x3, n = 8, t = 100, k = 20 (40 UNet images per
input), an untrained ``cifar_cnn`` classifier (speed does not depend on the weights or the data).

    python benchmarks/bench_reconstruct.py --out runs/bench-reconstruct.json

Run it alone: anything else on the CPU changes every figure but the busy-machine rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

N, T, K, WIDTH = 8, 100, 20, 16


def rate(fn, units: float, seconds: float) -> float:
    """Units per second of ``fn`` over about ``seconds``, after one warm-up call."""
    fn()
    done, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += units
    return done / (time.perf_counter() - start)


def intensity_floor(seconds: float) -> float:
    """GFLOP/s of a matmul of one 16-channel 3x3 convolution's shape (64 CIFAR images: 65,536 x 144 @ 144 x
    16), the arithmetic intensity of the width-16 UNet's layers: the floor that UNet can reach here."""
    import torch
    a, b = torch.randn(65536, 144), torch.randn(144, 16)
    return rate(lambda: a @ b, 2 * 65536 * 144 * 16 / 1e9, seconds)


def roofline(seconds: float) -> float:
    """GFLOP/s of a 1024x2048 @ 2048x1024 fp32 matmul: what this CPU's cores do at best."""
    import torch
    a, b = torch.randn(1024, 2048), torch.randn(2048, 1024)
    return rate(lambda: a @ b, 2 * 1024 * 2048 * 1024 / 1e9, seconds)


def build(seed: int = 0):
    """The CPU preset's reconstructor and an untrained CIFAR CNN."""
    import torch
    from diffusers import UNet2DModel

    from diffence_plugin.data.models import build_model
    from diffence_plugin.reconstruct import Reconstructor, tiny_unet_config
    torch.manual_seed(seed)
    reconstructor = Reconstructor(UNet2DModel(**tiny_unet_config(32, 3, WIDTH)))
    classifier = build_model("cifar_cnn", 10, 3).eval()
    return reconstructor, classifier


def unet_flops(unet) -> float:
    """FLOPs of one UNet image (2 per multiply-add), counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        unet(torch.randn(8, 3, 32, 32), torch.full((8,), 20))
    return counter.get_total_flops() / 8


def unet_rows(unet, seconds: float) -> list[dict]:
    """UNet images/s per (images per call, grad mode, memory format or bf16 autocast where the CPU has it)."""
    import contextlib

    import torch

    from diffence_plugin.reconstruct import _cpu_has_bf16
    settings = [(1024, "no_grad", "contiguous"), (64, "no_grad", "contiguous"),
                (32, "inference_mode", "contiguous"), (64, "inference_mode", "contiguous"),
                (128, "inference_mode", "contiguous"), (256, "inference_mode", "contiguous"),
                (64, "inference_mode", "channels_last")]
    if _cpu_has_bf16():
        settings += [(64, "inference_mode", "bf16"), (128, "inference_mode", "bf16")]
    rows = []
    for batch, mode, layout in settings:
        x, steps = torch.randn(batch, 3, 32, 32), torch.full((batch,), 20)
        model = unet
        if layout == "channels_last":
            x, model = x.to(memory_format=torch.channels_last), unet.to(memory_format=torch.channels_last)
        precision = torch.autocast("cpu", dtype=torch.bfloat16) if layout == "bf16" else contextlib.nullcontext()
        with getattr(torch, mode)(), precision:
            value = rate(lambda: model(x, steps), batch, seconds)
        unet.to(memory_format=torch.contiguous_format)
        rows.append({"images_per_call": batch, "mode": mode, "layout": layout, "unet_images_per_s": value})
    return rows


def diffence_ms(reconstructor, classifier, inputs: int, unet_batch: int | str = "auto", autocast=None,
                n: int = N, k: int = K) -> dict:
    """Milliseconds per input of ``Diffence.candidates`` + ``release`` at the preset's setting, split by step;
    ``unet_batch`` is the images per UNet call ("auto": what the library measures; 1024: one call per 128
    inputs, as before issue 25), ``autocast`` the UNet's dtype (None: float32)."""
    from diffence_plugin.defense import Diffence
    reconstructor.cpu_chunk = unet_batch
    try:
        # scenario 3 needs no calibration; selection costs the same in every scenario
        defense = Diffence(reconstructor, n=n, t=T, k=k, scenario=3, seed=0x5EED_BE7C_4A11, output="logits",
                           autocast=autocast)
        x = grid_inputs(inputs)
        defense.candidates(classifier, x[:8])  # warm-up
        defense.reconstructions(x[:200])  # the measured chunk is chosen here, once per process
        start = time.perf_counter()
        images = defense.reconstructions(x)
        mid = time.perf_counter()
        candidates = defense.candidates_from_reconstructions(classifier, x, images)
        scored = time.perf_counter()
        released = defense.release(candidates)
        end = time.perf_counter()
    finally:
        reconstructor.cpu_chunk = "auto"
    total = end - start
    return {"ms_per_input": 1000 * total / inputs, "reconstruct_share": (mid - start) / total,
            "classify_share": (scored - mid) / total, "select_share": (end - scored) / total,
            "released": released.probs, "candidates": candidates.candidate_log_probs}


def frontier_rows(reconstructor, classifier, inputs: int) -> list[dict]:
    """Diffence ms/input at T = 100 per (n, DDIM steps T / k), the points of the cost-privacy frontier
    (presets/cifar10-frontier.toml audits three of them); the CPU preset's point is n = 8, 5 steps."""
    rows = []
    for n, steps in ((4, 1), (8, 1), (16, 1), (32, 1), (4, 5), (8, 5), (16, 5)):
        row = diffence_ms(reconstructor, classifier, inputs, n=n, k=T // steps)
        rows.append({"n": n, "ddim_steps": steps, "unet_calls_per_input": n * steps, "ms_per_input": row["ms_per_input"]})
    return rows


def grid_inputs(count: int):
    """``count`` random 8-bit images in [0, 1], as CIFAR-10's are."""
    import torch
    return torch.randint(0, 256, (count, 3, 32, 32), generator=torch.Generator().manual_seed(0)) / 255.0


def naive_ms(reconstructor, inputs: int) -> float:
    """Milliseconds per input when every candidate is its own UNet call per step (a loop over n and inputs)."""
    import torch
    x = grid_inputs(inputs)
    start = time.perf_counter()
    for image in x:
        for _ in range(N):
            reconstructor.reconstruct(image[None], 1, T, K, generator=torch.Generator().manual_seed(0))
    return 1000 * (time.perf_counter() - start) / inputs


def worker(inputs: int) -> None:
    """Child process of the busy-machine rows: print Diffence ms/input as JSON."""
    reconstructor, classifier = build()
    print(json.dumps({"ms_per_input": diffence_ms(reconstructor, classifier, inputs)["ms_per_input"]}))


def hog() -> subprocess.Popen:
    """One CPU-bound process (a pure-Python loop, one core), as another user's job would be."""
    return subprocess.Popen([sys.executable, "-c", "while True:\n    sum(i * i for i in range(10000))"])


def busy_rows(inputs: int) -> list[dict]:
    """Diffence ms/input in a fresh process per (threads, wait policy), alone and beside ``hog``."""
    rows = []
    for threads in (2, 1):
        for policy in ("", "PASSIVE"):
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            env.pop("OMP_WAIT_POLICY", None)
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            row = {"threads": threads, "omp_wait_policy": policy or "default"}
            for label in ("alone", "busy"):
                other = hog() if label == "busy" else None
                try:
                    out = subprocess.run([sys.executable, __file__, "--worker", str(inputs)], env=env, check=True,
                                         capture_output=True, text=True).stdout
                finally:
                    if other is not None:
                        other.kill()
                        other.wait()
                row[f"{label}_ms"] = json.loads(out.strip().splitlines()[-1])["ms_per_input"]
            row["slowdown"] = row["busy_ms"] / row["alone_ms"]
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/bench-reconstruct.json")
    parser.add_argument("--inputs", type=int, default=256, help="inputs per Diffence timing")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per UNet rate")
    parser.add_argument("--no-busy", action="store_true", help="skip the busy-machine rows")
    parser.add_argument("--frontier", action="store_true",
                        help="only Diffence ms/input per (n, DDIM steps) at T = 100, the frontier's cost axis")
    parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    import torch

    from diffence_plugin.report import machine
    reconstructor, classifier = build()
    if args.frontier:
        rows = frontier_rows(reconstructor, classifier, args.inputs)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                                              "threads": torch.get_num_threads(), "frontier": rows}, indent=2))
        return print(json.dumps(rows, indent=2))
    flops = unet_flops(reconstructor.unet)
    peak = roofline(args.seconds)
    floor_ms = 1000 * flops * N * (T // K) / (peak * 1e9)
    result = {"machine": machine(), "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads(),
              "roofline_gflops": peak, "unet_mflop_per_image": flops / 1e6, "floor_ms_per_input": floor_ms,
              "unet": unet_rows(reconstructor.unet, args.seconds)}
    for row in result["unet"]:
        row["gflops"] = row["unet_images_per_s"] * flops / 1e9
    from diffence_plugin.reconstruct import _cpu_has_bf16, unet_batch
    fixed = diffence_ms(reconstructor, classifier, args.inputs, unet_batch=unet_batch("cpu", 1024))
    library = diffence_ms(reconstructor, classifier, args.inputs)
    library["images_per_call"] = reconstructor.chunk(10**6, 1024, T)
    before = diffence_ms(reconstructor, classifier, args.inputs, unet_batch=1024)
    result["intensity_gflops"] = intensity_floor(args.seconds)
    intensity_ms = 1000 * flops * N * (T // K) / (result["intensity_gflops"] * 1e9)
    result["diffence"] = {"library": library, "fixed_64": fixed, "one_1024_call": before,
                          "naive_ms_per_input": naive_ms(reconstructor, max(4, args.inputs // 32)),
                          "bit_identical": all(torch.equal(library[key], before[key]) and
                                               torch.equal(fixed.pop(key), before[key])
                                               for key in ("released", "candidates"))}
    for key in ("released", "candidates"):
        library.pop(key), before.pop(key)
    if _cpu_has_bf16():  # bf16 autocast where the CPU has bf16 units (opt-in: not bit-identical)
        bf16 = diffence_ms(reconstructor, classifier, args.inputs, autocast=torch.bfloat16)
        bf16.pop("released"), bf16.pop("candidates")
        bf16["images_per_call"] = reconstructor.chunk(10**6, 1024, T, torch.bfloat16)
        result["diffence"]["bf16_autocast"] = bf16
    result["ratios"] = {"library_over_floor": library["ms_per_input"] / floor_ms,
                        "library_over_intensity_floor": library["ms_per_input"] / intensity_ms,
                        "before_over_floor": before["ms_per_input"] / floor_ms,
                        "before_over_library": before["ms_per_input"] / library["ms_per_input"],
                        "naive_over_library": result["diffence"]["naive_ms_per_input"] / library["ms_per_input"]}
    if not args.no_busy:
        result["busy"] = busy_rows(max(32, args.inputs // 4))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
