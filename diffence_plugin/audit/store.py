"""The run folder: whether a run may write into it, and what its finished training stages left there.

A run writes into an empty folder. A folder that holds an unfinished run of the same plan (its
``config.json`` and no ``results.json``) is resumed: every model that run finished training (the target,
the defender's and the attacker's DDPMs, in ``stages/``; the reference models, in ``reference-cache/``) is
loaded instead of trained again, and the rows come out the same. ``--overwrite`` clears the folder first, so
a new record never stands beside an old run's results. Anything else is refused with a message that says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from diffence_plugin.audit.plan import Plan

STAGES = "stages"
VOLATILE = (("run", "overwrite"), ("run", "progress"), ("run", "out"), ("run", "cache"))  # not part of what a run computes


def _comparable(record: dict) -> str:
    """A plan's table without what does not change what a run computes (its folder, progress, overwrite) and
    without its secrets (the stored run's secret is adopted, not compared)."""
    record = json.loads(json.dumps(record))
    for section, key in VOLATILE:
        record.get(section, {}).pop(key, None)
    for d in record.get("defenses", []):
        for options in d.get("options", {}).values():
            options.pop("seed", None)
    return json.dumps(record, sort_keys=True, default=str)


def claim_folder(plan: Plan) -> str:
    """``"new"``, ``"resume"`` (adopting the stored run's secret seeds into ``plan``) or ``"overwrite"``;
    raises FileExistsError when the folder holds something the run must not touch. Makes nothing."""
    out = Path(plan.run.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output folder {str(out)!r} is a file")
    if not out.exists() or not any(out.iterdir()):
        return "new"
    if plan.run.overwrite:
        return "overwrite"
    record, results = out / "config.json", out / "results.json"
    if not record.is_file() or results.is_file():
        what = "a finished run" if results.is_file() else "files that are not a run of diffence"
        raise FileExistsError(f"output folder {str(out)!r} is not empty: it holds {what}; pass --overwrite to replace "
                              "its contents, or choose another --out")
    try:
        stored = json.loads(record.read_text())
    except ValueError as exc:
        raise FileExistsError(f"{str(record)!r} is not a readable run record ({exc}); pass --overwrite") from exc
    if _comparable(stored) != _comparable(plan.to_dict()):
        raise FileExistsError(f"output folder {str(out)!r} holds an unfinished run of another plan; pass --overwrite "
                              "to replace it, or choose another --out")
    for mine, theirs in zip(plan.defenses, stored["defenses"]):  # the stored run's secret seeds
        for name, options in theirs["options"].items():
            if "seed" in options:
                mine.options[name]["seed"] = options["seed"]
    return "resume"


def make_folder(out: Path, mode: str) -> None:
    """Create the folder (clearing it first for ``"overwrite"``)."""
    if mode == "overwrite":
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    out.mkdir(parents=True, exist_ok=True)


def stage_key(**parts: Any) -> str:
    """A short digest of what a stage's output depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """Finished models in ``CACHE/stages`` (the run's folder unless ``[run].cache`` names another), each under its
    name and the digest of what produced it, so runs that share the folder reuse what they have in common."""

    def __init__(self, out: Path | None) -> None:
        self.folder = None if out is None else Path(out) / STAGES

    def model(self, name: str, key: str, build: Callable[[], torch.nn.Module] | None,
              train: Callable[[], tuple[torch.nn.Module, dict]]) -> tuple[torch.nn.Module, dict]:
        """(model, metrics) from the folder when a finished stage matches ``key``, else trained and saved."""
        from safetensors.torch import load_file, save_file

        if self.folder is None or build is None:
            return train()
        name = f"{name}-{key}"  # several runs (a sweep's variants) may share the folder
        weights, meta = self.folder / f"{name}.safetensors", self.folder / f"{name}.json"
        if weights.is_file() and meta.is_file():
            record = json.loads(meta.read_text())
            if record.get("key") == key:
                model = build()
                model.load_state_dict(load_file(str(weights)))
                return model.eval(), {**record.get("metrics", {}), "resumed": True}
        model, metrics = train()
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        save_file(state, str(tmp))
        os.replace(tmp, weights)
        tmp.write_text(json.dumps({"key": key, "metrics": metrics}, default=str))
        os.replace(tmp, meta)
        return model, metrics

    def ddpm(self, name: str, key: str, train: Callable[[], Any], device: str = "cpu"):
        """A diffusion model from the folder when a finished stage matches ``key``, else trained and saved."""
        from diffence_plugin.reconstruct import Reconstructor

        if self.folder is None:
            return train()
        name = name if name.endswith(key) else f"{name}-{key}"  # several runs may share the folder
        folder = self.folder / name
        if (folder / "stage.json").is_file() and json.loads((folder / "stage.json").read_text()).get("key") == key:
            return Reconstructor.from_pretrained(folder, device)
        ddpm = train()
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ddpm.save_pretrained(tmp)
        (tmp / "stage.json").write_text(json.dumps({"key": key}))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
        return ddpm
