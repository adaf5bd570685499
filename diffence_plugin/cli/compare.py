"""``diffence compare A B``: two audits of the same evaluation records, row by row, with paired intervals."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffence_plugin.cli.common import (UsageError, _command)


def add(sub) -> None:
    cmp = _command(sub, "compare", "two audits of the same evaluation records, row by row: B's change from A in the "
                   "chosen attack's and LiRA's AUC and LiRA's TPR at 1% FPR, with paired bootstrap intervals",
                   "diffence compare runs/reproduce-public-members runs/reproduce-public")
    cmp.add_argument("a", help="run A's folder (or its results.json): the baseline")
    cmp.add_argument("b", help="run B's folder (or its results.json)")
    cmp.add_argument("--rows", nargs=2, metavar=("ROW_A", "ROW_B"), default=None,
                     help="pair only row ROW_A of A with row ROW_B of B (A and B may be the same run), e.g. "
                     "memguard diffence+memguard")
    cmp.add_argument("--json", default=None, help="also write the comparison to this JSON file")
    cmp.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    cmp.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    cmp.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    """Run B's rows against run A's on the same evaluation records, with paired intervals."""
    from diffence_plugin.audit.results import load_results
    from diffence_plugin.report.compare import compare_results, format_comparison

    comparison = compare_results(load_results(args.a), load_results(args.b), rows=tuple(args.rows) if args.rows else None,
                                 seed=args.seed)
    print(format_comparison(comparison, (args.a, args.b)))
    if args.json:
        target = Path(args.json)
        if target.exists() and not args.overwrite:
            raise UsageError(f"--json file {str(target)!r} exists; pass --overwrite to replace it")
        target.write_text(json.dumps(comparison, indent=2))
    return 0
