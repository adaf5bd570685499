"""The audit's tasks on Ray (the ``ray`` extra: ``pip install 'diffence-plugin[ray]'``).

``RayExecutor`` runs each task (one reference model, one shard of reconstructions) as a Ray task: one GPU
per task when the cluster has GPUs, ``threads`` CPUs otherwise. A task whose worker dies is retried
(``max_retries``); tasks derive their seeds from their index and write reference models to the run's cache
atomically, so a retried task, or a restarted run, gives the same results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

try:
    import ray
except ImportError as exc:  # the optional extra is not installed
    raise ImportError("the Ray executor needs the 'ray' package: pip install 'diffence-plugin[ray]' "
                      "(or run with --executor local)") from exc

from diffence_plugin.audit.executor import run_task

T = TypeVar("T")
R = TypeVar("R")


def _run(task: Callable[..., R], item: Any, shared: dict[str, Any], threads: int) -> R:
    return run_task(task, item, shared, threads)


class RayExecutor:
    """Runs tasks on the Ray cluster at ``address`` (None: a running local instance, or a new one).

    Args:
        address: a Ray address ("auto", "ray://host:10001", ...); ``diffence evaluate`` passes ``--address``
            or ``RAY_ADDRESS``.
        threads: torch threads (and Ray CPUs) per CPU task; equal to the local executor's for identical results.
        max_retries: how often a task whose worker died is run again.
        init: extra ``ray.init`` arguments when this executor starts Ray itself (e.g. ``num_cpus``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, threads: int = 1, max_retries: int = 3,
                 init: dict[str, Any] | None = None) -> None:
        if threads < 1 or max_retries < 0:
            raise ValueError(f"threads must be >= 1 and max_retries >= 0, got {threads}, {max_retries}")
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False, **(init or {})}
            ray.init(address=address, **options)
        self.threads = threads
        self.max_retries = max_retries

    def map(self, task: Callable[..., R], items: Sequence[T], *, shared: dict[str, Any] | None = None,
            desc: str = "tasks", gpu: bool = True) -> list[R]:
        """``task(item, **shared)`` for every item as Ray tasks; ``shared`` is put in the object store once."""
        items = list(items)
        if not items:
            return []
        gpus = gpu and ray.cluster_resources().get("GPU", 0) >= 1
        remote = ray.remote(_run).options(num_gpus=1 if gpus else 0, num_cpus=0 if gpus else self.threads,
                                          max_retries=self.max_retries, name=desc)
        shared_ref = ray.put(shared or {})
        return ray.get([remote.remote(task, item, shared_ref, self.threads) for item in items])
