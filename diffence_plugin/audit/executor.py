"""Where the audit's independent tasks run: training one reference model, reconstructing and classifying one
shard of inputs. ``LocalExecutor`` runs them in this process, one after another; the Ray backend
(``adapters/ray_executor.py``, the ``ray`` extra) runs the same tasks on a Ray cluster. Executors
are looked up by name in the plugin registry (``diffence_register_executors``), so this module never imports
the adapters.

Every task derives its randomness from the run's seed and its own index, never from scheduling order, and
runs with the same number of torch threads on every backend, so the results are bit-identical wherever
they run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from diffence_plugin.outputs import Candidates

if TYPE_CHECKING:
    from diffence_plugin.defense import Diffence

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``task(item, **shared)`` for every item and returns the results in item order."""

    name: str
    threads: int

    def map(self, task: Callable[..., R], items: Sequence[T], *, shared: dict[str, Any] | None = None,
            desc: str = "tasks", gpu: bool = False) -> list[R]: ...


def run_task(task: Callable[..., R], item: Any, shared: dict[str, Any], threads: int) -> R:
    """One task with ``threads`` torch threads (restored afterwards): the same arithmetic on every backend."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return task(item, **shared)
    finally:
        torch.set_num_threads(before)


class LocalExecutor:
    """In this process, one task after another (the default).

    Args:
        threads: torch threads per task; keep it equal to the Ray backend's to get bit-identical results.
    """

    name = "local"

    def __init__(self, threads: int = 1, progress: bool = True) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.progress = progress

    def map(self, task: Callable[..., R], items: Sequence[T], *, shared: dict[str, Any] | None = None,
            desc: str = "tasks", gpu: bool = False) -> list[R]:
        bar = tqdm(items, desc=desc, unit="task", disable=None if self.progress else True, leave=False)
        return [run_task(task, item, shared or {}, self.threads) for item in bar]


def get_executor(name: str = "local", *, address: str | None = None, threads: int = 1,
                 progress: bool = True) -> Executor:
    """An executor by its registered name (``diffence_register_executors``): "local", "ray" (connects to
    ``address``, else ``RAY_ADDRESS``, else starts a local Ray instance), or a plugin's."""
    from diffence_plugin.registry import get_executors

    registry = get_executors()
    if name not in registry:
        raise ValueError(f"unknown executor {name!r}; choose from {sorted(registry)}")
    if name == "ray":
        address = address or os.environ.get("RAY_ADDRESS")
    return registry[name](address=address, threads=threads, progress=progress)


def shards(total: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of consecutive shards of at most ``size`` inputs."""
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def candidates_in_shards(executor: Executor, defense: Diffence, classifier: torch.nn.Module, x: np.ndarray,
                         shard_size: int) -> Candidates:
    """``defense.candidates(classifier, x)`` as one task per shard of ``shard_size`` inputs.

    Needs the deterministic mode (each input's draws come from its key and the secret seed, not from the
    order in which shards run); in the other mode only the local executor may run it, as one task.
    """
    if not defense.config.deterministic:
        if executor.name != "local":
            raise ValueError("reconstructing in shards on several workers needs Diffence(deterministic=True): "
                             "otherwise each input's draws depend on which shards ran before it")
        return defense.candidates(classifier, torch.from_numpy(x))
    parts = executor.map(_candidates_task, shards(len(x), shard_size), shared=dict(defense=defense,
                         classifier=classifier, x=x), desc="reconstruction shards")
    return Candidates.cat(parts)


def _candidates_task(bounds: tuple[int, int], *, defense: Diffence, classifier: torch.nn.Module,
                     x: np.ndarray) -> Candidates:
    start, stop = bounds
    return defense.candidates(classifier, torch.from_numpy(x[start:stop]))
