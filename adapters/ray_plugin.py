"""Registers the Ray executor (``[run].executor = "ray"``) without importing Ray until a run asks for it:
the ``ray`` extra stays optional, and a missing one is reported when the executor is built."""

from __future__ import annotations

from diffence_plugin.registry import hookimpl


def _ray_executor(address=None, threads: int = 1, progress: bool = True):
    from diffence_plugin.adapters.ray_executor import RayExecutor

    return RayExecutor(address=address, threads=threads)


@hookimpl
def diffence_register_executors(register):
    register("ray", _ray_executor)
