"""DualMD and DistillMD (the second paper in ``shared/papers``): diffusion models that do not leak the members
they were trained on, for Diffence's reconstructions.

DualMD trains two DDPMs on disjoint halves of the defender's data; ``reconstruct.DualReconstructor`` uses both,
so that no reconstruction is made by the model that saw the input alone. DistillMD trains one student on all
the data whose epsilon target for each sample is the prediction of the teacher that never saw it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from diffence_plugin.diffusion.train import train_diffusion
from diffence_plugin.reconstruct import (
    DualReconstructor,
    Reconstructor,
    check_pair,
    split_record,
)
from diffence_plugin.validation import as_image_batch

HALVES = ("a", "b")


@dataclass(frozen=True)
class DisjointHalves:
    """Two disjoint halves of ``records`` images drawn with ``seed``; together they cover every record."""

    a: np.ndarray
    b: np.ndarray
    seed: int
    records: int

    def of(self, half: str) -> np.ndarray:
        if half not in HALVES:
            raise ValueError(f"half must be one of {HALVES}, got {half!r}")
        return self.a if half == "a" else self.b

    def membership(self) -> np.ndarray:
        """(records,) bool: True where the record is in half b."""
        out = np.zeros(self.records, dtype=bool)
        out[self.b] = True
        return out


def disjoint_halves(records: int, seed: int) -> DisjointHalves:
    """A seeded random split of ``range(records)`` into halves a and b (a gets the odd one out)."""
    if records < 2:
        raise ValueError(f"a dual split needs at least 2 records, got {records}")
    order = np.random.default_rng([seed, 0x4475616C]).permutation(records)
    cut = (records + 1) // 2
    return DisjointHalves(a=np.sort(order[:cut]), b=np.sort(order[cut:]), seed=seed, records=records)


def data_digest(images: torch.Tensor) -> str:
    """Short SHA-256 of the images, so that two halves can be checked to come from the same data."""
    return hashlib.sha256(images.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def train_dual(images: torch.Tensor, *, split_seed: int, seed: int = 0, mode: str = "alternate",
               **training) -> DualReconstructor:
    """Train DualMD's pair: one DDPM per disjoint half of ``images`` (``training``: ``train_diffusion``'s
    arguments, applied to each half; a ``max_seconds`` budget is per model).

    Each model's ``training["split"]`` records the split seed, the data's digest and its half, so a pair from
    different splits is refused when loaded together.
    """
    if training.get("checkpoint") is not None:
        raise ValueError("train_dual trains two models: a single checkpoint file cannot hold both; train without one")
    x = as_image_batch(images, "images")
    halves = disjoint_halves(len(x), split_seed)
    digest = data_digest(x)
    models = []
    for index, half in enumerate(HALVES):
        rows = torch.from_numpy(halves.of(half))
        record = {"split": {"seed": split_seed, "half": half, "records": len(x), "data": digest,
                            "half_records": int(len(rows))}}
        models.append(train_diffusion(x[rows], seed=_model_seed(seed, index), record=record, **training))
    return DualReconstructor(*models, mode=mode)


class TeacherTargets:
    """DistillMD's soft targets: for a sample of half a, teacher b's epsilon prediction, and the reverse,
    computed under ``torch.no_grad`` in one batched call per teacher."""

    def __init__(self, teachers: DualReconstructor | tuple[Reconstructor, Reconstructor], images: torch.Tensor,
                 device: torch.device | str = "cpu") -> None:
        pair = teachers.models if isinstance(teachers, DualReconstructor) else tuple(teachers)
        if len(pair) != 2:
            raise ValueError(f"DistillMD needs two teachers, got {len(pair)}")
        check_pair(*pair)
        records = {split_record(model, name)["half"]: model for model, name in zip(pair, ("first", "second"))}
        split = split_record(pair[0], "first")
        x = as_image_batch(images, "images")
        if len(x) != split["records"] or data_digest(x) != split["data"]:
            raise ValueError(f"the teachers were trained on halves of other data ({split['records']} records, "
                             f"digest {split['data']}); pass the very images train_dual split")
        halves = disjoint_halves(len(x), split["seed"])
        self.in_b = torch.from_numpy(halves.membership()).to(device)
        self.teachers = (records["a"].to(device), records["b"].to(device))
        self.record = {"split": {k: v for k, v in split.items() if k != "half"},
                       "teachers": {h: m.fingerprint() for h, m in zip(HALVES, self.teachers)},
                       "rule": "each sample's target is the prediction of the teacher that did not see it"}

    @torch.no_grad()
    def __call__(self, noisy: torch.Tensor, timesteps: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        in_b = self.in_b[indices]
        out = torch.empty_like(noisy)
        for rows, teacher in ((~in_b, self.teachers[1]), (in_b, self.teachers[0])):  # a's samples: teacher b
            if bool(rows.any()):
                out[rows] = teacher.predict_noise(noisy[rows], timesteps[rows])
        return out


def train_distilled(images: torch.Tensor, teachers: DualReconstructor, *, seed: int = 0,
                    **training) -> Reconstructor:
    """DistillMD: a student DDPM trained on all of ``images`` (the data ``train_dual`` split) to predict, for
    each sample, the epsilon of the teacher that never saw it. Returns an ordinary ``Reconstructor``."""
    x = as_image_batch(images, "images")
    targets = TeacherTargets(teachers, x, training.get("device", "cpu"))
    return train_diffusion(x, seed=_model_seed(seed, 2), targets=targets, **training)


def _model_seed(seed: int, index: int) -> int:
    """Model ``index``'s training seed: first half 0, second half 1, student 2."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
