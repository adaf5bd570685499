"""A defended model as a pipeline: classifier + ordered pre-inference + ordered post-inference defenses.

Data flows one way: input -> plugin pre-inference hooks -> pre-inference defenses (the first listed sees
the raw input) -> classifier -> post-inference defenses in order -> plugin post-inference hooks -> output.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Sequence

import pluggy
import torch

from diffence_plugin.classify import Classifier, probabilities
from diffence_plugin.registry.manager import fold_hook, get_defenses, get_plugin_manager
from diffence_plugin.validation import as_image_batch


class DefensePipeline:
    """Stacked defenses around one classifier, callable like a model: ``pipeline(x) -> probabilities``.

    Args:
        classifier: tensor -> logits or probabilities; optional when every call passes one to ``run``.
        pre: pre-inference defenses (objects with ``defend(classifier, x)``), applied in order.
        post: post-inference defenses (callables ``(x, probs) -> probs``), applied in order.
        plugin_manager: runs the plugins' ``diffence_pre_inference``/``diffence_post_inference`` hooks;
            None runs none.
    """

    def __init__(self, classifier: Classifier | None = None, pre: Sequence[Any] = (), post: Sequence[Any] = (),
                 *, plugin_manager: pluggy.PluginManager | None = None) -> None:
        for d in pre:
            if not callable(getattr(d, "defend", None)):
                raise TypeError(f"pre-inference defense {d!r} has no defend(classifier, x) method")
        for d in post:
            if not callable(d):
                raise TypeError(f"post-inference defense {d!r} is not callable as defense(x, probs)")
        self.classifier = classifier
        self.pre = list(pre)
        self.post = list(post)
        self.plugin_manager = plugin_manager
        if classifier is not None:
            self._bind(classifier)

    @classmethod
    def from_names(cls, *names: str, classifier: Classifier | None = None, options: dict[str, dict] | None = None,
                   plugin_manager: pluggy.PluginManager | None = None) -> "DefensePipeline":
        """Build from registered defense names, e.g. ``from_names("diffence", "memguard", options=...)``.

        ``options[name]`` are the keyword arguments of that defense's factory. Stages come from the
        registry; within a stage the order of ``names`` is kept.
        """
        pm = plugin_manager or get_plugin_manager()
        registry = get_defenses(pm)
        options = options or {}
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"options given for defenses not in the pipeline: {unknown}")
        pre, post = [], []
        for name in names:
            if name not in registry:
                raise ValueError(f"unknown defense {name!r}; registered: {sorted(registry)}")
            entry = registry[name]
            if entry.stage == "training":
                raise ValueError(f"{name!r} is a training-time defense: train the target with it, then wrap the model")
            (pre if entry.stage == "pre_inference" else post).append(entry.factory(**options.get(name, {})))
        return cls(classifier, pre, post, plugin_manager=pm)

    def _bind(self, classifier: Classifier) -> None:
        for d in self.post:
            if callable(getattr(d, "bind", None)):
                d.bind(classifier)

    def _model(self, classifier: Classifier, pre: Sequence[Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        """The classifier seen through the pre-inference defenses ``pre`` (default all; the first is outermost)."""
        model = classifier
        for defense in reversed(self.pre if pre is None else pre):
            model = partial(defense.defend, model)
        return model

    def _upstream(self, classifier: Classifier, stop: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """Probabilities after the pre-inference stage and the first ``stop`` post-inference defenses."""
        def run(x: torch.Tensor) -> torch.Tensor:
            probs = probabilities(self._model(classifier), x)
            for defense in self.post[:stop]:
                probs = torch.as_tensor(defense(x, probs), dtype=torch.float64)
            return probs
        return run

    @torch.no_grad()
    def release(self, classifier: Classifier, x: torch.Tensor) -> torch.Tensor:
        """Defended (B, K) probabilities of ``classifier`` on images ``x`` in [0, 1], in float64, rows summing
        to 1 (what an evaluation should score: no float32 rounding between the defense and the attack)."""
        x = as_image_batch(x)
        hook = self.plugin_manager.hook if self.plugin_manager is not None else None
        if hook is not None:
            x = fold_hook(hook.diffence_pre_inference, "x", x)
        probs = self._upstream(classifier, len(self.post))(x)
        if hook is not None:
            probs = fold_hook(hook.diffence_post_inference, "probs", probs, x=x)
        probs = torch.as_tensor(probs).double()
        return probs / probs.sum(dim=-1, keepdim=True)

    def run(self, classifier: Classifier, x: torch.Tensor) -> torch.Tensor:
        """Defended (B, K) float32 probabilities of ``classifier`` on images ``x`` in [0, 1]."""
        return self.release(classifier, x).float()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.classifier is None:
            raise ValueError("this pipeline has no classifier: pass one to DefensePipeline(...) or use run()")
        return self.run(self.classifier, x)

    def fit(self, x_members: torch.Tensor, x_nonmembers: torch.Tensor | None = None,
            classifier: Classifier | None = None) -> "DefensePipeline":
        """Fit every defense that learns from known members/non-members, in pipeline order.

        Each defense sees the output of the stages before it (MemGuard after Diffence learns on
        Diffence's released vectors, as it would face them in deployment).
        """
        classifier = classifier or self.classifier
        if classifier is None:
            raise ValueError("fit needs a classifier")
        self._bind(classifier)
        for i, defense in enumerate(self.pre):
            if callable(getattr(defense, "fit", None)):
                defense.fit(self._model(classifier, self.pre[i + 1:]), x_members, x_nonmembers)
        for i, defense in enumerate(self.post):
            if callable(getattr(defense, "fit", None)):
                defense.fit(self._upstream(classifier, i), x_members, x_nonmembers)
        return self
