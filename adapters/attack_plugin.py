"""Registers ART's attacks as the "art" attack family without importing ART until a run builds it."""

from __future__ import annotations

from diffence_plugin.plugins import hookimpl


def _art_family(attacks: tuple[str, ...] = ("bb_rf", "bb_loss_rf")):
    from .art_family import ARTFamily

    return ARTFamily(attacks=tuple(attacks))


@hookimpl
def diffence_register_attacks(register):
    register("art", _art_family)
