"""What every command shares: usage errors, output folders, the plan flags, running a plan and printing its
tables, the log on stderr, and the help formatter (which escapes % in help text: ``1% FPR``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path



class UsageError(Exception):
    """A command-line argument is wrong; exit code 2."""


def _out_folder(path: str, overwrite: bool, create: bool = True) -> Path:
    """The output folder, created now unless ``create`` is False (checked only); a non-empty one is refused
    without ``--overwrite``."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UsageError(f"output folder {str(out)!r} is not empty; pass --overwrite to replace its contents")
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value is not None and not value > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be > 0, got {value}")


def _plan(load, *arguments, overrides: list[str]):
    """A resolved plan from ``load`` (``load_plan`` or ``load_preset``); its errors are usage errors."""
    from diffence_plugin.audit.plan import ConfigError

    try:
        return load(*arguments, overrides)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc


def _with_sweep(plan, args: argparse.Namespace):
    """The plan with ``--over``/``--zip`` as its ``[sweep]`` (values read as JSON where they parse)."""
    from diffence_plugin.audit.plan import SweepSection

    over = {}
    for item in getattr(args, "over", None) or []:
        key, sep, text = item.partition("=")
        if not sep or "." not in key or not text:
            raise UsageError(f"--over expects SECTION.KEY=V1,V2,..., got {item!r}")
        over[key] = [_json_or_text(value) for value in text.split(",")]
    if over:
        plan.sweep = SweepSection(over=over, zip=bool(getattr(args, "zip", False)))
    elif getattr(args, "zip", False) and plan.sweep is not None:
        plan.sweep.zip = True
    return plan


def _json_or_text(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _run_sweep(plan, args: argparse.Namespace) -> int:
    """A sweep's variants (``--dry-run``: listed), run one after another; its combined table and plot."""
    from diffence_plugin.audit.plan import ConfigError, describe
    from diffence_plugin.audit.sweep import expand, run_sweep

    try:
        variants = expand(plan)
    except ConfigError as exc:
        raise UsageError(str(exc)) from exc
    if getattr(args, "dry_run", False):
        print(describe(plan))
        print(f"\nsweep: {len(variants)} variants into {plan.run.out}/VARIANT, sharing {plan.run.out}/cache")
        print("\n".join(f"- {v.name}" for v in variants))
        return 0
    out = Path(plan.run.out)
    if out.exists() and (out / "sweep.json").is_file() and not plan.run.overwrite:
        raise UsageError(f"{str(out)!r} holds a finished sweep; pass --overwrite or choose another --out")
    _set_threads(getattr(args, "threads", None))
    _log_to_stderr()
    from diffence_plugin.audit.sweep import load_sweep
    from diffence_plugin.report.sweep import (format_repeats_table, format_sweep_table, repeats_summary,
                                              write_sweep_report)

    run_sweep(plan)
    record, results = load_sweep(out)
    written = write_sweep_report(record, results, out)
    print("\n" + format_sweep_table(record, results))
    repeats = repeats_summary(record, results)
    if repeats:
        print("\nOver the repeats: mean ± sd [95% interval over the evaluation records and the repeats]\n"
              + format_repeats_table(repeats))
    print(f"\nwrote {out / 'sweep.json'}, " + ", ".join(str(p) for p in written) + " and every variant's folder")
    return 0


def _run_plan(plan, args: argparse.Namespace, *, attack_table: bool = False) -> int:
    """Run a plan through the engine and print its tables: every command's last step."""
    plan = _with_sweep(plan, args)
    if plan.sweep is not None:
        return _run_sweep(plan, args)
    if getattr(args, "dry_run", False):
        from diffence_plugin.audit.plan import describe
        from diffence_plugin.audit.stages.prepare import read_inputs

        read_inputs(plan)  # the data, the members, a loaded target and the DDPMs' image size: checked, not run
        print(describe(plan))
        return 0
    from diffence_plugin.audit.store import claim_folder

    try:
        claim_folder(plan)  # refused here as a usage error; the engine resumes or clears it (and says so)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from exc
    out = Path(plan.run.out)
    _set_threads(getattr(args, "threads", None))
    _log_to_stderr()
    from diffence_plugin.audit.run import run_plan
    from diffence_plugin.report import summary_tables

    results = run_plan(plan).results
    print("\n" + summary_tables(results, every_attack=attack_table))
    print(f"\nwrote {out / 'results.json'}, {out / 'report.html'} and {out / 'config.json'} (owner-only: it holds "
          f"the defense's seed) in {results['seconds']:.0f} s")
    return 0


def _common_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` assignments, then the flags every plan command shares."""
    out = list(getattr(args, "set", None) or [])
    if getattr(args, "out", None):
        out.append(f"run.out={json.dumps(str(Path(args.out).resolve()))}")
    if getattr(args, "overwrite", False):
        out.append("run.overwrite=true")
    if getattr(args, "no_progress", False):
        out.append("run.progress=false")
    for flag in ("executor", "address"):
        if getattr(args, flag, None):
            out.append(f"run.{flag}={json.dumps(getattr(args, flag))}")
    return out


def _seed_overrides(seed: int | None) -> list[str]:
    return [] if seed is None else [f"run.seed={seed}", f"roles.seed={seed}"]


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _log_to_stderr() -> None:
    """Show the library's progress lines (``diffence_plugin`` logger, INFO) on stderr, once."""
    import logging

    class Stderr(logging.StreamHandler):
        """Writes to whatever ``sys.stderr`` is when a line is logged (so redirections and tests see it)."""

        stream = property(lambda self: sys.stderr, lambda self, value: None)

    logger = logging.getLogger("diffence_plugin")
    if not any(getattr(h, "diffence_cli", False) for h in logger.handlers):
        handler = Stderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        handler.diffence_cli = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # shown here already; a root handler (opacus calls basicConfig) would repeat each line


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help (once, and only where there is one), and examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)) or action.required:
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _command(sub, name: str, summary: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=summary.replace("%", "%%"), description=summary, epilog=f"example:\n  {example}",
                          formatter_class=_Help)


def _plan_flags(command: argparse.ArgumentParser, out_help: str) -> None:
    """The flags every command that runs a plan shares."""
    command.add_argument("--out", default=None, help=out_help)
    command.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                         help="override any plan field, e.g. --set run.seed=3 (repeatable; KEY=null removes it)")
    command.add_argument("--over", action="append", metavar="SECTION.KEY=V1,V2,...",
                         help="a sweep: run the plan once per value (repeatable: the product of the lists; with "
                              "--zip, in step), each into its own sub-folder of --out")
    command.add_argument("--zip", action="store_true", help="--over: take the lists in step, not their product")
    command.add_argument("--dry-run", action="store_true", help="print the resolved plan and the work it implies, then exit")
    command.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    command.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty output folder")
    command.add_argument("--no-progress", action="store_true", help="no progress bars")
