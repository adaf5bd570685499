"""Diffusion wing: training the DDPM that Diffence reconstructs with, alone or as DualMD's pair and
DistillMD's student."""

from diffence_plugin.diffusion.dual import (
    DisjointHalves,
    TeacherTargets,
    disjoint_halves,
    train_distilled,
    train_dual,
)
from diffence_plugin.diffusion.train import train_diffusion

__all__ = ["DisjointHalves", "TeacherTargets", "disjoint_halves", "train_diffusion", "train_distilled", "train_dual"]
