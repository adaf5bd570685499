"""Step 1 of the pipeline: noise each input to step t and denoise it back with DDIM, n times.

The maths follows Ho et al. (2020) for the forward step and Song et al. (2021) for DDIM with
eta = 0; both are delegated to diffusers' ``DDIMScheduler`` (``add_noise`` and ``step``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils import is_accelerate_available

from .validation import check_image_geometry

UNET_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
SCHEDULER_FILES = ("scheduler_config.json",)
TRAINING_FILE = "training.json"  # optional: how the UNet was trained (steps run, seconds, settings)


def default_scheduler() -> DDPMScheduler:
    """The DDPM schedule of Ho et al.: 1000 steps, linear betas 1e-4..0.02, epsilon prediction."""
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


def tiny_unet_config(image_size: int, channels: int, width: int = 32) -> dict:
    """A small UNet for tests and the digits demo: two resolutions, no attention, fast on a CPU."""
    return dict(
        sample_size=image_size,
        in_channels=channels,
        out_channels=channels,
        layers_per_block=1,
        block_out_channels=(width, width),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def cifar_unet_config() -> dict:
    """The DDPM CIFAR-10 UNet of Ho et al. (35.7 M parameters, attention at 16x16)."""
    return dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 256, 256, 256),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=0.1,
    )


class Reconstructor:
    """A diffusers ``UNet2DModel`` plus its noise schedule, turning images into reconstructions.

    Args:
        unet: an epsilon-predicting UNet trained on images scaled to [-1, 1].
        scheduler: the schedule the UNet was trained with (DDPM or DDIM config); default: Ho et al.

    ``training`` holds what ``train_diffusion`` reports about the run (steps, seconds, why it stopped), or None.
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler | DDIMScheduler | None = None) -> None:
        if not isinstance(unet, UNet2DModel):
            raise TypeError(f"unet must be a diffusers UNet2DModel, got {type(unet).__name__}")
        config = (scheduler or default_scheduler()).config
        if config.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError(f"the scheduler must predict epsilon, got prediction_type={config['prediction_type']!r}")
        self.unet = unet.eval().requires_grad_(False)
        self.scheduler = DDIMScheduler.from_config(config)
        self._schedules: dict[int, DDIMScheduler] = {}  # per DDIM stride, never changed once made
        self._lock = threading.Lock()
        self.training: dict | None = None

    @property
    def channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def image_size(self) -> int:
        size = self.unet.config.sample_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def to(self, device: torch.device | str) -> "Reconstructor":
        self.unet.to(device)
        return self

    def timesteps(self, t: int, k: int) -> list[int]:
        """UNet steps of a DDIM pass from ``t`` with stride ``k``: [t, t-k, ..., k]."""
        if t % k != 0:
            raise ValueError(f"t must be a multiple of k, got t={t}, k={k}")
        if not 0 <= t < self.num_train_timesteps:
            raise ValueError(f"t must lie in [0, {self.num_train_timesteps - 1}], got {t}")
        if self.num_train_timesteps // (self.num_train_timesteps // k) != k:
            raise ValueError(
                f"k={k} is not a DDIM stride of a {self.num_train_timesteps}-step schedule; "
                f"choose k with {self.num_train_timesteps} // ({self.num_train_timesteps} // k) == k"
            )
        return list(range(t, 0, -k))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        """Closed-form forward step: sqrt(abar_t) * x0 + sqrt(1 - abar_t) * noise (x0 in [-1, 1])."""
        steps = torch.full((x0.shape[0],), t, dtype=torch.long, device=x0.device)
        return self.scheduler.add_noise(x0, noise, steps)

    def denoise(self, x_t: torch.Tensor, t: int, k: int, autocast: torch.dtype | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from step ``t`` to the predicted x0, one UNet call per step."""
        steps = self.timesteps(t, k)
        if not steps:
            return x_t
        schedule = self._schedule(k)
        sample = x_t
        for i, step in enumerate(steps):
            with self._autocast(autocast):
                eps = self.unet(sample, step).sample
            out = schedule.step(eps.float(), step, sample, eta=0.0)
            sample = out.pred_original_sample if i == len(steps) - 1 else out.prev_sample
        return sample

    def _schedule(self, k: int) -> DDIMScheduler:
        """The DDIM schedule of stride ``k``: made once under a lock and never mutated afterwards, so that
        defenses with different strides can share this reconstructor, from several threads too."""
        with self._lock:
            if k not in self._schedules:
                schedule = DDIMScheduler.from_config(self.scheduler.config)
                schedule.set_timesteps(self.num_train_timesteps // k)
                self._schedules[k] = schedule
            return self._schedules[k]

    @torch.no_grad()
    def reconstruct(
        self,
        x: torch.Tensor,
        n: int,
        t: int,
        k: int,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        max_batch: int = 1024,
        autocast: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Reconstruct every image of ``x`` ``n`` times.

        Args:
            x: (B, C, H, W) float images in [0, 1].
            n: reconstructions per image.
            t, k: noise step and DDIM stride.
            noise: optional (B, n, C, H, W) standard normal noise; drawn from ``generator`` otherwise.
            max_batch: most images per UNet call; the B * n images are processed in chunks of this size.
            autocast: optional dtype (e.g. ``torch.bfloat16``) for the UNet on GPUs.

        Returns:
            (B, n, C, H, W) float32 reconstructions in [0, 1] on the UNet's device.
        """
        check_image_geometry(x, self.channels, self.image_size)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.timesteps(t, k)
        b = x.shape[0]
        shape = (b, n, *x.shape[1:])
        if noise is None:
            gen_device = generator.device if generator is not None else torch.device("cpu")
            noise = torch.randn(shape, generator=generator, device=gen_device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        device = self.device
        if t == 0:
            return x.to(device, torch.float32).unsqueeze(1).expand(shape).clone()
        x0 = (x.to(device, torch.float32) * 2 - 1).unsqueeze(1).expand(shape).reshape(b * n, *x.shape[1:])
        flat_noise = noise.reshape(b * n, *x.shape[1:])
        out = torch.empty_like(x0)
        for start in range(0, b * n, max_batch):
            sl = slice(start, start + max_batch)
            x_t = self.add_noise(x0[sl], flat_noise[sl].to(device, torch.float32), t)
            out[sl] = self.denoise(x_t, t, k, autocast)
        return ((out.clamp(-1, 1) + 1) / 2).reshape(shape)

    def _autocast(self, dtype: torch.dtype | None):
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``unet/`` (safetensors + config), ``scheduler/`` and, when known, ``training.json`` under ``path``."""
        path = Path(path)
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        DDPMScheduler.from_config(self.scheduler.config).save_pretrained(path / "scheduler")
        if self.training is not None:
            (path / TRAINING_FILE).write_text(json.dumps(self.training, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> "Reconstructor":
        """Load what ``save_pretrained`` wrote; never touches the network and never unpickles."""
        path = Path(path)
        missing = [f"unet/{f}" for f in UNET_FILES if not (path / "unet" / f).is_file()]
        missing += [f"scheduler/{f}" for f in SCHEDULER_FILES if not (path / "scheduler" / f).is_file()]
        if missing:
            raise FileNotFoundError(f"checkpoint directory {str(path)!r} is missing {', '.join(missing)}")
        try:
            # without accelerate, diffusers would warn on every load before falling back to this itself
            unet = UNet2DModel.from_pretrained(path / "unet", use_safetensors=True, local_files_only=True,
                                               low_cpu_mem_usage=is_accelerate_available())
            scheduler = DDPMScheduler.from_pretrained(path / "scheduler", local_files_only=True)
        except Exception as exc:
            raise ValueError(f"checkpoint directory {str(path)!r} could not be loaded: {exc}") from exc
        reconstructor = cls(unet.to(device), scheduler)
        if (path / TRAINING_FILE).is_file():
            try:
                training = json.loads((path / TRAINING_FILE).read_text())
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{str(path / TRAINING_FILE)!r} is not valid JSON: {exc}") from exc
            if not isinstance(training, dict):
                raise ValueError(f"{str(path / TRAINING_FILE)!r} must hold a JSON object, got {type(training).__name__}")
            reconstructor.training = training
        return reconstructor
