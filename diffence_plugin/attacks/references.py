"""Reference models for LiRA and RMIA: trained by a recipe on random halves of the attacker's records, cached.

Every record of the attacker's universe is IN for exactly half of the references (Carlini et al.'s keep
masks), so each candidate has about as many IN as OUT models. Each reference's seed derives from the run's
seed and its own index, never from the order in which references happen to be trained. A finished
reference is written atomically to the cache (safetensors weights plus a JSON key of the recipe, the data,
the mask and the seed), so a rerun, or the evaluation of a second defense, reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

CACHE_FORMAT = "diffence-reference-v1"


@dataclass(frozen=True)
class ReferenceRecipe:
    """How the attacker trains one reference model.

    Args:
        train: ``train(x, y, seed) -> model`` (images in [0, 1], int labels), the model returning logits.
        key: a JSON-serialisable description of the recipe; it names the cache entry, so change it whenever
            the recipe changes.
        build: ``build() -> model``, a fresh model of the same architecture to load cached weights into; without
            it nothing is cached.
        train_with_metrics: ``train_with_metrics(x, y, seed) -> (model, metrics)``, the same training that also
            says how it went (accuracies, seconds, DP-SGD's spent epsilon); None where only ``train`` exists.
    """

    train: Callable[[np.ndarray, np.ndarray, int], nn.Module]
    key: dict = field(default_factory=dict)
    build: Callable[[], nn.Module] | None = None
    train_with_metrics: Callable[[np.ndarray, np.ndarray, int], tuple[nn.Module, dict]] | None = None

    @classmethod
    def from_training(cls, model: str, nb_classes: int, channels: int, *, defense: str = "none",
                      epochs: int = 100, batch_size: int = 64, lr: float = 1e-3, weight_decay: float = 0.0,
                      options: dict | None = None, reference: tuple[np.ndarray, np.ndarray] | None = None,
                      device: str = "cpu", channels_last: bool = False, bf16: bool = False) -> "ReferenceRecipe":
        """References trained like the target: ``train_target`` with a zoo model and a training-time defense.

        ``reference`` is the attacker's own (x, y) non-member data for defenses that need some (AdvReg);
        ``device``, ``channels_last`` and ``bf16`` say where and how each model trains and answers.
        """
        from diffence_plugin.data.models import OnDevice, build_model
        from diffence_plugin.defenses.training import train_target

        opts = dict(options or {})

        def with_metrics(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[nn.Module, dict]:
            trained = train_target(x, y, defense=defense, model=model, nb_classes=nb_classes, epochs=epochs,
                                   batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, progress=False,
                                   options=opts, reference=reference, **placement)
            return trained.model, trained.metrics

        def train(x: np.ndarray, y: np.ndarray, seed: int) -> nn.Module:
            return with_metrics(x, y, seed)[0]

        def build() -> nn.Module:
            net = build_model(model, nb_classes, channels, defense == "dpsgd")
            return OnDevice(net, **placement) if wrapped else net

        placement = {"device": device, "channels_last": channels_last, "bf16": bf16}
        wrapped = device != "cpu" or channels_last or bf16
        key = {"model": model, "nb_classes": nb_classes, "channels": channels, "defense": defense, "epochs": epochs,
               "batch_size": batch_size, "lr": lr, "options": opts,
               "reference": None if reference is None else _digest(*reference)}
        if weight_decay or wrapped:  # keys of earlier caches stay as they were
            key.update(weight_decay=weight_decay, **placement)
        return cls(train=train, key=key, build=build, train_with_metrics=with_metrics)


def in_masks(count: int, records: int, seed: int) -> np.ndarray:
    """(count, records) bool: each record IN for exactly ``count // 2`` references, at random."""
    if count < 2 or count % 2:
        raise ValueError(f"reference models come in pairs (IN and OUT for every record); got {count}")
    rng = np.random.default_rng([seed, 0x4C495241])
    return rng.random((count, records)).argsort(axis=0) < count // 2


def reference_seed(seed: int, index: int) -> int:
    """The training seed of reference ``index``: a function of the run's seed and the index only."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class ReferenceModels:
    """Trained references and the records each one saw."""

    models: list[nn.Module]
    in_mask: np.ndarray  # (R, S) over the attacker's universe of records

    def __len__(self) -> int:
        return len(self.models)


def train_references(recipe: ReferenceRecipe, x: np.ndarray, y: np.ndarray, count: int, *, seed: int,
                     cache: str | Path | None = None, progress: bool = True,
                     executor: Any = None) -> ReferenceModels:
    """Train (or load from ``cache``) ``count`` references, reference i on the records of ``in_mask[i]``.

    The training runs as one task per missing reference on ``executor`` (an ``audit.executor.Executor``;
    default: in this process, one after another). Each task
    trains with ``reference_seed(seed, i)`` and writes its model to ``cache`` atomically, so a run that dies
    halfway and is started again trains only the references that are not in the cache yet.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.ascontiguousarray(y, dtype=np.int64)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"need matching non-empty images and labels, got {x.shape[0]} and {y.shape[0]}")
    mask = in_masks(count, len(x), seed)
    folder = None
    if cache is not None and recipe.build is not None:
        folder = Path(cache)
        folder.mkdir(parents=True, exist_ok=True)
    data = _digest(x, y)
    entries = [_entry(recipe, data, mask[i], reference_seed(seed, i)) for i in range(count)]
    models: list[nn.Module | None] = [_load(folder, name, key, recipe) if folder is not None else None
                                      for name, key in entries]
    todo = [i for i, model in enumerate(models) if model is None]
    shared = dict(recipe=recipe, x=x, y=y, mask=mask, seed=seed, folder=folder, entries=entries)
    if executor is not None:
        trained = executor.map(train_reference, todo, shared=shared, desc="reference models")
    else:
        bar = tqdm(todo, desc="reference models", unit="task", disable=None if progress else True, leave=False)
        trained = [train_reference(i, **shared) for i in bar]
    for i, model in zip(todo, trained):
        models[i] = model.eval()
    return ReferenceModels(models=models, in_mask=mask)


