"""Defenses other than Diffence: post-inference (MemGuard, HAMP's output, labels only) and, in ``training``, training-time."""

from diffence_plugin.defenses.hamp_output import HAMPOutput
from diffence_plugin.defenses.labels_only import LabelsOnly
from diffence_plugin.defenses.memguard import MemGuard

__all__ = ["HAMPOutput", "LabelsOnly", "MemGuard"]
