"""Defenses other than Diffence: post-inference (MemGuard, HAMP's output) and, in ``training``, training-time."""

from .hamp_output import HAMPOutput
from .memguard import MemGuard

__all__ = ["HAMPOutput", "MemGuard"]