def train_reference(index: int, *, recipe: ReferenceRecipe, x: np.ndarray, y: np.ndarray, mask: np.ndarray,
                    seed: int, folder: Path | None, entries: list[tuple[str, dict]]) -> nn.Module:
    """One task: train reference ``index`` on its IN records with its own seed; cache it if there is a cache."""
    ref_seed = reference_seed(seed, index)
    torch.manual_seed(ref_seed)
    model = recipe.train(x[mask[index]], y[mask[index]], ref_seed).eval()
    if folder is not None:
        _save(folder, *entries[index], model)
    return model


def _entry(recipe: ReferenceRecipe, data: str, mask: np.ndarray, ref_seed: int) -> tuple[str, dict]:
    """A reference's cache name and key: the recipe, the data, its IN records and its seed."""
    key = {"format": CACHE_FORMAT, "recipe": recipe.key, "data": data, "mask": _digest(mask), "seed": ref_seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20], key


def _save(folder: Path, name: str, key: dict, model: nn.Module) -> None:
    """Write weights, then the key; each through a temporary file and an atomic rename."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / f"{name}.safetensors")
    tmp.write_text(json.dumps(key, sort_keys=True, default=str))
    os.replace(tmp, folder / f"{name}.json")


def _load(folder: Path, name: str, key: dict, recipe: ReferenceRecipe) -> nn.Module | None:
    """A cached reference whose key matches exactly, or None (a damaged entry is retrained, not trusted)."""
    weights, meta = folder / f"{name}.safetensors", folder / f"{name}.json"
    if not (weights.is_file() and meta.is_file()):
        return None
    try:
        if json.loads(meta.read_text()) != json.loads(json.dumps(key, sort_keys=True, default=str)):
            return None
        model = recipe.build()
        model.load_state_dict(load_file(str(weights)))
    except Exception:  # a torn or foreign file: train again rather than trust it
        return None
    return model.eval()
