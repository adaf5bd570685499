"""Target training shared by every training-time defense: the epoch loop, the plain objective, checkpoints."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from diffence_plugin.data.models import build_model
from diffence_plugin.validation import read_json_object

FORMAT = "diffence-target"


@dataclass
class TrainedTarget:
    """A trained target classifier and what produced it."""

    model: nn.Module
    model_name: str
    defense: str
    nb_classes: int
    input_shape: tuple[int, int, int]
    options: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # train/test accuracy, epsilon for DP-SGD, seconds
    opacus_compatible: bool = False

    def config(self) -> dict:
        data = asdict(self)
        data.pop("model")
        data["input_shape"] = list(self.input_shape)
        return {"format": FORMAT, "version": 1, **data}


SCHEDULES = ("constant", "cosine")


def check_schedule(schedule: str) -> str:
    """``schedule`` if it is a known learning-rate schedule; else a ValueError listing them."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose from {SCHEDULES}")
    return schedule


def run_epochs(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               batch_loss: Callable[[nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor], *, epochs: int,
               batch_size: int, lr: float, weight_decay: float, generator: torch.Generator, progress: bool,
               desc: str, schedule: str = "constant") -> nn.Module:
    """Adam over shuffled mini-batches; ``batch_loss(model, xb, yb, epoch)`` is the defense's objective.

    ``schedule``: "constant" learning rate, or "cosine" annealing to zero over the epochs (torch's
    ``CosineAnnealingLR``), which ends training without the late loss spikes of a constant-rate Adam.
    """
    check_schedule(schedule)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs) if schedule == "cosine" else None
    model.train()
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", disable=None if progress else True, leave=False):
        for idx in torch.randperm(len(x), generator=generator).to(x.device).split(batch_size):
            optimizer.zero_grad(set_to_none=True)
            batch_loss(model, x[idx], y[idx], epoch).backward()
            optimizer.step()
        if annealing is not None:
            annealing.step()
    return model.eval()


def cross_entropy_loss(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor, epoch: int) -> torch.Tensor:
    """The plain objective, in the ``batch_loss(model, xb, yb, epoch)`` form of ``run_epochs``."""
    return nn.functional.cross_entropy(model(xb), yb)


def train_classifier(model: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int = 60, batch_size: int = 64,
                     lr: float = 1e-3, weight_decay: float = 0.0, seed: int = 0, progress: bool = True) -> nn.Module:
    """Train ``model`` with Adam and cross-entropy, no augmentation (the paper's undefended setting)."""
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)
    return run_epochs(model, xt, yt, cross_entropy_loss, epochs=epochs, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, generator=torch.Generator().manual_seed(seed), progress=progress,
                      desc="target")


def accuracy_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model.eval()(x).argmax(-1) == y).float().mean())


def save_target(target: TrainedTarget, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``model.safetensors`` and ``target.json`` into the folder ``path``; never overwrite silently."""
    path = Path(path)
    if path.exists() and any(path.iterdir()) and not overwrite:
        raise FileExistsError(f"{str(path)!r} is not empty; pass overwrite=True to replace it")
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in target.model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    (path / "target.json").write_text(json.dumps(target.config(), indent=2, default=float))
    return path


def load_target(path: str | Path) -> TrainedTarget:
    """Load what ``save_target`` wrote (safetensors only), validating the config against the weights."""
    path = Path(path)
    missing = [name for name in ("model.safetensors", "target.json") if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"target folder {str(path)!r} is missing {', '.join(missing)}")
    config = read_json_object(path / "target.json", fmt=FORMAT)
    try:
        model = build_model(config["model_name"], int(config["nb_classes"]), int(config["input_shape"][0]),
                            bool(config.get("opacus_compatible", False)))
        state = load_file(str(path / "model.safetensors"))
    except KeyError as exc:
        raise ValueError(f"{str(path / 'target.json')!r} lacks field {exc}") from exc
    except Exception as exc:
        raise ValueError(f"target folder {str(path)!r} could not be loaded: {exc}") from exc
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"weights do not match model {config['model_name']!r}: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return TrainedTarget(model=model.eval(), model_name=config["model_name"], defense=config["defense"],
                         nb_classes=int(config["nb_classes"]), input_shape=tuple(config["input_shape"]),
                         options=config.get("options", {}), metrics=config.get("metrics", {}),
                         opacus_compatible=bool(config.get("opacus_compatible", False)))


def as_tensors(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated float32 images and int64 labels."""
    from diffence_plugin.validation import as_image_batch

    xt = as_image_batch(x)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if yt.shape != (xt.shape[0],):
        raise ValueError(f"labels must have shape ({xt.shape[0]},), got {tuple(yt.shape)}")
    return xt, yt
