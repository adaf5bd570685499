"""MemGuard (Jia et al., CCS 2019): adversarial noise on the confidence vector against the defender's own
membership classifier, written from the paper's description.

Phase I searches, for every query at once, noise r on the logits z that keeps the predicted label and
drives the defender's attack model g to 0.5 (its logit h to 0), minimising

    c1 * |h(softmax(z + r))| + c2 * relu(max_{j != l} (z + r)_j - (z + r)_l) + c3 * ||softmax(z + r) - softmax(z)||_1

with normalised gradient steps; after each successful search c3 is multiplied by 10 and the search repeats
(smaller distortion), keeping the last success, until c3 exceeds ``max_c3`` (1e5, as in the authors' code).
Phase II releases the noisy vector with probability min(epsilon / ||noise||_1, 1), else the original
vector; the coin is derived from the query, so the same query gets the same answer. Released vectors are
normalised in float64. The label never changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from diffence_plugin.randomness import input_generators


def sorted_features(probs: torch.Tensor) -> torch.Tensor:
    """Probability vectors sorted in descending order: the attack features (label-independent)."""
    return probs.sort(dim=-1, descending=True).values


@dataclass(frozen=True)
class MemGuardOutput:
    probs: torch.Tensor  # (B, K) released
    noise_l1: torch.Tensor  # (B,) L1 distance of the found noisy vector (0 where none was found)
    found: torch.Tensor  # (B,) whether phase I found label-keeping noise that reaches g = 0.5
    released_noisy: torch.Tensor  # (B,) whether phase II released the noisy vector


class MemGuard:
    """Post-inference defense; call as ``memguard(x, probs) -> probs`` after ``fit``.

    Args:
        epsilon: L1 noise budget of phase II (the paper's epsilon).
        c1, c2, c3: loss weights (c3 is the initial value, multiplied by 10 after each success).
        step: size of each normalised gradient step on the logits.
        max_iter: gradient steps per search.
        max_c3: searches repeat with c3 x 10 while c3 <= max_c3 (the authors' code: 1e5, so 7 searches from 0.1).
        rounds: an optional cap on the number of searches (None: as many as ``max_c3`` allows).
        hidden: widths of the defender's attack model g.
        epochs, lr: training of g (full-batch Adam, binary cross-entropy).
        seed: seeds g's initialisation; with each query's bytes, its phase II coin.
    """

    def __init__(self, *, epsilon: float = 1.0, c1: float = 1.0, c2: float = 10.0, c3: float = 0.1,
                 step: float = 0.1, max_iter: int = 300, max_c3: float = 1e5, rounds: int | None = None,
                 hidden: tuple[int, ...] = (256, 128, 64),
                 epochs: int = 400, lr: float = 1e-3, seed: int = 0, progress: bool = False) -> None:
        for name, value in dict(epsilon=epsilon, c1=c1, c2=c2, c3=c3, step=step).items():
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        for name, value in dict(max_iter=max_iter, epochs=epochs, rounds=1 if rounds is None else rounds).items():
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if max_c3 < c3:
            raise ValueError(f"max_c3 must be >= c3, got {max_c3} < {c3}")
        searches = 1 + int(math.floor(math.log10(max_c3 / c3) + 1e-9))
        rounds = searches if rounds is None else min(rounds, searches)
        self.epsilon, self.c1, self.c2, self.c3, self.step = epsilon, c1, c2, c3, step
        self.max_iter, self.rounds, self.hidden, self.epochs, self.lr = max_iter, rounds, hidden, epochs, lr
        self.max_c3, self.seed, self.progress = max_c3, seed, progress
        self.attack: nn.Module | None = None

    def attacker_copy(self, seed: int) -> "MemGuard":
        """An unfitted MemGuard with these public settings and the attacker's own ``seed``: what an attacker
        who knows the defense builds and fits on its own records (its reference models' answers)."""
        return MemGuard(epsilon=self.epsilon, c1=self.c1, c2=self.c2, c3=self.c3, step=self.step,
                        max_iter=self.max_iter, max_c3=self.max_c3, rounds=self.rounds, hidden=self.hidden,
                        epochs=self.epochs, lr=self.lr, seed=seed)

    def fit(self, upstream, x_members: torch.Tensor, x_nonmembers: torch.Tensor | None) -> "MemGuard":
        """Train g on the probabilities ``upstream`` gives the defender's known members and non-members."""
        if x_nonmembers is None:
            raise ValueError("MemGuard needs known non-members as well as known members")
        return self.fit_probabilities(upstream(x_members), upstream(x_nonmembers))

    def fit_probabilities(self, member_probs: torch.Tensor, nonmember_probs: torch.Tensor) -> "MemGuard":
        """Train g on released probability vectors of known members (label 1) and non-members (label 0)."""
        pm, pn = (torch.as_tensor(p, dtype=torch.float32) for p in (member_probs, nonmember_probs))
        if pm.dim() != 2 or pn.dim() != 2 or pm.shape[1] != pn.shape[1] or len(pm) == 0 or len(pn) == 0:
            raise ValueError(f"member and non-member probabilities must be non-empty (S, K) arrays with the same K, "
                             f"got {tuple(pm.shape)} and {tuple(pn.shape)}")
        torch.manual_seed(self.seed)
        widths = (pm.shape[1], *self.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.attack = nn.Sequential(*layers, nn.Linear(widths[-1], 1))
        features = sorted_features(torch.cat([pm, pn]))
        target = torch.cat([torch.ones(len(pm)), torch.zeros(len(pn))])
        weight = torch.where(target > 0, len(pn) / len(pm), 1.0)
        optimizer = torch.optim.Adam(self.attack.parameters(), lr=self.lr)
        for _ in tqdm(range(self.epochs), desc="memguard g", disable=None if self.progress else True, leave=False):
            optimizer.zero_grad()
            loss = nn.functional.binary_cross_entropy_with_logits(self.attack(features).squeeze(-1), target, weight)
            loss.backward()
            optimizer.step()
        self.attack.eval().requires_grad_(False)
        return self

    def _h(self, probs: torch.Tensor) -> torch.Tensor:
        return self.attack(sorted_features(probs)).squeeze(-1)

    def _search(self, z: torch.Tensor, label: torch.Tensor, s0: torch.Tensor, sign0: torch.Tensor,
                c3: torch.Tensor, searching: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One phase-I search: normalised gradient steps on the noise r of every searching row until its label
        is kept and g's logit has crossed 0, at most ``max_iter`` steps. Each step computes only the rows still
        moving (rows are independent), so a few slow rows do not cost a full batch per step."""
        r = torch.zeros_like(z)
        success = torch.zeros(len(z), dtype=torch.bool)
        for _ in range(self.max_iter):
            rows = (searching & ~success).nonzero().squeeze(-1)
            if not len(rows):
                break
            zr, lr_, c3r = z[rows], label[rows], c3[rows]
            with torch.enable_grad():  # the search needs gradients even inside a caller's no_grad
                rr = r[rows].requires_grad_(True)
                logits = zr + rr
                s = torch.softmax(logits, dim=-1)
                h = self._h(s)
                other = logits.scatter(-1, lr_, float("-inf")).max(dim=-1).values
                hinge = torch.relu(other - logits.gather(-1, lr_).squeeze(-1))
                loss = self.c1 * h.abs() + self.c2 * hinge + c3r * (s - s0[rows]).abs().sum(-1)
                (grad,) = torch.autograd.grad(loss.sum(), rr)
            with torch.no_grad():
                keeps = logits.argmax(-1, keepdim=True).eq(lr_).squeeze(-1)
                reached = keeps & (h * sign0[rows] <= 0)
                success[rows[reached]] = True
                norm = grad.norm(dim=-1, keepdim=True).clamp_min(1e-12)
                moving = ~reached
                r[rows[moving]] = (rr - self.step * grad / norm)[moving]
        return r, success

    def perturb(self, probs: torch.Tensor) -> MemGuardOutput:
        """Phases I and II on a batch of (B, K) probability vectors, all rows at once."""
        if self.attack is None:
            raise ValueError("MemGuard must be fitted before use: call fit() or fit_probabilities()")
        p = torch.as_tensor(probs, dtype=torch.float64)
        if p.dim() != 2 or p.shape[0] == 0 or not bool(torch.isfinite(p).all()):
            raise ValueError(f"probs must be a non-empty finite (B, K) array, got shape {tuple(p.shape)}")
        z = torch.log(p.clamp_min(1e-30)).float()
        label = z.argmax(dim=-1, keepdim=True)
        s0 = torch.softmax(z, dim=-1)
        with torch.no_grad():
            sign0 = torch.sign(self._h(s0))
        best = torch.zeros_like(z)
        found = torch.zeros(len(z), dtype=torch.bool)
        c3 = torch.full((len(z),), self.c3)
        searching = torch.ones(len(z), dtype=torch.bool)
        for _ in range(self.rounds):
            r, success = self._search(z, label, s0, sign0, c3, searching)
            best = torch.where(success.unsqueeze(-1), r, best)
            found |= success
            c3 = torch.where(success, c3 * 10, c3)
            searching &= success
            if not bool(searching.any()):
                break
        z64 = torch.log(p.clamp_min(1e-300))
        noisy = torch.softmax(z64 + best.double(), dim=-1)
        distance = (noisy - torch.softmax(z64, dim=-1)).abs().sum(-1)
        chance = torch.where(distance > 0, (self.epsilon / distance.clamp_min(1e-12)).clamp_max(1.0), 0.0)
        prefix = f"memguard/{self.seed}/{p.shape[1]}".encode()
        coin = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in input_generators(p, prefix)])
        release = found & (coin < chance)
        out = torch.where(release.unsqueeze(-1), noisy, p)
        out = out / out.sum(dim=-1, keepdim=True)
        return MemGuardOutput(probs=out, noise_l1=torch.where(found, distance, 0.0), found=found,
                              released_noisy=release)

    def __call__(self, x: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        return self.perturb(probs).probs
