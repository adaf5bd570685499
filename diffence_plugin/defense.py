"""The Diffence defense: reconstruct -> classify -> select, one object, one verb (``defend``)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffence_plugin.calibrate import (
    Calibration,
    interval_scenario1,
    interval_scenario2,
)
from diffence_plugin.classify import (
    Classifier,
    classify,
    looks_like_probabilities,
    to_log_probabilities,
)
from diffence_plugin.config import DiffenceConfig, Scenario
from diffence_plugin.outputs import Candidates, DefenseOutput
from diffence_plugin.randomness import canonical, input_keys, key_generators
from diffence_plugin.reconstruct import Reconstructor
from diffence_plugin.select import ORIGINAL, Selection, label_matches, phi, select
from diffence_plugin.validation import (
    as_image_batch,
    check_image_geometry,
    read_json_object,
)

CONFIG_FILE = "diffence.json"
CONFIG_FORMAT = "diffence-plugin/defense"



def _off_grid_advice(x: torch.Tensor, levels: int, off: float) -> str:
    """What to do when inputs are off the ``levels`` grid: the bit depth they do sit on, or, for continuous
    values, what the quantised key does to them and the keys that leave them as they are."""
    head = f"inputs are not on the grid of levels={levels} (a pixel lies {off:.3f} of a grey level off it)"
    scaled = x.detach().double()
    for depth in (1, 15, 16, 31, 32, 63, 64, 127, 128, 255, 256, 1023, 4095, 65535):
        if float((scaled * depth - (scaled * depth).round()).abs().max()) <= 1e-3:
            return f"{head}; they sit on a grid of {depth} levels: set levels = {depth}"
    return (f"{head}, nor on any usual bit depth: the data look continuous. Diffence reconstructs each input "
            f"rounded to 1/{levels} (at most {0.5 / levels:.2g} per pixel) and repeated queries share noise only "
            "when they round alike; keep it (the labels are checked on the original input), or set "
            "key = 'lsh' (near-duplicates within lsh_width share noise) or key = 'raw' (the exact input, its exact "
            "repeats only)")

class Diffence:
    """Pre-inference membership-inference defense of Peng, Naseh & Houmansadr (NDSS 2025).

    Each input is reconstructed ``n`` times by a diffusion model (noise to step ``t``, DDIM back with
    stride ``k``), every reconstruction is classified, and one whose label equals the label on the original
    input is released; accuracy is therefore unchanged (scenarios 1-3).

    Deterministic mode (default): the randomness of each input is derived from a key of the input (by
    default the input rounded to its bit depth, ``levels``) and the secret ``seed``, so querying the same
    input again, or a copy changed by less than half a grey level, returns the same vector. Without it an
    attacker could query an input many times and average away the defense's randomness. The label that
    candidates must keep is always the classifier's label on the input as given, so accuracy is unchanged.

    Args:
        reconstructor: the diffusion model (see ``Reconstructor``).
        n, t, k, scenario, deterministic, seed, max_batch, output, key, levels, lsh_projections, lsh_width, pick:
            see ``DiffenceConfig``. ``seed=None`` (default) draws a secret one; ``save_pretrained`` keeps it.
        autocast: optional dtype for the UNet (``torch.bfloat16`` on GPUs).
        progress: show a progress bar over inputs.
    """

    def __init__(
        self,
        reconstructor: Reconstructor,
        n: int = 50,
        t: int = 40,
        k: int = 10,
        scenario: Scenario = 1,
        *,
        deterministic: bool = True,
        seed: int | None = None,
        max_batch: int = 1024,
        output: str = "auto",
        key: str = "quantised",
        levels: int = 255,
        lsh_projections: int = 4,
        lsh_width: float = 2.0,
        pick: str = "rank",
        autocast: torch.dtype | None = None,
        progress: bool = False,
    ) -> None:
        if not isinstance(reconstructor, Reconstructor):
            raise TypeError(f"reconstructor must be a Reconstructor, got {type(reconstructor).__name__}")
        self.config = DiffenceConfig(n=n, t=t, k=k, scenario=scenario, deterministic=deterministic, seed=seed,
                                     max_batch=max_batch, output=output, key=key, levels=levels,
                                     lsh_projections=lsh_projections, lsh_width=lsh_width, pick=pick)
        reconstructor.timesteps(t, k)
        self.reconstructor = reconstructor
        self.autocast = autocast
        self.progress = progress
        self.calibration: Calibration | None = None
        self._generator = torch.Generator().manual_seed(self.config.seed)
        self._grid_checked = False
        self._fingerprint: str | None = None

    @classmethod
    def from_config(cls, reconstructor: Reconstructor, config: DiffenceConfig, **kwargs) -> "Diffence":
        return cls(reconstructor, **config.to_dict(), **kwargs)

    def with_config(self, **changes) -> "Diffence":
        """A new defense sharing this reconstructor, with some settings changed (calibration not copied)."""
        config = dataclasses.replace(self.config, **changes)
        return Diffence.from_config(self.reconstructor, config, autocast=self.autocast, progress=self.progress)

    def fingerprint(self) -> str:
        """Short hash of the diffusion model's config and weights, stored with calibrations."""
        if self._fingerprint is None:
            self._fingerprint = self.reconstructor.fingerprint()
        return self._fingerprint

    def _check_input(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        x = as_image_batch(x, name)
        check_image_geometry(x, self.reconstructor.channels, self.reconstructor.image_size, name)
        return x

    def keys(self, x: torch.Tensor) -> list[bytes]:
        """The key each input's randomness is derived from (deterministic mode): equal keys, equal noise."""
        cfg = self.config
        return input_keys(x, cfg.key, levels=cfg.levels, projections=cfg.lsh_projections, width=cfg.lsh_width,
                          seed=cfg.seed)

    def _check_grid(self, x: torch.Tensor) -> None:
        """Warn once when the first inputs do not sit on the declared grey levels: the quantised key then
        splits near-duplicates that straddle a rounding edge."""
        if self._grid_checked or self.config.key == "raw":
            return
        self._grid_checked = True
        scaled = x.detach().double() * self.config.levels
        off = float((scaled - scaled.round()).abs().max()) if scaled.numel() else 0.0
        if off > 1e-3:
            warnings.warn(_off_grid_advice(x, self.config.levels, off), UserWarning, stacklevel=3)

    def _reconstruction_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the diffusion model reconstructs: the quantised input, unless the key is the raw bytes."""
        return x if self.config.key == "raw" else canonical(x, self.config.levels).to(x.device)

    def _randomness(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n, C, H, W) noise and (B,) uniforms: per input from its key, or from the running generator."""
        cfg = self.config
        shape = (cfg.n, *x.shape[1:])
        if not cfg.deterministic:
            noise = torch.randn((x.shape[0], *shape), generator=self._generator)
            return noise, torch.rand(x.shape[0], generator=self._generator, dtype=torch.float64)
        self._check_grid(x)
        noises, us = [], []
        prefix = f"diffence/{cfg.seed}/{cfg.n}/{cfg.t}/{cfg.k}/{cfg.key}/{tuple(x.shape[1:])}".encode()
        for gen in key_generators(self.keys(x), prefix):
            noises.append(torch.randn(shape, generator=gen))
            us.append(torch.rand((), generator=gen, dtype=torch.float64))
        return torch.stack(noises), torch.stack(us)

    def _raw_outputs(self, classifier: Classifier, images: torch.Tensor, nb_classes: int | None) -> torch.Tensor:
        raw = classify(classifier, images, self.config.max_batch)
        if nb_classes is not None and raw.shape[-1] != nb_classes:
            raise ValueError(f"the classifier returned {raw.shape[-1]} classes, expected {nb_classes}")
        if raw.shape[-1] < 2:
            raise ValueError(f"the classifier must return at least 2 classes, got {raw.shape[-1]}")
        return raw

    def _output_kind(self, raw: torch.Tensor) -> str:
        if self.config.output != "auto":
            return self.config.output
        return "probabilities" if looks_like_probabilities(raw) else "logits"

    def _chunks(self, x: torch.Tensor, desc: str):
        size = max(1, self.config.max_batch // self.config.n)
        bar = tqdm(total=x.shape[0], desc=desc, unit="input", disable=None if self.progress else True, leave=False)
        for start in range(0, x.shape[0], size):
            chunk = x[start : start + size]
            yield chunk
            bar.update(chunk.shape[0])
        bar.close()

    def _expected_classes(self, nb_classes: int | None) -> int | None:
        if self.calibration is not None:
            if nb_classes is not None and nb_classes != self.calibration.nb_classes:
                raise ValueError(f"nb_classes={nb_classes} but the calibration has {self.calibration.nb_classes}")
            return self.calibration.nb_classes
        return nb_classes

    def _score(self, classifier, chunk, images, u, state: dict) -> Candidates:
        """Classify one chunk's originals and reconstructions; ``state`` carries the output kind and class count."""
        raw = self._raw_outputs(classifier, chunk, state.get("expected"))
        state.setdefault("kind", self._output_kind(raw))
        state["expected"] = raw.shape[-1]
        original = to_log_probabilities(raw, state["kind"])
        cand = self._raw_outputs(classifier, images.flatten(0, 1), state["expected"])
        cand = to_log_probabilities(cand, state["kind"])
        return Candidates(original.cpu(), cand.reshape(*images.shape[:2], -1).cpu(), u)

    def _process(self, classifier, x, nb_classes, keep_images: bool):
        """Yield (chunk, Candidates, reconstructions or None) per input chunk; the core loop."""
        cfg = self.config
        state = {"expected": self._expected_classes(nb_classes)}
        device = self.reconstructor.device
        for chunk in self._chunks(x, "diffence"):
            chunk = chunk.to(device)
            noise, u = self._randomness(chunk)
            images = self.reconstructor.reconstruct(self._reconstruction_input(chunk), cfg.n, cfg.t, cfg.k,
                                                    noise=noise, max_batch=cfg.max_batch, autocast=self.autocast)
            yield chunk, self._score(classifier, chunk, images, u, state), (images if keep_images else None)

    @torch.no_grad()
    def reconstructions(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, n, C, H, W) reconstructions of ``x`` (on the CPU), with the same randomness as ``defend``.

        Reconstruction does not depend on the classifier, so one call serves many classifiers (an attacker's
        reference models, say) through ``candidates_from_reconstructions``.
        """
        cfg = self.config
        x = self._check_input(x)
        out = []
        for chunk in self._chunks(x, "reconstruct"):
            chunk = chunk.to(self.reconstructor.device)
            out.append(self.reconstructor.reconstruct(self._reconstruction_input(chunk), cfg.n, cfg.t, cfg.k,
                                                      noise=self._randomness(chunk)[0],
                                                      max_batch=cfg.max_batch, autocast=self.autocast).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def candidates_from_reconstructions(self, classifier: Classifier, x: torch.Tensor, images: torch.Tensor,
                                        nb_classes: int | None = None) -> Candidates:
        """``candidates`` for inputs whose ``reconstructions`` were computed already."""
        x = self._check_input(x)
        if images.shape[:2] != (x.shape[0], self.config.n) or images.shape[2:] != x.shape[1:]:
            raise ValueError(f"reconstructions of shape {tuple(images.shape)} do not fit {x.shape[0]} inputs of "
                             f"shape {tuple(x.shape[1:])} at n={self.config.n}")
        state = {"expected": self._expected_classes(nb_classes)}
        device = self.reconstructor.device
        parts, size = [], max(1, self.config.max_batch // self.config.n)
        for start in range(0, x.shape[0], size):
            chunk = x[start : start + size].to(device)
            parts.append(self._score(classifier, chunk, images[start : start + size].to(device),
                                     self._randomness(chunk)[1], state))
        return Candidates.cat(parts)

    @torch.no_grad()
    def candidates(self, classifier: Classifier, x: torch.Tensor, nb_classes: int | None = None) -> Candidates:
        """Reconstruct and classify ``x`` (B, C, H, W) in [0, 1]; selection is left to ``release``."""
        x = self._check_input(x)
        return Candidates.cat([cands for _, cands, _ in self._process(classifier, x, nb_classes, False)])

    def release(self, candidates: Candidates) -> Selection:
        """Apply this defense's selection rule to precomputed candidates (of the same n, t, k and seed)."""
        if candidates.candidate_log_probs.shape[1] != self.config.n:
            raise ValueError(f"candidates hold {candidates.candidate_log_probs.shape[1]} reconstructions per "
                             f"input, this defense uses n={self.config.n}")
        interval = None
        if self.config.needs_calibration:
            if self.calibration is None:
                raise ValueError(f"scenario {self.config.scenario} needs calibrate() or load_calibration() first")
            if candidates.nb_classes != self.calibration.nb_classes:
                raise ValueError(f"the classifier returned {candidates.nb_classes} classes but the calibration "
                                 f"was made with {self.calibration.nb_classes}")
            interval = self.calibration.interval
        return select(self.config.scenario, candidates.original_log_probs, candidates.candidate_log_probs,
                      candidates.u, interval, pick=self.config.pick)

    @torch.no_grad()
    def defend_detailed(self, classifier: Classifier, x: torch.Tensor, *, nb_classes: int | None = None,
                        return_images: bool = False) -> DefenseOutput:
        """Like ``defend`` but also returns the chosen index, the original labels and optionally the images."""
        if return_images and self.config.scenario == "mean":
            raise ValueError('no image to return: scenario "mean" releases the average prediction over all n '
                             "reconstructions, not one selected reconstruction; use scenario 1, 2 or 3")
        x = self._check_input(x)
        probs, index, labels, images = [], [], [], []
        for chunk, cands, recon in self._process(classifier, x, nb_classes, return_images):
            chosen = self.release(cands)
            probs.append(chosen.probs.float())
            index.append(chosen.index)
            labels.append(cands.original_log_probs.argmax(dim=-1))
            if return_images:
                picked = recon[torch.arange(len(chunk), device=recon.device), chosen.index.clamp_min(0).to(recon.device)]
                keep = (chosen.index == ORIGINAL).to(recon.device).view(-1, 1, 1, 1)
                images.append(torch.where(keep, chunk.float(), picked))
        return DefenseOutput(probs=torch.cat(probs), index=torch.cat(index), labels=torch.cat(labels),
                             images=torch.cat(images) if return_images else None)

    def defend(self, classifier: Classifier, x: torch.Tensor, *, nb_classes: int | None = None) -> torch.Tensor:
        """Defended (B, K) float32 probabilities for images ``x`` (B, C, H, W) in [0, 1]."""
        return self.defend_detailed(classifier, x, nb_classes=nb_classes).probs

    def purify(self, classifier: Classifier, x: torch.Tensor, *, nb_classes: int | None = None) -> torch.Tensor:
        """The selected reconstruction of each input (the input itself where none kept its label)."""
        return self.defend_detailed(classifier, x, nb_classes=nb_classes, return_images=True).images

    def fit(self, classifier: Classifier, x_members: torch.Tensor, x_nonmembers: torch.Tensor | None = None,
            **search) -> "Diffence":
        """Pipeline verb: calibrate when the scenario needs it (1 and 2); scenarios 3 and "mean" learn nothing."""
        if self.config.needs_calibration:
            self.calibrate(classifier, x_members, x_nonmembers if self.config.scenario == 1 else None, **search)
        return self

    def calibrate(self, classifier: Classifier, x_members: torch.Tensor, x_nonmembers: torch.Tensor | None = None,
                  **search) -> Calibration:
        """Learn the selection interval from inputs the defender knows to be members (and non-members)."""
        members = self.candidates(classifier, self._check_input(x_members, "x_members"))
        nonmembers = None
        if x_nonmembers is not None:
            nonmembers = self.candidates(classifier, self._check_input(x_nonmembers, "x_nonmembers"),
                                         nb_classes=members.nb_classes)
        return self.calibrate_from_candidates(members, nonmembers, **search)

    def calibrate_from_candidates(self, members: Candidates, nonmembers: Candidates | None = None,
                                  **search) -> Calibration:
        """Calibrate from precomputed candidates; ``search`` goes to the Scenario 1 grid search."""
        scenario = self.config.scenario
        if scenario not in (1, 2):
            raise ValueError(f"scenario {scenario!r} needs no calibration")
        def scored(c: Candidates):
            return (phi(c.candidate_log_probs), label_matches(c.original_log_probs, c.candidate_log_probs),
                    phi(c.original_log_probs))
        js = js_undefended = None
        if scenario == 1:
            if nonmembers is None:
                raise ValueError("scenario 1 needs known non-members as well as known members")
            if nonmembers.nb_classes != members.nb_classes:
                raise ValueError(f"members have {members.nb_classes} classes, non-members {nonmembers.nb_classes}")
            lo, hi, js, js_undefended = interval_scenario1(scored(members), scored(nonmembers), **search)
        else:
            lo, hi = interval_scenario2(*scored(members)[:2])
        cfg = self.config
        self.calibration = Calibration(scenario=scenario, lo=lo, hi=hi, n=cfg.n, t=cfg.t, k=cfg.k,
                                       nb_classes=members.nb_classes, reconstructor=self.fingerprint(),
                                       js_divergence=js, js_divergence_undefended=js_undefended)
        return self.calibration

    def tune(self, classifier: Classifier, x_members: torch.Tensor, x_nonmembers: torch.Tensor,
             t_choices: tuple[int, ...], n_choices: tuple[int, ...] = (), **search) -> "Diffence":
        """Scenario 1: choose the noise step ``t`` (and the number of reconstructions ``n``) for this data.

        Calibrates at every candidate ``t`` and returns the calibrated defense whose released phi histograms
        separate the known members from the known non-members least, the objective the interval search
        already minimises. Every ``t`` must be a multiple of ``k``. ``n_choices`` (each <= ``n``, the cost
        budget) are scored on the first ``n`` of the ``n`` reconstructions. The search is kept in
        ``calibration.extra["t_search"]``. Warns when no candidate releases histograms that are any less
        separable than the undefended model's: on such data the defense's defaults give no protection.
        """
        if self.config.scenario != 1:
            raise ValueError("tune needs scenario 1: it compares known members with known non-members")
        if not t_choices:
            raise ValueError("t_choices must name at least one noise step")
        for t in t_choices:
            self.with_config(t=t)  # validates t against k and the reconstructor
        members = self._check_input(x_members, "x_members")
        nonmembers = self._check_input(x_nonmembers, "x_nonmembers")
        found = {}
        for t in t_choices:
            defense = self.with_config(t=t)
            cm = defense.candidates(classifier, members)
            found[t] = (cm, defense.candidates(classifier, nonmembers, nb_classes=cm.nb_classes))
        return self.tune_from_candidates(found, n_choices, **search)

    def tune_from_candidates(self, candidates: dict[int, tuple[Candidates, Candidates]],
                             n_choices: tuple[int, ...] = (), **search) -> "Diffence":
        """``tune`` from precomputed (member, non-member) candidates per noise step, at this defense's ``n``."""
        if self.config.scenario != 1:
            raise ValueError("tune needs scenario 1: it compares known members with known non-members")
        if not candidates:
            raise ValueError("candidates must hold at least one noise step")
        n_choices = tuple(n_choices) or (self.config.n,)
        too_many = [n for n in n_choices if not 1 <= n <= self.config.n]
        if too_many:
            raise ValueError(f"n_choices must lie in [1, n={self.config.n}] (n is the cost budget), got {too_many}")
        table, best = [], None
        for t, (cm, cn) in sorted(candidates.items()):
            for n in sorted(set(n_choices)):
                defense = self.with_config(t=t, n=n)
                cal = defense.calibrate_from_candidates(cm.first(n), cn.first(n), **search)
                table.append({"t": t, "n": n, "js_divergence": cal.js_divergence})
                if best is None or cal.js_divergence < best.calibration.js_divergence:
                    best = defense
        undefended = best.calibration.js_divergence_undefended
        best.calibration.extra["t_search"] = table
        if undefended is not None and best.calibration.js_divergence >= undefended:
            warnings.warn(f"no candidate noise step separates known members from non-members less than the "
                          f"undefended model does (best JS divergence {best.calibration.js_divergence:.4f} at "
                          f"t={best.config.t}, n={best.config.n}; undefended {undefended:.4f}): Diffence will "
                          f"not protect this model on this data. Try larger t, or a better-trained DDPM",
                          RuntimeWarning, stacklevel=2)
        return best

    def save_pretrained(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the diffusion model, ``diffence.json`` (the settings, *with the secret seed*) and the calibration.

        The folder holds the secret that keeps near-duplicate queries from being averaged: keep it as
        private as the model's weights. ``diffence.json`` is written readable by its owner only.
        """
        path = Path(path)
        if (path / CONFIG_FILE).exists() and not overwrite:
            raise FileExistsError(f"{str(path / CONFIG_FILE)!r} exists; pass overwrite=True to replace it")
        self.reconstructor.save_pretrained(path)
        payload = {"format": CONFIG_FORMAT, "config": self.config.to_dict()}
        target = path / CONFIG_FILE
        target.write_text(json.dumps(payload, indent=2))
        target.chmod(0o600)
        if self.calibration is not None:
            self.calibration.to_json(path / "calibration.json")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: torch.device | str = "cpu", **changes) -> "Diffence":
        """Load what ``save_pretrained`` wrote (settings, secret seed, calibration); ``changes`` override
        settings (a changed n, t, k or scenario makes a saved calibration unusable: it is then not loaded)."""
        path = Path(path)
        file = path / CONFIG_FILE
        payload = read_json_object(file, fmt=CONFIG_FORMAT,
                                   missing="not a folder written by Diffence.save_pretrained")
        if not isinstance(payload.get("config"), dict):
            raise ValueError(f"{str(file)!r} is not a {CONFIG_FORMAT} file")
        known = {f.name for f in dataclasses.fields(DiffenceConfig)}
        unknown = sorted(set(payload["config"]) - known) + sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown Diffence setting(s) {unknown} in {str(file)!r} or the call; valid: "
                             f"{sorted(known)}")
        config = DiffenceConfig(**{**payload["config"], **changes})
        defense = cls.from_config(Reconstructor.from_pretrained(path, device), config)
        if (path / "calibration.json").is_file() and not (set(changes) & {"n", "t", "k", "scenario"}):
            defense.load_calibration(path / "calibration.json")
        return defense

    def save_calibration(self, path: str | Path) -> None:
        if self.calibration is None:
            raise ValueError("nothing to save: call calibrate() first")
        self.calibration.to_json(path)

    def load_calibration(self, path: str | Path) -> Calibration:
        """Load a calibration file and check it was made for this configuration and diffusion model."""
        calibration = Calibration.from_json(path)
        cfg = self.config
        calibration.check_compatible(n=cfg.n, t=cfg.t, k=cfg.k, nb_classes=calibration.nb_classes,
                                     reconstructor=self.fingerprint(), scenario=cfg.scenario)
        self.calibration = calibration
        return calibration
