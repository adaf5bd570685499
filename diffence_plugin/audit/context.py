"""The run context: what every stage of one run reads besides the stages' own outputs (the plan, where the run
writes and caches, where its tasks run, how it reports progress and time), passed as one object instead of
threaded through every signature."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from diffence_plugin.audit.plan import Plan
from diffence_plugin.audit.store import Stages
from diffence_plugin.progress import logger, phase


@dataclass
class RunContext:
    """One run: its plan, its folder, its executor, its log and the time each phase took."""

    plan: Plan
    out: Path
    executor: Any = None
    log: Callable[[str], None] = logger.info
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def cache(self) -> Path:
        """Where trained stages and reference models are kept: ``[run].cache`` (shared by the variants of a sweep),
        else the run's own folder."""
        return Path(self.plan.run.cache) if self.plan.run.cache else self.out

    @property
    def stages(self) -> Stages:
        return Stages(self.cache)

    def phase(self, title: str, key: str):
        """A timed, logged phase (``progress.phase``) whose seconds land in ``timings[key]``."""
        return phase(title, self.timings, key, self.log)
