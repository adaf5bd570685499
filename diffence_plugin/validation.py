"""Checks on user inputs that name the problem, shared by every entry point."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def read_json_object(path: str | Path, *, fmt: str | None = None, label: str = "", missing: str = "") -> dict:
    """Parse a JSON file that must hold an object (whose "format" is ``fmt``, when given); every problem is
    an error naming the file (``label`` says what it is, ``missing`` what its absence means)."""
    path = Path(path)
    name = f"{label} {str(path)!r}" if label else repr(str(path))
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{name} does not exist" + (f": {missing}" if missing else "")) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name} is not valid JSON: {exc}") from exc
    if fmt is not None and (not isinstance(payload, dict) or payload.get("format") != fmt):
        raise ValueError(f"{name} is not a {fmt} file")
    if not isinstance(payload, dict):
        raise ValueError(f"{name} must hold a JSON object, got {type(payload).__name__}")
    return payload


def as_image_batch(x: torch.Tensor | np.ndarray, name: str = "x") -> torch.Tensor:
    """Return ``x`` as a float32 (B, C, H, W) tensor in [0, 1], or raise naming what is wrong.

    float64 and float16/bfloat16 are converted to float32; integer and boolean inputs are rejected
    because their range is ambiguous (0..255 or 0..1): scale them to [0, 1] first.
    """
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} has dtype {x.dtype}; Diffence expects floating-point images in [0, 1] "
            "(divide integer pixels by their maximum, e.g. 255, first)"
        )
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got rank {x.dim()} shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    x = x.float()
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def check_image_geometry(x: torch.Tensor, channels: int, size: int, name: str = "x") -> None:
    """Raise if ``x`` does not have the channel count and square size the diffusion model was built for."""
    if x.shape[1] != channels:
        raise ValueError(f"{name} has {x.shape[1]} channel(s) but the diffusion model expects {channels}")
    if tuple(x.shape[2:]) != (size, size):
        raise ValueError(
            f"{name} has spatial size {tuple(x.shape[2:])} but the diffusion model expects ({size}, {size})"
        )


NUMPY_MAGIC = {"npz": (b"PK", "a numpy .npz archive (np.savez)"), "npy": (b"\x93NUMPY", "a numpy .npy file (np.save)")}


def numpy_file_problem(path: str | Path, kinds: tuple[str, ...], head: int = 16) -> str | None:
    """Why ``path`` is not a numpy file of one of ``kinds`` ("npz", "npy"), from its first ``head`` bytes only;
    None when it looks like one (numpy's own error for a text file speaks of pickled objects, which misleads)."""
    path = Path(path)
    if not path.is_file():
        return "does not exist" if not path.exists() else "is not a file"
    with path.open("rb") as f:
        start = f.read(head)
    if any(start.startswith(NUMPY_MAGIC[k][0]) for k in kinds):
        return None
    wanted = NUMPY_MAGIC[kinds[0]][1] if len(kinds) == 1 else "a numpy " + " or ".join(f".{k}" for k in kinds) + " file"
    return f"is not {wanted}: it starts with {start!r}"
