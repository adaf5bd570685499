"""Command line: ``diffence demo | evaluate | train-diffusion | train-target | reproduce | compare | plugins``.

Every argument is validated before any work starts. Exit codes: 0 success, 2 usage errors (a bad argument,
a refused output folder), 1 anything else (bad data, a failed run, Ctrl-C). Output folders must be empty
unless ``--overwrite`` is given; an audit's folder is made once its plan and data are checked, before any
training, so an interrupted run keeps what it finished. ``demo``, ``evaluate`` and ``reproduce`` all run a
plan through the one engine (``audit.run``).
torch, diffusers and ART are imported only when a command runs, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from typing import Callable

from diffence_plugin import __version__
from diffence_plugin.cli import compare, demo, evaluate, plugins, reproduce, train_diffusion, train_target
from diffence_plugin.cli.common import UsageError, _Help
from diffence_plugin.cli.common import _log_to_stderr as _log_to_stderr  # the tests check its logger

COMMANDS = (demo, evaluate, train_diffusion, train_target, reproduce, compare, plugins)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diffence", formatter_class=_Help,
                                     description="Diffence: a diffusion-based defense against membership inference, "
                                                 "with a membership audit (threshold attacks, LiRA, RMIA, ART).",
                                     epilog="example:\n  diffence demo\n  diffence evaluate examples/audit-digits.toml")
    parser.add_argument("--version", action="version", version=f"diffence-plugin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add(sub)
    return parser


def _warning_line(seen: set[str]) -> Callable[..., None]:
    """A ``warnings.showwarning`` for the commands: each distinct warning once, as one timestamped line (a user
    of the command line has no use for the library's source line that raised it)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in seen:
            seen.add(text)
            print(f"{time.strftime('%H:%M:%S')} warning: {text}", file=sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    # Threads that sleep at a barrier instead of spinning: beside one other busy process the 2-core machine ran
    # Diffence 2.8x slower with OpenMP's default spinning and 1.6x with this, and as fast alone
    # (docs/results/speed.md). Read when torch loads, which the CLI does lazily.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare ``diffence``: the commands, not an error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    prefix = f"diffence {args.command}"
    library_log = logging.getLogger("diffence_plugin")
    propagate = library_log.propagate  # _log_to_stderr turns it off for the command; callers get it back
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(set())
            return args.func(args)
    except UsageError as exc:
        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2

    except KeyboardInterrupt:
        where = getattr(args, "out", None)
        print(f"{prefix}: interrupted; what was finished is kept" + (f" in {where}" if where else ""),
              file=sys.stderr)
        return 1
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        from diffence_plugin.audit.plan import (
            ConfigError,  # a plan field that does not fit the data: found before training
        )

        print(f"{prefix}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    finally:
        library_log.propagate = propagate


if __name__ == "__main__":
    raise SystemExit(main())
