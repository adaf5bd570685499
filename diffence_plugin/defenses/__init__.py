"""Defenses other than Diffence: post-inference (MemGuard, HAMP's output, labels only) and, in ``training``, training-time."""

from .hamp_output import HAMPOutput
from .labels_only import LabelsOnly
from .memguard import MemGuard

__all__ = ["HAMPOutput", "LabelsOnly", "MemGuard"]
