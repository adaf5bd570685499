"""Training the defender's DDPM on its own (member) data: epsilon loss, EMA weights with warm-up, resumable.

The returned weights are diffusers' ``EMAModel`` average with its warm-up (decay ``1 - (1 + step) ** -0.75``,
capped at ``ema_decay``), as in diffusers' own unconditional training script. A fixed decay of 0.999 from the
first step (torch's ``AveragedModel``) would still hold ``0.999 ** steps`` of the initial weights after a
short run: 27% after 1,300 steps, a typical CPU or time-budget run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from diffence_plugin.reconstruct import (
    Reconstructor,
    default_scheduler,
    tiny_unet_config,
)
from diffence_plugin.validation import as_image_batch

logger = logging.getLogger(__name__)


class EpsilonTargets(Protocol):
    """What a UNet learns to predict for a batch: ``(noisy, timesteps, indices into the images) -> epsilon``,
    with a JSON ``record`` of where the targets come from."""

    record: dict

    def __call__(self, noisy: torch.Tensor, timesteps: torch.Tensor, indices: torch.Tensor) -> torch.Tensor: ...


EMA_POWER = 0.75  # diffusers' train_unconditional default for the warm-up


def train_diffusion(
    images: torch.Tensor,
    *,
    unet_config: dict | None = None,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-4,
    max_timestep: int | None = None,
    ema_decay: float = 0.999,
    seed: int = 0,
    device: torch.device | str = "cpu",
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 500,
    progress: bool = True,
    autocast: torch.dtype | None = None,
    max_seconds: float | None = None,
    targets: EpsilonTargets | None = None,
    record: dict | None = None,
    channels_last: bool = False,
) -> Reconstructor:
    """Train a diffusers ``UNet2DModel`` with the DDPM epsilon loss and return its EMA weights.

    The returned reconstructor's ``training`` dict says how many steps were run, in how many seconds, and why
    training stopped (``"steps"`` or ``"time budget"``); it is logged too and kept by ``save_pretrained``.

    Args:
        images: (S, C, H, W) float images in [0, 1], the defender's own data.
        unet_config: ``UNet2DModel`` arguments; default ``tiny_unet_config`` for the images' shape.
        steps: optimiser steps in total (a resumed run continues up to this number).
        max_timestep: sample training timesteps in [0, max_timestep] only. Diffence denoises from t = 40
            at most, so a low-noise specialist (e.g. ``max_timestep=t``) learns what it needs far faster.
        ema_decay: the most decay of the exponential moving average whose weights are returned; the warm-up
            reaches it after about ``(1 - ema_decay) ** (-1 / 0.75)`` steps (10,000 at 0.999). 0 returns the
            last weights.
        checkpoint: file to resume from and save to every ``checkpoint_every`` steps and when the time budget
            ends the run (written atomically), so a run can be continued in stages of ``max_seconds``.
        autocast: optional dtype for the UNet's forward pass (``torch.bfloat16`` on GPUs).
        max_seconds: stop early once this much wall time is spent (a time budget; ``steps`` stays the cap).
        targets: what the UNet learns to predict for a batch; default the drawn noise (the DDPM loss).
            DistillMD passes its teachers' predictions (``diffusion.dual.TeacherTargets``); their ``record``
            is kept in the settings.
        record: extra facts kept in ``training`` and checked on resume (``train_dual`` records the half).
        channels_last: train in channels-last memory format (10-17% faster steps on a 2-core CPU,
            docs/results/speed.md; not bit-identical to the default); the returned weights are the same kind either
            way.
    """
    x = as_image_batch(images, "images")
    scheduler = default_scheduler()
    max_timestep = _check(scheduler, max_timestep, ema_decay, steps, batch_size, checkpoint_every)
    unet_config = dict(unet_config or tiny_unet_config(x.shape[-1], x.shape[1]))
    settings = dict(unet_config=unet_config, batch_size=batch_size, lr=lr, max_timestep=max_timestep,
                    ema_decay=ema_decay, seed=seed, images=list(x.shape),
                    ema=f"diffusers EMAModel, warm-up power {EMA_POWER}", **(record or {}))
    if targets is not None:
        settings["targets"] = targets.record
    if channels_last:  # only when on: the records of runs without it stay as they were
        settings["channels_last"] = True
    unet, ema, optimizer = _fresh(unet_config, x, seed, device, ema_decay, lr, channels_last)
    gen = torch.Generator().manual_seed(seed)
    step = _resume(checkpoint, device, settings, unet, ema, optimizer, gen)
    started = step
    data = x.to(device) * 2 - 1
    alphas = scheduler.alphas_cumprod.to(device)
    unet.train()
    began = time.perf_counter()

    def save() -> None:
        _save_checkpoint(Path(checkpoint), dict(unet=unet.state_dict(), ema=ema.state_dict(),
                                                optimizer=optimizer.state_dict(), generator=gen.get_state(),
                                                step=step, settings=json.dumps(settings)))

    bar = tqdm(total=steps, initial=min(step, steps), desc="ddpm", unit="step", disable=None if progress else True, leave=False)
    while step < steps and (max_seconds is None or time.perf_counter() - began < max_seconds):
        loss = _step(unet, ema, optimizer, data, alphas, gen, batch_size, max_timestep, device, autocast, targets,
                     channels_last)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if checkpoint is not None and (step % checkpoint_every == 0 or step == steps):
            save()
    bar.close()
    if checkpoint is not None and step % checkpoint_every and step < steps:  # stopped by the time budget
        save()
    return _finished(unet_config, ema, scheduler, device, settings, step=step, started=started, steps=steps,
                     seconds=time.perf_counter() - began, max_seconds=max_seconds)


def _fresh(unet_config: dict, x: torch.Tensor, seed: int, device, ema_decay: float, lr: float,
           channels_last: bool) -> tuple[UNet2DModel, EMAModel, torch.optim.Optimizer]:
    """A seeded new UNet for ``x``'s image size (checked), its EMA and its AdamW."""
    torch.manual_seed(seed)
    unet = UNet2DModel(**unet_config).to(device, memory_format=torch.channels_last if channels_last
                                          else torch.preserve_format)
    if unet.config.in_channels != x.shape[1] or unet.config.sample_size != x.shape[-1]:
        raise ValueError(f"unet_config is for {unet.config.in_channels}x{unet.config.sample_size}px images, "
                         f"data are {x.shape[1]}x{x.shape[-1]}px")
    ema = EMAModel(unet.parameters(), decay=ema_decay, use_ema_warmup=True, inv_gamma=1.0, power=EMA_POWER)
    return unet, ema, torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)


