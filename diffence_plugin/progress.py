"""Progress a log file keeps: a line when a long phase starts, and one with its duration when it ends.

tqdm bars are drawn only on terminals (``disable=None``), so a run whose output goes to a file or a CI log
would otherwise print nothing for many minutes. The lines go to the ``diffence_plugin`` logger unless a
``log`` callable is given; the command line shows that logger on stderr, and a script does the same with
``logging.basicConfig(level=logging.INFO)``.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Callable, Iterator

logger = logging.getLogger("diffence_plugin")


@contextmanager
def phase(message: str, timings: dict | None = None, key: str | None = None,
          log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Log ``message``, run the block, log how long it took and store the seconds in ``timings[key]``."""
    say = log or logger.info
    say(message)
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    if timings is not None and key is not None:
        timings[key] = round(seconds, 2)
    say(f"      done in {seconds:.1f} s")
