"""DP-SGD through opacus (Abadi et al., CCS 2016), and loading opacus-trained weights into plain models."""

from __future__ import annotations

import copy
import warnings
from typing import Callable

import torch
from torch import nn
from tqdm.auto import tqdm


class DPSGD:
    """Train with ``PrivacyEngine.make_private_with_epsilon``; the spent epsilon goes into the metrics.

    Args:
        epsilon, delta: the privacy target; delta defaults to 1 / (2 * training set size) when None.
        max_grad_norm: per-sample gradient clipping bound.
        optimizer: "sgd" (momentum 0.9) or "adam".
    """

    def __init__(self, epsilon: float = 8.0, delta: float | None = None, max_grad_norm: float = 1.0,
                 optimizer: str = "sgd") -> None:
        if epsilon <= 0 or max_grad_norm <= 0:
            raise ValueError(f"epsilon and max_grad_norm must be > 0, got {epsilon}, {max_grad_norm}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.epsilon, self.delta, self.max_grad_norm, self.optimizer = epsilon, delta, max_grad_norm, optimizer

    opacus_compatible = True

    def train(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
              weight_decay: float, generator: torch.Generator, progress: bool, nb_classes: int,
              reference=None) -> tuple[nn.Module, dict]:
        from opacus import PrivacyEngine
        from opacus.validators import ModuleValidator

        errors = ModuleValidator.validate(model, strict=False)
        if errors:
            raise ValueError(f"model is not opacus-compatible ({errors[0]}); build it with opacus_compatible=True")
        template = copy.deepcopy(model)  # before opacus attaches its hooks to the module it wraps
        delta = self.delta if self.delta is not None else 1.0 / (2 * len(x))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=batch_size,
                                             generator=generator)
        opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
               if self.optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay))
        engine = PrivacyEngine()
        private, opt, loader = engine.make_private_with_epsilon(
            module=model, optimizer=opt, data_loader=loader, target_epsilon=self.epsilon, target_delta=delta,
            epochs=epochs, max_grad_norm=self.max_grad_norm)
        private.train()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ff]ull backward hook.*")
            for _ in tqdm(range(epochs), desc="dp-sgd", unit="epoch", disable=None if progress else True, leave=False):
                for xb, yb in loader:
                    if len(xb) == 0:
                        continue
                    opt.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(private(xb), yb).backward()
                    opt.step()
        plain = to_plain_model(private, lambda: copy.deepcopy(template))
        return plain, {"epsilon": float(engine.get_epsilon(delta)), "delta": float(delta),
                       "noise_multiplier": float(opt.noise_multiplier)}


def to_plain_model(source, factory: Callable[[], nn.Module]) -> nn.Module:
    """A plain model (no opacus hooks) with the weights of ``source``.

    ``source`` may be an opacus ``GradSampleModule``, its state dict (keys prefixed ``_module.``) or a plain
    state dict; ``factory()`` builds the plain architecture (opacus-fixed, e.g. GroupNorm, where needed).
    ART's ``predict``, ``compute_loss`` and ``loss_gradient`` all work on the result.
    """
    if isinstance(source, nn.Module):
        state = source.state_dict()
    elif isinstance(source, dict):
        state = source
    else:
        raise TypeError(f"expected a GradSampleModule, a module or a state dict, got {type(source).__name__}")
    state = {(k[len("_module."):] if k.startswith("_module.") else k): v for k, v in state.items()}
    plain = factory()
    if hasattr(plain, "_module"):
        raise TypeError("factory() must build a plain model, not a GradSampleModule")
    result = plain.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"weights do not fit the model: missing {result.missing_keys[:5]}, "
                         f"unexpected {result.unexpected_keys[:5]}")
    return plain.eval()
