"""Membership attacks on the diffusion model itself: how much Diffence's own component leaks.

A DDPM denoises the images it was trained on better than others. Four attacks measure that, each querying
the reconstructor as it is deployed (a ``DualReconstructor`` answers with the model its pipeline would use):

- ``noise_errors``: the denoising loss ||eps_theta(x_t, t) - eps||^2 at chosen timesteps (a threshold at one
  timestep is the loss attack of Matsumoto et al. 2023; the attacker picks the timestep on its own records);
- ``secmi_errors``: SecMI's t-error (Duan et al., ICML 2023): deterministic DDIM inversion of x to step t,
  one denoising step and its inversion back; members come back closer;
- a loss trajectory: the losses at several timesteps, combined by a logistic regression fitted on the
  attacker's records;
- ``reconstruction_errors``: the distance of Diffence's own reconstructions from the input (black box).

``diffusion_audit`` runs them with the classifier attacks' protocol: fitted on half of the attacker's
known records, chosen on the other half, scored on disjoint evaluation records with bootstrap intervals.
"Fitted" includes each score's direction: the papers' rule (members have the lower error) does not hold for
every model (SecMI's t-error is *higher* for members of the tiny digits DDPM), and an attacker who sees the
opposite on its own records flips the score.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from diffence_plugin.attacks.adaptive import combine
from diffence_plugin.attacks.metrics import (
    AttackResult,
    choose_best,
    fit_threshold,
    membership_metrics,
)
from diffence_plugin.reconstruct import Reconstructor
from diffence_plugin.validation import as_image_batch, check_image_geometry


def _noise(shape: tuple[int, ...], seed: int, salt: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(int(np.random.SeedSequence(
        [seed, salt]).generate_state(1)[0])))


def _route(reconstructor: Reconstructor, draws: torch.Tensor) -> torch.Tensor | None:
    return reconstructor.route(draws.reshape(draws.shape[0], -1))


@torch.no_grad()
def noise_errors(reconstructor: Reconstructor, x: torch.Tensor, timesteps: Sequence[int], *, repeats: int = 1,
                 seed: int = 0, max_batch: int = 512) -> np.ndarray:
    """(S, len(timesteps)) mean squared error of the predicted noise at each timestep, averaged over
    ``repeats`` seeded noise draws (the same draws for every record position, whatever the records)."""
    x = _images(reconstructor, x)
    top = reconstructor.num_train_timesteps
    if not timesteps or any(not 0 <= int(t) < top for t in timesteps) or repeats < 1:
        raise ValueError(f"timesteps must be a non-empty list in [0, {top - 1}] and repeats >= 1; got "
                         f"{list(timesteps)}, {repeats}")
    x0 = x * 2 - 1
    out = np.zeros((len(x), len(timesteps)))
    for j, t in enumerate(timesteps):
        for r in range(repeats):
            eps = _noise(tuple(x0.shape), seed, 1000 * j + r)
            for sl in _chunks(len(x), max_batch):
                xt = reconstructor.add_noise(x0[sl], eps[sl].to(x0.device), int(t))
                pred = reconstructor.predict_noise(xt, int(t), 0, _route(reconstructor, eps[sl]))
                out[sl, j] += ((pred - eps[sl].to(pred.device)) ** 2).flatten(1).mean(1).cpu().numpy() / repeats
    return out


@torch.no_grad()
def secmi_errors(reconstructor: Reconstructor, x: torch.Tensor, t: int, k: int, *, seed: int = 0,
                 max_batch: int = 512) -> np.ndarray:
    """(S,) SecMI t-error: DDIM-invert x deterministically from 0 to ``t`` in strides of ``k``, denoise one
    step to t - k and invert it back; ||x_t' - x_t||^2 per record (lower for members).

    A dual model in alternate mode answers the prediction at timestep s with the model its pipeline uses at s
    when it starts at ``t`` (position (t - s) / k); in keyed mode each record's model is drawn from ``seed``,
    as a deployed query's noise would choose it.
    """
    x = _images(reconstructor, x)
    if k < 1 or t < k or t % k or t >= reconstructor.num_train_timesteps:
        raise ValueError(f"t must be a positive multiple of k below {reconstructor.num_train_timesteps}; "
                         f"got t={t}, k={k}")
    abar = reconstructor.scheduler.alphas_cumprod.double()
    route = _route(reconstructor, _noise((len(x), 16), seed, 7))
    out = np.zeros(len(x))
    for sl in _chunks(len(x), max_batch):
        part = None if route is None else route[sl]

        def step(sample: torch.Tensor, s: int, s_next: int) -> torch.Tensor:
            eps = reconstructor.predict_noise(sample, s, (t - s) // k, part).double()
            x0 = (sample.double() - (1 - abar[s]).sqrt() * eps) / abar[s].sqrt()
            return (abar[s_next].sqrt() * x0 + (1 - abar[s_next]).sqrt() * eps).float()

        sample = x[sl] * 2 - 1
        for s in range(0, t, k):
            sample = step(sample, s, s + k)
        back = step(step(sample, t, t - k), t - k, t)
        out[sl] = ((back - sample) ** 2).flatten(1).mean(1).cpu().numpy()
    return out


@torch.no_grad()
def reconstruction_errors(reconstructor: Reconstructor, x: torch.Tensor, t: int, k: int, *, n: int = 1,
                          seed: int = 0, max_batch: int = 512) -> np.ndarray:
    """(S,) mean squared distance of ``n`` reconstructions (noise to ``t``, DDIM back in strides of ``k``, as
    Diffence makes them) from the input: what a black-box attacker of the reconstructor sees."""
    x = _images(reconstructor, x)
    noise = _noise((len(x), n, *x.shape[1:]), seed, 11)
    images = reconstructor.reconstruct(x, n, t, k, noise=noise, max_batch=max_batch)
    return ((images - x[:, None]) ** 2).flatten(2).mean(2).mean(1).cpu().numpy()


def diffusion_audit(reconstructor: Reconstructor, attacker: tuple[torch.Tensor, torch.Tensor],
                    evaluation: tuple[torch.Tensor, torch.Tensor], *, timesteps: Sequence[int] = (10, 20, 40, 60, 100),
                    t: int = 40, k: int = 20, repeats: int = 2, n: int = 4, seed: int = 0,
                    bootstrap: int = 1000) -> dict[str, AttackResult]:
    """Every attack above against one reconstructor, with the classifier audit's protocol.

    Args:
        attacker: the attacker's known (members, non-members) images; each half-split into fit and select.
        evaluation: held-out (members, non-members) images, scored once.
        timesteps: the loss attack's and the trajectory's timesteps; ``t``, ``k``: SecMI's and the
            reconstructions' (Diffence's) noise step and stride; ``n``: reconstructions per record.
    Returns:
        One ``AttackResult`` per attack ("loss@T" per timestep, "loss (best t)", "loss_trajectory", "secmi",
        "reconstruction") plus "best": the attack with the highest AUC on the attacker's select records. Each
        single score is negated when it ranks the attacker's fit members below its fit non-members.
    """
    (am, an), (em, en) = attacker, evaluation
    for name, part in (("attacker members", am), ("attacker non-members", an)):
        if len(part) < 4:
            raise ValueError(f"{name}: at least 4 records are needed to fit and select, got {len(part)}")
    groups = {"fit_m": am[::2], "fit_n": an[::2], "sel_m": am[1::2], "sel_n": an[1::2], "ev_m": em, "ev_n": en}
    features = {g: {} for g in groups}
    for g, images in groups.items():
        losses = noise_errors(reconstructor, images, timesteps, repeats=repeats, seed=seed)
        for j, step in enumerate(timesteps):
            features[g][f"loss@{step}"] = -losses[:, j]
        features[g]["loss_trajectory"] = -losses
        features[g]["secmi"] = -secmi_errors(reconstructor, images, t, k, seed=seed)
        features[g]["reconstruction"] = -reconstruction_errors(reconstructor, images, t, k, n=n, seed=seed)

    results: dict[str, AttackResult] = {}
    for name in features["ev_m"]:
        f = {g: features[g][name] for g in groups}
        if name == "loss_trajectory":
            model = combine(f["fit_m"], f["fit_n"])
            f = {g: model(v) for g, v in f.items()}
        elif roc_auc_score(np.r_[np.ones(len(f["fit_m"])), np.zeros(len(f["fit_n"]))],
                           np.r_[f["fit_m"], f["fit_n"]]) < 0.5:
            f = {g: -v for g, v in f.items()}  # the attacker's own records say members score lower
        threshold = fit_threshold(f["fit_m"], f["fit_n"])
        selection = membership_metrics(name, f["sel_m"], f["sel_n"], bootstrap=0).auc
        results[name] = membership_metrics(name, f["ev_m"], f["ev_n"], threshold, selection_auc=selection,
                                           bootstrap=bootstrap, seed=seed)
    losses = [results[f"loss@{step}"] for step in timesteps]
    best_loss = choose_best(losses)
    results["loss (best t)"] = best_loss
    results["best"] = choose_best([best_loss, results["loss_trajectory"], results["secmi"], results["reconstruction"]])
    return results


def _images(reconstructor: Reconstructor, x: torch.Tensor) -> torch.Tensor:
    x = as_image_batch(x, "images")
    check_image_geometry(x, reconstructor.channels, reconstructor.image_size, "images")
    return x.to(reconstructor.device, torch.float32)


def _chunks(total: int, size: int) -> list[slice]:
    return [slice(i, i + size) for i in range(0, total, size)]
