"""Built-ins, registered like any other plugin: defenses at training time (none, DP-SGD, RelaxLoss, HAMP,
SELENA, AdvReg), pre-inference (Diffence) and post-inference (MemGuard, HAMP's output modification, labels
only); the attack families threshold, LiRA, RMIA and the labels view (ART's come from its adapter); the local
executor; the HTML report; the datasets digits, CIFAR-10, CIFAR-100 and SVHN; the zoo of target architectures."""

from __future__ import annotations

import inspect
from pathlib import Path

from diffence_plugin.registry.hookspecs import hookimpl


def _diffence(reconstructor=None, path=None, calibration=None, **config):
    from diffence_plugin.defense import CONFIG_FILE, Diffence
    from diffence_plugin.reconstruct import Reconstructor

    if (reconstructor is None) == (path is None):
        raise ValueError("the 'diffence' defense needs exactly one of reconstructor= or path= (a saved model)")
    if path is not None and (Path(path) / CONFIG_FILE).is_file():  # a whole defense, secret seed included
        defense = Diffence.from_pretrained(path, **config)
    else:
        defense = Diffence(reconstructor or Reconstructor.from_pretrained(path), **config)
    if calibration is not None:
        defense.load_calibration(calibration)
    return defense


@hookimpl
def diffence_register_training_defenses(register):
    from diffence_plugin.defenses.training import defenses
    from diffence_plugin.defenses.training.dpsgd import DPSGD

    register("none", defenses.Standard)
    register("dpsgd", DPSGD)
    register("relaxloss", defenses.RelaxLoss)
    register("hamp", defenses.HAMP)
    register("selena", defenses.SELENA)
    register("advreg", defenses.AdvReg)


def _diffence_signature() -> inspect.Signature:
    """The diffence factory's options: its own (a model to load or use, a calibration) and DiffenceConfig's."""
    from diffence_plugin.config import DiffenceConfig

    own = [p for name, p in inspect.signature(_diffence).parameters.items() if name != "config"]
    return inspect.Signature(own + list(inspect.signature(DiffenceConfig).parameters.values()))


@hookimpl
def diffence_register_pre_inference(register):
    if not hasattr(_diffence, "__signature__"):
        _diffence.__signature__ = _diffence_signature()
    register("diffence", _diffence)


@hookimpl
def diffence_register_post_inference(register):
    # the classes themselves: their signatures are the options a plan is checked against
    from diffence_plugin.defenses import HAMPOutput, LabelsOnly, MemGuard

    register("memguard", MemGuard)
    register("hamp_output", HAMPOutput)
    register("labels_only", LabelsOnly)


def _family(name: str):
    def factory(**options):
        from diffence_plugin.attacks import adaptive_family, families

        return {"threshold": families.ThresholdFamily, "lira": families.LiRAFamily, "rmia": families.RMIAFamily,
                "labels": families.LabelViewFamily, "adaptive": adaptive_family.AdaptiveFamily}[name](**options)
    factory.__name__ = f"{name}_family"
    return factory


@hookimpl
def diffence_register_attacks(register):
    for name in ("threshold", "lira", "rmia", "labels", "adaptive"):
        register(name, _family(name))


def _local_executor(address=None, threads: int = 1, progress: bool = True):  # address: for remote executors
    from diffence_plugin.audit.executor import LocalExecutor

    return LocalExecutor(threads=threads, progress=progress)


@hookimpl
def diffence_register_executors(register):
    register("local", _local_executor)


def _html_report(results: dict, out):
    from diffence_plugin.report import write_report

    return [write_report(results, out)]


@hookimpl
def diffence_register_reporters(register):
    register("html", _html_report)


def _digits(folder=None):
    """sklearn's bundled digits (no folder, no test split)."""
    from diffence_plugin.data import ImageDataset, digits_images

    x, y = digits_images()
    return ImageDataset(x, y, None, None, 10)


def _folder_dataset(name: str):
    def loader(folder):
        from diffence_plugin.data import load_dataset

        return load_dataset(name, folder)
    loader.__name__ = f"load_{name}"
    loader.__doc__ = f"{name} from a local folder (nothing is downloaded)."
    return loader


@hookimpl
def diffence_register_datasets(register):
    register("digits", _digits)
    for name in ("cifar10", "cifar100", "svhn"):
        register(name, _folder_dataset(name))


@hookimpl
def diffence_register_models(register):
    from diffence_plugin.data.models import MODELS

    for name, factory in MODELS.items():
        register(name, factory)
