"""Built-in defenses, registered like any other plugin: training-time (none, DP-SGD, RelaxLoss, HAMP, SELENA,
AdvReg), pre-inference (Diffence) and post-inference (MemGuard, HAMP's output modification, labels only)."""

from __future__ import annotations

from pathlib import Path

from .hookspecs import hookimpl


def _diffence(reconstructor=None, path=None, calibration=None, **config):
    from ..defense import CONFIG_FILE, Diffence
    from ..reconstruct import Reconstructor

    if (reconstructor is None) == (path is None):
        raise ValueError("the 'diffence' defense needs exactly one of reconstructor= or path= (a saved model)")
    if path is not None and (Path(path) / CONFIG_FILE).is_file():  # a whole defense, secret seed included
        defense = Diffence.from_pretrained(path, **config)
    else:
        defense = Diffence(reconstructor or Reconstructor.from_pretrained(path), **config)
    if calibration is not None:
        defense.load_calibration(calibration)
    return defense


def _memguard(**options):
    from ..defenses.memguard import MemGuard

    return MemGuard(**options)


@hookimpl
def diffence_register_training_defenses(register):
    from ..defenses.training import defenses
    from ..defenses.training.dpsgd import DPSGD

    register("none", defenses.Standard)
    register("dpsgd", DPSGD)
    register("relaxloss", defenses.RelaxLoss)
    register("hamp", defenses.HAMP)
    register("selena", defenses.SELENA)
    register("advreg", defenses.AdvReg)


def _hamp_output(**options):
    from ..defenses.hamp_output import HAMPOutput

    return HAMPOutput(**options)


def _labels_only():
    from ..defenses.labels_only import LabelsOnly

    return LabelsOnly()


@hookimpl
def diffence_register_pre_inference(register):
    register("diffence", _diffence)


@hookimpl
def diffence_register_post_inference(register):
    register("memguard", _memguard)
    register("hamp_output", _hamp_output)
    register("labels_only", _labels_only)
