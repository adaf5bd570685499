"""Registers ART's attacks as the "art" attack family without importing ART until a run builds it."""

from __future__ import annotations

from diffence_plugin.registry import hookimpl


def _art_family(attacks: tuple[str, ...] = ("bb_rf", "bb_loss_rf")):
    from diffence_plugin.adapters.art_family import ARTFamily

    return ARTFamily(attacks=tuple(attacks))


def _choices() -> tuple[str, ...]:
    """ART's attacks the family offers (imports ART: asked only by ``diffence plugins``)."""
    from diffence_plugin.adapters.art_family import ATTACKS

    return ATTACKS


_art_family.choices = _choices


@hookimpl
def diffence_register_attacks(register):
    register("art", _art_family)