def _finished(unet_config: dict, ema: EMAModel, scheduler, device, settings: dict, *, step: int, started: int,
              steps: int, seconds: float, max_seconds: float | None) -> Reconstructor:
    """The EMA weights as a reconstructor whose ``training`` says how far this run got and why it stopped."""
    done = step - started
    stopped = "steps" if step >= steps else "time budget"
    logger.info("ddpm: %d steps in %.0f s (%.2f s/step), stopped by %s at step %d of %d", done, seconds,
                seconds / max(done, 1), stopped, step, steps)
    final = UNet2DModel(**unet_config)
    ema.copy_to(final.parameters())
    reconstructor = Reconstructor(final.to(device), scheduler)
    reconstructor.training = dict(steps=step, steps_this_run=done, seconds_this_run=round(seconds, 2),
                                  stopped=stopped, max_steps=steps, max_seconds=max_seconds, **settings)
    return reconstructor


def _check(scheduler, max_timestep: int | None, ema_decay: float, steps: int, batch_size: int,
           checkpoint_every: int) -> int:
    """The training timesteps' upper bound (default: all), after checking every numeric argument."""
    top = scheduler.config.num_train_timesteps - 1
    if max_timestep is None:
        max_timestep = top
    if not 0 <= max_timestep <= top:
        raise ValueError(f"max_timestep must lie in [0, {top}], got {max_timestep}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
    if steps < 0 or batch_size < 1 or checkpoint_every < 1:
        raise ValueError(f"steps must be >= 0, batch_size and checkpoint_every >= 1; got {steps}, {batch_size}, "
                         f"{checkpoint_every}")
    return max_timestep


def _resume(checkpoint, device, settings: dict, unet, ema, optimizer, gen: torch.Generator) -> int:
    """The step a checkpoint reached, its state loaded into the training objects (0 without one)."""
    if checkpoint is None or not Path(checkpoint).exists():
        return 0
    state = torch.load(checkpoint, map_location=device, weights_only=True)
    saved = json.loads(state["settings"])
    if saved != json.loads(json.dumps(settings)):
        raise ValueError(f"checkpoint {str(checkpoint)!r} was made with other settings: {saved}")
    unet.load_state_dict(state["unet"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    gen.set_state(state["generator"])
    return int(state["step"])


def _step(unet, ema, optimizer, data: torch.Tensor, alphas: torch.Tensor, gen: torch.Generator, batch_size: int,
          max_timestep: int, device, autocast, targets, channels_last: bool = False) -> float:
    """One optimiser step of the epsilon loss on a random batch and timesteps; returns the loss."""
    idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen).to(device)
    t = torch.randint(0, max_timestep + 1, (batch_size,), generator=gen).to(device)
    noise = torch.randn((batch_size, *data.shape[1:]), generator=gen).to(device)
    abar = alphas[t].view(-1, 1, 1, 1)
    noisy = abar.sqrt() * data[idx] + (1 - abar).sqrt() * noise
    goal = noise if targets is None else targets(noisy, t, idx)
    if channels_last:
        noisy = noisy.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=torch.device(device).type, dtype=autocast, enabled=autocast is not None):
        prediction = unet(noisy, t).sample
    loss = F.mse_loss(prediction.float(), goal)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
    optimizer.step()
    ema.step(unet.parameters())
    return loss.item()


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
