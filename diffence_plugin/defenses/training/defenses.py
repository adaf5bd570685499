"""Training-time defenses, each written from its paper's description (no code copied).

Every class has ``train(model, x, y, *, nb_classes, reference=None, **loop)`` returning the trained plain model
and extra metrics; ``loop`` holds ``run_epochs``' options (epochs, batch_size, lr, weight_decay, generator,
progress).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from diffence_plugin.data.models import reinitialised
from diffence_plugin.defenses.training.common import (
    check_schedule,
    cross_entropy_loss,
    run_epochs,
)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=-1)).sum(-1).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


class Standard:
    """No defense: cross-entropy with Adam (the paper's undefended setting); ``schedule="cosine"`` anneals the
    learning rate so that a short run ends fully fitted."""

    def __init__(self, schedule: str = "constant") -> None:
        self.schedule = check_schedule(schedule)

    def train(self, model, x, y, *, nb_classes, reference=None, **loop):
        return run_epochs(model, x, y, cross_entropy_loss, desc="target", schedule=self.schedule, **loop), {}


class RelaxLoss:
    """RelaxLoss (Chen et al., ICLR 2022): keep the training loss near a target level ``alpha``.

    Above alpha: gradient descent. Below: on even epochs gradient ascent, on odd epochs "posterior
    flattening": correctly classified samples are fitted to a soft label that keeps the predicted
    true-class probability and spreads the rest uniformly over the other classes.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def _loss(self, model, xb, yb, epoch):
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        if loss.item() >= self.alpha:
            return loss
        if epoch % 2 == 0:
            return -loss
        probs = F.softmax(logits, dim=-1).detach()
        k = probs.shape[-1]
        p_true = probs.gather(1, yb[:, None])
        flat = ((1 - p_true) / (k - 1)).expand(-1, k).clone().scatter(1, yb[:, None], p_true)
        correct = (probs.argmax(-1) == yb)[:, None]
        target = torch.where(correct, flat, F.one_hot(yb, k).float())
        return soft_cross_entropy(logits, target)

    def train(self, model, x, y, *, nb_classes, reference=None, **loop):
        return run_epochs(model, x, y, self._loss, desc="relaxloss", **loop), {}


def hamp_soft_label_confidence(nb_classes: int, gamma: float) -> float:
    """True-class probability p* whose soft label (others (1 - p*) / (K - 1)) has entropy gamma * log K."""
    k = nb_classes

    def h(p: float) -> float:
        q = (1 - p) / (k - 1)
        return -(p * math.log(p) + (k - 1) * q * math.log(q)) if q > 0 else 0.0

    lo, hi = 1.0 / k, 1.0 - 1e-12
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if h(mid) > gamma * math.log(k) else (lo, mid)
    return (lo + hi) / 2


class HAMP:
    """HAMP's training part (Chen & Pattabiraman, NDSS 2024): high-entropy soft labels plus an entropy
    regulariser, so members are not fitted with over-confident outputs.

    Args:
        gamma: entropy of the soft labels as a fraction of the maximum, log K.
        alpha: weight of the entropy regulariser (subtracted from the loss).
    """

    def __init__(self, gamma: float = 0.7, alpha: float = 0.01) -> None:
        if not 0 < gamma < 1 or alpha < 0:
            raise ValueError(f"gamma must lie in (0, 1) and alpha >= 0, got {gamma}, {alpha}")
        self.gamma, self.alpha = gamma, alpha

    def train(self, model, x, y, *, nb_classes, reference=None, **loop):
        k = nb_classes
        p = hamp_soft_label_confidence(k, self.gamma)
        soft = torch.full((k, k), (1 - p) / (k - 1)).fill_diagonal_(p)

        def loss(m, xb, yb, epoch):
            logits = m(xb)
            return soft_cross_entropy(logits, soft[yb]) - self.alpha * entropy(logits).mean()

        return run_epochs(model, x, y, loss, desc="hamp", **loop), {"soft_label_confidence": p}


class SELENA:
    """SELENA (Tang et al., USENIX Security 2022): Split-AI then self-distillation.

    Split-AI trains ``k`` sub-models, each from its own initialisation; every training sample is left out of ``l`` of them (chosen at random),
    and its soft label is the average prediction of those ``l`` sub-models that never saw it. The released
    model is a fresh copy of the architecture distilled on these soft labels.
    """

    def __init__(self, k: int = 25, l: int = 10) -> None:  # noqa: E741 (the paper's name)
        if not 1 <= l < k:
            raise ValueError(f"need 1 <= l < k, got k={k}, l={l}")
        self.k, self.l = k, l

    def train(self, model, x, y, *, nb_classes, reference=None, **loop):
        gen = loop["generator"]
        excluded = torch.stack([torch.randperm(self.k, generator=gen)[: self.l] for _ in range(len(x))])
        soft = torch.zeros(len(x), nb_classes)
        seeds = torch.randint(0, 2**62, (self.k,), generator=gen).tolist()
        for j in range(self.k):
            left_out = (excluded == j).any(dim=1)
            sub = run_epochs(reinitialised(model, seeds[j]), x[~left_out], y[~left_out], cross_entropy_loss,
                             desc=f"selena {j + 1}/{self.k}", **loop)
            with torch.no_grad():
                soft[left_out] += F.softmax(sub(x[left_out]), dim=-1) / self.l
        index = torch.arange(len(x))
        final = run_epochs(model, x, index, lambda m, xb, ib, e: soft_cross_entropy(m(xb), soft[ib]),
                           desc="selena distill", **loop)
        return final, {"soft_label_accuracy": float((soft.argmax(-1) == y).float().mean())}


class AdvReg:
    """Adversarial regularisation (Nasr et al., CCS 2018): a min-max game with an inference model h.

    Each epoch, h (on the classifier's probabilities and the one-hot label) is trained for ``attack_steps``
    steps per batch to tell members from the defender's ``reference`` non-members; then the classifier
    minimises cross-entropy + ``lam`` * mean(log h(member)), i.e. lowers h's confidence on members.
    """

    def __init__(self, lam: float = 1.0, attack_steps: int = 1, attack_lr: float = 1e-3) -> None:
        if lam < 0 or attack_steps < 1:
            raise ValueError(f"lam must be >= 0 and attack_steps >= 1, got {lam}, {attack_steps}")
        self.lam, self.attack_steps, self.attack_lr = lam, attack_steps, attack_lr

    def train(self, model, x, y, *, nb_classes, reference=None, **loop):
        if reference is None:
            raise ValueError("AdvReg needs reference non-member data: pass x_reference= and y_reference=")
        xr, yr = reference
        k = nb_classes
        gen = loop["generator"]
        attack = nn.Sequential(nn.Linear(2 * k, 64), nn.ReLU(), nn.Linear(64, 1))
        attack_opt = torch.optim.Adam(attack.parameters(), lr=self.attack_lr)

        def features(m, xb, yb):
            return torch.cat([F.softmax(m(xb), -1), F.one_hot(yb, k).float()], dim=-1)

        def loss(m, xb, yb, epoch):
            for _ in range(self.attack_steps):
                ref = torch.randint(0, len(xr), (len(xb),), generator=gen)
                with torch.no_grad():
                    fm, fr = features(m, xb, yb), features(m, xr[ref], yr[ref])
                logits = attack(torch.cat([fm, fr])).squeeze(-1)
                target = torch.cat([torch.ones(len(fm)), torch.zeros(len(fr))])
                attack_opt.zero_grad()
                F.binary_cross_entropy_with_logits(logits, target).backward()
                attack_opt.step()
            out = m(xb)
            member_score = F.logsigmoid(attack(torch.cat([F.softmax(out, -1), F.one_hot(yb, k).float()], -1)))
            return F.cross_entropy(out, yb) + self.lam * member_score.mean()

        return run_epochs(model, x, y, loss, desc="advreg", **loop), {}
