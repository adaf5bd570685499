"""Extension points of diffence-plugin (pluggy project name ``diffence_plugin``).

Two kinds of hooks:

- ``diffence_register_*(register)``: a plugin calls ``register(name, factory)`` once per thing it offers:
  a defense at one of the three stages of the paper's Figure 2 (training, pre-inference, post-inference),
  an attack, an executor, a dataset or a zoo model. The host owns each registry and refuses duplicates.
- ``diffence_pre_inference`` / ``diffence_post_inference``: ordered call hooks applied by every
  ``DefensePipeline`` around its own stages. Each implementation returns a new value (or None to pass);
  they run in pluggy's order (``tryfirst``/``trylast``, then last registered first), each seeing the previous
  one's output.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("diffence_plugin")
hookimpl = pluggy.HookimplMarker("diffence_plugin")


@hookspec
def diffence_register_training_defenses(register):
    """Call ``register(name, factory)`` for each training-time defense (trains or wraps a target model)."""


@hookspec
def diffence_register_pre_inference(register):
    """Call ``register(name, factory)`` for each pre-inference defense.

    The factory's object has ``defend(classifier, x) -> (B, K) probabilities`` and optionally
    ``fit(classifier, x_members, x_nonmembers)``.
    """


@hookspec
def diffence_register_post_inference(register):
    """Call ``register(name, factory)`` for each post-inference defense.

    The factory's object is called as ``defense(x, probs) -> probs`` and optionally has
    ``fit(upstream, x_members, x_nonmembers)``, where ``upstream(x)`` returns the probabilities of the
    pipeline before this stage, and ``bind(classifier)`` to receive the undefended classifier.
    """


@hookspec
def diffence_register_attacks(register):
    """Call ``register(name, factory)`` for each membership attack on released vectors.

    ``factory(**options)`` builds an object with ``score(released, labels) -> (S,) membership scores``
    (higher: member) for (S, K) released probability vectors and (S,) labels. The audit fits its threshold on
    the attacker's first half of known records, the attacker may choose it on the second half, and it is
    measured on the evaluation records like every other attack. A plan names it in ``[attacks].plugins``.
    """


@hookspec
def diffence_register_executors(register):
    """Call ``register(name, factory)`` for each executor of the audit's independent tasks.

    ``factory(address=None, threads=1, progress=True)`` builds an object with ``name``, ``threads`` and
    ``map(task, items, *, shared=None, desc="tasks", gpu=False) -> results in item order``
    (``audit.executor.Executor``). A plan names it in ``[run].executor``.
    """


@hookspec
def diffence_register_reporters(register):
    """Call ``register(name, writer)`` for each report an audit writes beside its ``results.json``.

    ``writer(results: dict, out: Path) -> list[Path]`` reads the results alone (never the run's live objects)
    and returns the files it wrote; the built-in ``html`` writes ``report.html``, ``roc.png`` and
    ``phi_histograms.png``.
    """


@hookspec
def diffence_register_datasets(register):
    """Call ``register(name, loader)`` for each dataset a plan may name in ``[data].dataset``.

    ``loader(folder)`` returns a ``data.ImageDataset`` (float32 (S, C, H, W) images in [0, 1], int64 labels,
    and a test split or None) read from the plan's ``[data].folder``. A loader whose ``folder`` parameter
    has a default (``folder=None``) needs no folder; otherwise the plan must give one. Raise
    ``FileNotFoundError`` or ``ValueError`` naming what is missing or wrong: the audit reports it as the
    plan's error.
    """


@hookspec
def diffence_register_models(register):
    """Call ``register(name, factory)`` for each zoo architecture a plan may name in ``[target].model``.

    ``factory(nb_classes, channels)`` returns a fresh, untrained ``torch.nn.Module`` mapping (B, C, H, W)
    images to (B, nb_classes) logits; the target's recipe and the attacker's reference models build it by
    name, so it must start from torch's seeded initialisation and nothing else.
    """


@hookspec
def diffence_pre_inference(x):
    """Return a replacement for the (B, C, H, W) input batch, or None to leave it unchanged."""


@hookspec
def diffence_post_inference(x, probs):
    """Return replacement (B, K) probabilities for input batch ``x``, or None to leave them unchanged."""
