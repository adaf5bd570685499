"""Step 1 of the pipeline: noise each input to step t and denoise it back with DDIM, n times.

The maths follows Ho et al. (2020) for the forward step and Song et al. (2021) for DDIM with
eta = 0; both are delegated to diffusers' ``DDIMScheduler`` (``add_noise`` and ``step``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
import warnings
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.utils import is_accelerate_available

from diffence_plugin.validation import check_image_geometry, read_json_object

UNET_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
SCHEDULER_FILES = ("scheduler_config.json",)
TRAINING_FILE = "training.json"  # optional: how the UNet was trained (steps run, seconds, settings)
DUAL_FILE = "dual.json"  # a DualReconstructor's folder: its mode; the two models in first/ and second/
DUAL_FORMAT = "diffence-dual-reconstructor"
DUAL_MODES = ("alternate", "keyed")
# Pixels per UNet call on a CPU before it is measured, and when it is not (64 CIFAR-10 images; 1,024 of the
# 8x8 digits). the reconstruction benchmark (docs/results/speed.md): the tiny UNet ran about 2x faster on 64 32x32
# images per call than on 1,024 on the 2-core machine (activations that stay in cache), while small images need
# large calls to amortise each call's overhead. The best chunk differs between CPUs and precisions, so a
# Reconstructor measures it (``cpu_chunk = "auto"``): the outputs are bit-identical whatever the chunk, so the
# chunk changes speed, never a release.
CPU_UNET_PIXELS = 64 * 32 * 32
CPU_CHUNK_PIXELS = tuple(images * 32 * 32 for images in (16, 32, 64, 128, 256))  # what the measurement tries
MEASURED_PIXELS = 512 * 32 * 32  # what each candidate chunk is timed on: 512 CIFAR images' worth
CHUNK_MARGIN = 1.05  # another chunk replaces the default only when it is at least this much faster
_MEASURED_CHUNKS: dict[tuple, int] = {}  # per process: (architecture, shape, cap, precision, threads) -> chunk
logger = logging.getLogger(__name__)


def unet_batch(device: torch.device | str, max_batch: int, pixels: int = 32 * 32) -> int:
    """Images of ``pixels`` pixels per UNet call on ``device`` before any measurement: ``CPU_UNET_PIXELS``
    worth on a CPU, the ``max_batch`` cap elsewhere (an accelerator is fastest with the largest batch that fits
    its memory, which ``max_batch`` bounds)."""
    if torch.device(device).type != "cpu":
        return max_batch
    return max(1, min(max_batch, CPU_UNET_PIXELS // max(1, pixels)))


def fastest_chunk(rates: dict[int, float], default: int, margin: float = CHUNK_MARGIN) -> int:
    """The chunk with the most images per second in ``rates``, unless it beats ``default`` by less than
    ``margin`` (timings on a busy machine are noisy; the default is kept then)."""
    best = max(rates, key=rates.get)
    if default in rates and rates[best] < margin * rates[default]:
        return default
    return best


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


def cifar_unet_config(divisor: int = 1) -> dict:
    """The DDPM CIFAR-10 UNet of Ho et al. (35.7 M parameters, attention at 16x16); ``divisor`` > 1 keeps its
    layout at 1/divisor of the channels (8 groups per norm, heads of 8), for a CPU budget: 1/8 has 0.56 M."""
    widths = (128, 256, 256, 256)
    if divisor < 1 or any(w % (8 * divisor) for w in widths):
        raise ValueError(f"divisor must be a positive divisor of 16 (channels stay a multiple of 8), got {divisor}")
    config = dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=tuple(w // divisor for w in widths),
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        dropout=0.1,
    )
    if divisor > 1:
        config.update(norm_num_groups=8, attention_head_dim=8)
    return config


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
        self._forward = None  # the compiled UNet once compile() is called
        self.training: dict | None = None
        self.cpu_chunk: int | str = "auto"  # images per UNet call on a CPU: "auto" measures it once per process

    def __getstate__(self) -> dict:
        """Without the lock, the cached schedules and a compiled UNet (each process compiles its own), so that a
        reconstructor can travel to a worker process."""
        state = self.__dict__.copy()
        state["_lock"], state["_schedules"], state["_forward"] = None, {}, None
        return state

    def compile(self) -> "Reconstructor":
        """Run the UNet through ``torch.compile`` (inductor, frozen weights) from now on; returns ``self``.

        The first reconstruction pays the compilation (about 70 s for the CPU preset's tiny UNet on 2 cores,
        again for each new batch shape), so it pays only on long runs: 1.2-1.5x more UNet images/s on the
        2-core CPU (benchmarks/bench_reconstruct.py). Compiled kernels round differently from eager ones (about
        1e-6), so a compiled run is reproducible but its releases may differ from an eager run's in the last bits.
        The compiled model lives in this process only (a worker process compiles its own).
        """
        if self._forward is None:
            self._forward = torch.compile(self.unet, options={"freezing": True})
        return self

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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

    def predict_noise(self, sample: torch.Tensor, timestep: int | torch.Tensor, position: int = 0,
                      route: torch.Tensor | None = None, autocast: torch.dtype | None = None) -> torch.Tensor:
        """The epsilon the pipeline predicts for ``sample`` at ``timestep`` (one, or one per sample) at its
        ``position``-th DDIM step.

        One model answers every step here; ``DualReconstructor`` picks a model by ``position`` (alternation)
        or by ``route`` (one bool per sample: True = second model).
        """
        forward = self.unet if self._forward is None else self._forward
        # one timestep per sample, as a tensor: a compiled UNet then compiles once, not once per step value
        steps = torch.as_tensor(timestep, dtype=torch.long, device=sample.device).expand(sample.shape[0])
        with self._autocast(autocast):
            return forward(sample, steps).sample.float()

    def denoise(self, x_t: torch.Tensor, t: int, k: int, autocast: torch.dtype | None = None,
                route: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) from step ``t`` to the predicted x0, one UNet call per step."""
        steps = self.timesteps(t, k)
        if not steps:
            return x_t
        schedule = self._schedule(k)
        sample = x_t
        for i, step in enumerate(steps):
            eps = self.predict_noise(sample, step, i, route, autocast)
            out = schedule.step(eps, step, sample, eta=0.0)
            sample = out.pred_original_sample if i == len(steps) - 1 else out.prev_sample
        return sample

    def route(self, noise: torch.Tensor) -> torch.Tensor | None:
        """Which model denoises each of these (R, C, H, W) noise draws; None: there is one model."""
        return None

    def _schedule(self, k: int) -> DDIMScheduler:
        """The DDIM schedule of stride ``k``: made once under a lock and never mutated afterwards, so that
        defenses with different strides can share this reconstructor, from several threads too."""
        with self._lock:
            if k not in self._schedules:
                schedule = DDIMScheduler.from_config(self.scheduler.config)
                schedule.set_timesteps(self.num_train_timesteps // k)
                self._schedules[k] = schedule
            return self._schedules[k]

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
            max_batch: most images per UNet call; the B * n images go through the UNet in chunks of
                ``chunk`` images (on a CPU the fastest measured, at most ``max_batch``), which leaves every
                output bit-identical.
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
        size = self.chunk(b * n, max_batch, t, autocast)
        with torch.inference_mode():  # no autograd bookkeeping at all; the result is copied out of it below
            out = torch.empty_like(x0)
            for start in range(0, b * n, size):
                sl = slice(start, start + size)
                chunk_noise = flat_noise[sl].to(device, torch.float32)
                x_t = self.add_noise(x0[sl], chunk_noise, t)
                out[sl] = self.denoise(x_t, t, k, autocast, self.route(chunk_noise))
        return ((out.clamp(-1, 1) + 1) / 2).reshape(shape)  # a normal tensor, usable under autograd

    def chunk(self, images: int, max_batch: int, t: int, autocast: torch.dtype | None = None) -> int:
        """Images per UNet call for a call of ``images`` images: ``max_batch`` on an accelerator; on a CPU
        ``cpu_chunk`` if it is a number, else the fastest of ``CPU_CHUNK_PIXELS`` measured on this UNet at
        step ``t`` the first time a call spans several chunks (a few seconds, once per process per
        architecture, image shape, cap, precision and thread count). A compiled UNet is not measured (each
        new batch shape recompiles it)."""
        pixels = self.image_size ** 2
        default = unet_batch(self.device, max_batch, pixels)
        if self.device.type != "cpu":
            return default
        if self.cpu_chunk != "auto":
            return max(1, min(max_batch, int(self.cpu_chunk)))
        if images <= default or any(m._forward is not None for m in getattr(self, "models", (self,))):
            return default
        config = {k: v for k, v in self.unet.config.items() if not k.startswith("_")}
        key = (json.dumps(config, sort_keys=True, default=str), self.channels, pixels, max_batch, str(autocast),
               torch.get_num_threads(), type(self).__name__)
        if key not in _MEASURED_CHUNKS:
            _MEASURED_CHUNKS[key] = self._measure_chunk(max_batch, pixels, t, autocast, default)
        return _MEASURED_CHUNKS[key]

    def _measure_chunk(self, max_batch: int, pixels: int, t: int, autocast, default: int) -> int:
        """Images per second of the UNet at each candidate chunk, on seeded noise (the global random state is
        untouched): the best of the calls that cover ``MEASURED_PIXELS`` (two calls at least) per candidate,
        the candidates taken in turn twice so that a passing load spreads over them; the fastest by
        ``fastest_chunk``."""
        sizes = sorted({max(1, min(max_batch, p // pixels)) for p in CPU_CHUNK_PIXELS} | {default})
        gen = torch.Generator().manual_seed(0)
        samples = {size: torch.randn((size, self.channels, self.image_size, self.image_size), generator=gen)
                   for size in sizes}
        best = dict.fromkeys(sizes, float("inf"))
        with torch.inference_mode():
            for _ in range(2):
                for size, sample in samples.items():
                    for _ in range(max(1, -(-(MEASURED_PIXELS // pixels) // (2 * size)))):
                        start = time.perf_counter()
                        Reconstructor.predict_noise(self, sample, t, autocast=autocast)  # one model (a pair's first)
                        best[size] = min(best[size], time.perf_counter() - start)
        rates = {size: size / max(seconds, 1e-9) for size, seconds in best.items()}
        chosen = fastest_chunk(rates, default)
        logger.info("UNet images per call on this CPU: %d (measured images/s: %s)", chosen,
                    ", ".join(f"{s}: {r:.0f}" for s, r in rates.items()))
        return chosen

    def fingerprint(self) -> str:
        """Short hash of the UNet's config and weights (calibration files record it)."""
        return _unet_digest(self.unet).hexdigest()[:16]

    def _autocast(self, dtype: torch.dtype | None):
        if dtype is None:
            return contextlib.nullcontext()
        if self.device.type == "cpu" and dtype == torch.bfloat16 and not _cpu_has_bf16():
            warnings.warn("bf16 autocast on a CPU without bf16 units is about 10x slower than float32 "
                          "(emulated); leave autocast=None on this machine", RuntimeWarning, stacklevel=4)
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``unet/`` (safetensors + config), ``scheduler/`` and, when known, ``training.json`` under ``path``."""
        path = Path(path)
        if (path / DUAL_FILE).exists():
            raise FileExistsError(f"{str(path)!r} holds a dual pair ({DUAL_FILE}); save a single model elsewhere")
        self.unet.save_pretrained(path / "unet", safe_serialization=True)
        DDPMScheduler.from_config(self.scheduler.config).save_pretrained(path / "scheduler")
        if self.training is not None:
            (path / TRAINING_FILE).write_text(json.dumps(self.training, indent=2, sort_keys=True))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu") -> "Reconstructor":
        """Load what ``save_pretrained`` wrote (a ``DualReconstructor``'s folder too); never touches the network
        and never unpickles."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"diffusion model folder {str(path)!r} does not exist" if not path.exists() else
                                    f"diffusion model path {str(path)!r} is a file, not a save_pretrained folder")
        if (path / DUAL_FILE).is_file():
            return DualReconstructor.from_pretrained(path, device)
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
            reconstructor.training = read_json_object(path / TRAINING_FILE)
        return reconstructor


class DualReconstructor(Reconstructor):
    """DualMD's private inference: two DDPMs trained on disjoint halves of the defender's data, used together
    so that no reconstruction is made by the model that saw the input alone.

    Args:
        first, second: reconstructors made by ``diffusion.train_dual`` (their ``training["split"]`` records
            say which half of which split each saw; a pair from different splits, or two copies of one half,
            is refused).
        mode: "alternate": the DDIM steps alternate first, second, first, ... (an odd number of steps gives
            the first model one more); "keyed": each reconstruction is made by one model, chosen by a hash of
            its noise draw, which Diffence derives from the input's key and its secret seed.

    Works wherever a ``Reconstructor`` does (``Diffence``, the ART adapters, pipelines, calibration files:
    the fingerprint covers both models and the mode).
    """

    def __init__(self, first: Reconstructor, second: Reconstructor, mode: str = "alternate") -> None:
        if mode not in DUAL_MODES:
            raise ValueError(f"unknown dual mode {mode!r}; choose from {DUAL_MODES}")
        for name, model in (("first", first), ("second", second)):
            if not isinstance(model, Reconstructor) or isinstance(model, DualReconstructor):
                raise TypeError(f"{name} must be a single-model Reconstructor, got {type(model).__name__}")
        check_pair(first, second)
        super().__init__(first.unet, first.scheduler)
        self.models = (first, second)
        self.mode = mode
        self.training = {"dual": {"mode": mode, "first": first.training, "second": second.training}}

    def to(self, device: torch.device | str) -> "DualReconstructor":
        for model in self.models:
            model.to(device)
        return self

    def compile(self) -> "DualReconstructor":
        """Compile both models (see ``Reconstructor.compile``)."""
        for model in self.models:
            model.compile()
        return self

    def predict_noise(self, sample: torch.Tensor, timestep: int | torch.Tensor, position: int = 0,
                      route: torch.Tensor | None = None, autocast: torch.dtype | None = None) -> torch.Tensor:
        if self.mode == "alternate":
            return self.models[position % 2].predict_noise(sample, timestep, autocast=autocast)
        if route is None or tuple(route.shape) != (sample.shape[0],):
            raise ValueError("keyed mode needs a route (one bool per sample, from route(noise)) to pick each "
                             "sample's model")
        out = torch.empty_like(sample, dtype=torch.float32)
        for index, rows in enumerate((~route, route)):
            if bool(rows.any()):
                out[rows] = self.models[index].predict_noise(sample[rows], timestep, autocast=autocast)
        return out

    def route(self, noise: torch.Tensor) -> torch.Tensor | None:
        """Keyed mode: True (second model) where the first bit of SHA-256 of the draw's bytes is set, a fair
        coin that is the same for equal draws and unrelated to any statistic of the noise itself."""
        if self.mode != "keyed":
            return None
        rows = noise.detach().to("cpu", torch.float32).contiguous().reshape(noise.shape[0], -1).numpy()
        bits = [hashlib.sha256(row.tobytes()).digest()[0] >> 7 for row in rows]
        return torch.tensor(bits, dtype=torch.bool, device=noise.device)

    def fingerprint(self) -> str:
        digest = hashlib.sha256(f"{DUAL_FORMAT}:{self.mode}".encode())
        for model in self.models:
            digest.update(model.fingerprint().encode())
        return digest.hexdigest()[:16]

    def save_pretrained(self, path: str | Path) -> None:
        """``dual.json`` (format, mode) and the two models in ``first/`` and ``second/``."""
        path = Path(path)
        if (path / "unet").exists():
            raise FileExistsError(f"{str(path)!r} holds a single model (unet/); save the dual pair elsewhere")
        for name, model in zip(("first", "second"), self.models):
            model.save_pretrained(path / name)
        (path / DUAL_FILE).write_text(json.dumps({"format": DUAL_FORMAT, "version": 1, "mode": self.mode}, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu",
                        mode: str | None = None) -> "DualReconstructor":
        """Load what ``save_pretrained`` wrote; ``mode`` overrides the saved one."""
        path = Path(path)
        file = path / DUAL_FILE
        payload = read_json_object(file, fmt=DUAL_FORMAT, missing="not a DualReconstructor folder")
        unknown = sorted(set(payload) - {"format", "version", "mode"})
        if unknown:
            raise ValueError(f"unknown key(s) {unknown} in {str(file)!r}")
        missing = [name for name in ("first", "second") if not (path / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{str(path)!r} is missing the {' and '.join(missing)} model folder(s) of the "
                                    "dual pair")
        first, second = (Reconstructor.from_pretrained(path / name, device) for name in ("first", "second"))
        return cls(first, second, mode or payload.get("mode", "alternate"))


def split_record(model: Reconstructor, name: str) -> dict:
    """The disjoint-half record ``train_dual`` leaves in a model's ``training``; a clear error without one."""
    split = (model.training or {}).get("split")
    if not isinstance(split, dict) or split.get("half") not in ("a", "b"):
        raise ValueError(f"the {name} model carries no record of the disjoint half it was trained on; train the "
                         "pair with diffence_plugin.diffusion.train_dual (or train-diffusion --dual)")
    return split


def check_pair(first: Reconstructor, second: Reconstructor) -> None:
    """Refuse two models that are not the two halves of one split of one dataset, or that do not fit together."""
    a, b = split_record(first, "first"), split_record(second, "second")
    if a["half"] == b["half"]:
        raise ValueError(f"both models were trained on half {a['half']!r}; a dual pair needs halves 'a' and 'b'")
    for key in ("seed", "data", "records"):
        if a.get(key) != b.get(key):
            raise ValueError(f"the two models come from different splits: {key} {a.get(key)!r} vs {b.get(key)!r}")
    if (first.channels, first.image_size) != (second.channels, second.image_size):
        raise ValueError(f"the two models take different images: {first.channels}x{first.image_size}px vs "
                         f"{second.channels}x{second.image_size}px")
    if dict(first.scheduler.config) != dict(second.scheduler.config):
        raise ValueError("the two models were trained with different noise schedules")


def _cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX), as oneDNN reports it."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _unet_digest(unet: UNet2DModel) -> "hashlib._Hash":
    config = {k: v for k, v in unet.config.items() if not k.startswith("_")}  # not where or how it was loaded
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest
