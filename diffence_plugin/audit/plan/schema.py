"""The plan of one membership audit: a validated table (TOML or JSON) that says everything a run does.

``diffence evaluate CONFIG``, ``diffence demo`` and ``diffence reproduce`` all run a plan through the one
engine (``audit.run``); the demo and the CIFAR presets are plan files shipped in
``diffence_plugin/presets``. A plan names the data and the members, the target (weights to load, or a
recipe to train it), the defender's diffusion model (a folder to load, or how to train it), the defenses by
registered name (a list of names is a pipeline), the attacker (reference models, its own DDPM, which attacks)
and the run (seeds, output folder, device). Every field is checked with an error that names it; unknown keys
are refused. ``resolve`` fills in defaults, so a resolved plan says everything, and the run writes it back
as ``config.json`` (owner-only: it holds the defense's secret seed), which reproduces the same numbers.

Sections and keys (defaults in ``DEFAULTS``):

- ``[data]``: ``npz`` (a file with arrays x (N, C, H, W) in [0, 1] and y) | ``dataset`` (digits, cifar10,
  cifar100, svhn) with ``folder``; a dataset's test split gives the target's test accuracy.
- ``[members]``: ``indices`` (an .npy file) | ``count`` with ``seed``; ``draw = "with_roles"`` draws the
  members and the roles in one permutation of ``[roles].seed`` (the presets' split).
- ``[roles]``: known members/non-members of the ``defender`` and the ``attacker``, ``evaluation`` records of
  each kind, RMIA's ``population`` records, ``canaries`` (that many members and as many non-members made
  maximally vulnerable, audited apart from the average case: the worst case; 0: none) of ``canary_kind``
  ("flipped_labels": a wrong label; "shuffled_pixels": the image's pixels permuted, an out-of-distribution image
  with its label), ``public`` (that many non-members set aside as unlabeled public data for
  ``[diffusion].data = "public"``; taken from what would be the attacker's pool), and their ``seed``.
- ``[target]``: ``model`` (a zoo name or ``package.module:factory``), ``weights`` (safetensors) or
  ``[target.train]`` (``defense``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``, ``options``).
- ``[diffusion]``: ``path`` (a saved model) or training: ``unet`` ("tiny" or "cifar"), ``width``, ``steps``,
  ``batch_size``, ``max_timestep``, optional ``seconds`` (a time budget: such a run does not reproduce on
  another machine). ``data``: "members" (the target's training set) or "public" (every record that is no
  evaluation, canary or attacker record: the defender's known records, spare members and ``[roles].public``;
  the attacker's own DDPM then trains on the same public data, all of it). ``kind``: "single" (one DDPM on
  that data), "dual" (DualMD: two DDPMs on disjoint halves, ``split_seed`` and ``mode`` "alternate" or
  "keyed") or "distill" (DistillMD: a student of that pair). ``t_choices``: noise steps the defender's
  calibration chooses among (Scenario 1's criterion, once); every Diffence defense then uses the chosen t.
- ``[[defenses]]``: ``name`` (a registered defense, or a list: a pipeline), ``label``, ``options`` (one
  defense's keyword arguments, or for a pipeline a table per name).
- ``[attacks]``: ``threshold``, ``art`` (ART's attacks), ``references`` (LiRA / RMIA reference models),
  ``reference_recipe`` (default: the target's training recipe), ``aware`` (the attacker copies each
  defense), ``augment`` (flipped queries), ``attacker_ddpm_steps`` (default: the defender's),
  ``attacker_ddpm_records`` (how many of its pool records its DDPM trains on; 0: all; under
  ``[diffusion].data = "public"`` it trains on the public data instead), ``selection_draws``,
  ``defense_seeds``, ``plugins`` (attacks registered by plugins, ``diffence_register_attacks``, by name),
  ``labels`` (LiRA on every release's top-1 labels alone, a floor every row's chosen attack may pick; default on).
- ``[run]``: ``seed``, ``out``, ``bootstrap``, ``overwrite``, ``progress``, ``executor``, ``address``,
  ``threads`` (torch threads per task; 0: torch's current count), ``shard_size``, ``max_batch`` (a cap on
  images per model call; on a CPU the UNet runs the chunk it measures fastest below it), ``compile`` (``torch.compile`` the DDPMs:
  faster on long runs after a first-call cost, see ``Reconstructor.compile``), ``device`` ("auto", "cpu",
  "cuda"), ``channels_last`` (train and run the classifiers and train the DDPMs in channels-last memory
  format on a CPU too: on the 2-core CPU the CPU preset's target trained 26% and its DDPM 10% faster,
  docs/results.md; not bit-identical to the default; CUDA always uses it), ``reconstruct_bf16`` (the DDPM
  reconstructs under bf16 autocast on a CPU too, for the defender and the attacker's copies: for CPUs with
  bf16 units, where Diffence ran 1.2x faster, docs/results.md; a CPU without them warns, being about 10x slower;
  not bit-identical to float32; CUDA always uses bf16), ``defense_seed``
  ("secret": drawn with ``secrets`` and recorded; "derived": from ``[run].seed``, public, for published
  demos only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMAT = "diffence-plan-v1"
SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "data": {"npz": str, "dataset": str, "folder": str},
    "members": {"indices": str, "count": int, "seed": int, "draw": str},
    "roles": {"defender": int, "attacker": int, "evaluation": int, "population": int, "canaries": int, "canary_kind": str,
              "public": int, "seed": int},
    "target": {"model": str, "weights": str, "nb_classes": int, "options": dict, "train": dict},
    "diffusion": {"path": str, "unet": str, "width": int, "steps": int, "batch_size": int, "max_timestep": int,
                  "seconds": float, "lr": float, "t_choices": list, "kind": str, "split_seed": int, "mode": str,
                  "data": str},
    "attacks": {"threshold": bool, "art": list, "references": int, "reference_recipe": dict, "aware": bool,
                "augment": bool, "attacker_ddpm_steps": int, "attacker_ddpm_records": int, "selection_draws": int,
                "defense_seeds": int, "plugins": list, "labels": bool},
    "run": {"seed": int, "out": str, "bootstrap": int, "overwrite": bool, "progress": bool, "executor": str,
            "address": str, "threads": int, "shard_size": int, "max_batch": int, "compile": bool, "device": str,
            "channels_last": bool, "reconstruct_bf16": bool,
            "defense_seed": str},
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "data": {},
    "members": {"draw": "separate"},
    "roles": {"defender": 75, "attacker": 75, "evaluation": 150, "population": 150, "canaries": 0,
              "canary_kind": "flipped_labels", "public": 0, "seed": 0},
    "target": {"options": {}},
    "diffusion": {"unet": "tiny", "width": 16, "steps": 400, "batch_size": 128, "max_timestep": 100, "lr": 2e-4,
                  "t_choices": [], "kind": "single", "mode": "alternate", "data": "members"},
    "attacks": {"threshold": True, "art": ["bb_rf", "bb_loss_rf"], "references": 8, "reference_recipe": {},
                "aware": True, "augment": False, "selection_draws": 10, "defense_seeds": 1, "plugins": [],
                "labels": True},
    "run": {"seed": 0, "out": "audit", "bootstrap": 1000, "overwrite": False, "progress": True,
            "executor": "local", "address": "", "threads": 0, "shard_size": 256, "max_batch": 1024,
            "compile": False, "device": "cpu", "channels_last": False, "reconstruct_bf16": False,
            "defense_seed": "secret"},
}
RECIPE_KEYS = {"model": str, "defense": str, "epochs": int, "batch_size": int, "lr": float, "weight_decay": float,
               "options": dict, "factory": str}
PRESET_FOLDER = Path(__file__).resolve().parents[2] / "presets"


class ConfigError(ValueError):
    """A plan field is missing, unknown, of the wrong type or inconsistent with the data; the message names it."""


def check_type(where: str, value: Any, kind: type) -> Any:
    """``value`` if it is of ``kind`` (an int passes as a float; a bool never passes as an int)."""
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigError(f"{where} must be {kind.__name__}, got {type(value).__name__} {value!r}")
    return value
