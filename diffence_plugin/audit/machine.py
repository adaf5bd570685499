"""Where and under what load a run ran: recorded in its results, since float32 figures move with the CPU."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import torch


def machine() -> dict:
    """What produced the numbers: CPU, cores, torch threads and library versions."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("diffence-plugin", "torch", "diffusers", "adversarial-robustness-toolbox", "opacus", "numpy",
                    "scikit-learn", "scipy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "versions": versions}


def machine_load(sample_s: float = 0.25) -> dict:
    """How busy this machine is now: cores, the 1-minute load average, the cores busy over ``sample_s`` (from
    /proc/stat, Linux), torch's threads and OpenMP's wait policy; an audit records it when it starts."""
    busy = None
    try:
        def ticks() -> tuple[int, int]:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # all, idle + iowait
        total0, idle0 = ticks()
        time.sleep(sample_s)
        total1, idle1 = ticks()
        busy = (os.cpu_count() or 1) * (1 - (idle1 - idle0) / max(1, total1 - total0))
    except (OSError, ValueError, IndexError):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"cores": os.cpu_count(), "load_1min": load, "busy_cores": busy, "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default")}


def describe_load(load: dict) -> str:
    """One line of ``machine_load``: what a run started with."""
    busy = "" if load["busy_cores"] is None else f", {load['busy_cores']:.1f} busy now"
    average = "" if load["load_1min"] is None else f"; load average {load['load_1min']:.2f}"
    return (f"torch threads {load['torch_threads']}, OpenMP wait policy {load['omp_wait_policy']}; "
            f"{load['cores']} cores{busy}{average}")
