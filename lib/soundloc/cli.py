"""The ``soundloc`` command line: ``soundloc eval`` (and more subcommands as chapters add them).

Bad input is one line on stderr naming the file and the problem, exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .data.validate import DataError

EXAMPLES = {
    "eval": "examples:\n  soundloc eval preds.csv --dataset xcdc --json\n  soundloc eval preds.csv --gold my_gold.csv",
}


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


def _cmd_eval(args) -> int:
    from .data.gold import load_gold, read_locations
    from .metrics import evaluate

    pred = read_locations(_existing(args.pred))
    gold = load_gold(args.dataset) if args.dataset else read_locations(_existing(args.gold))
    m = evaluate(pred, gold)
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{len(gold)} recordings  median {m['median_error']:.1f} km  mean {m['mean_error']:.1f} km")
        for k in ("street", "city", "region", "country", "continent"):
            print(f"  {k:<10} {100 * m[k]:6.2f} %")
    return 0


def _existing(p: str) -> Path:
    path = Path(p)
    if not path.is_file():
        raise UsageError(f"{p}: no such file")
    return path


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="soundloc", description="Geolocate natural sounds: where was this recorded?")
    sub = ap.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    ev = sub.add_parser("eval", help="score a benchmark-format prediction CSV", epilog=EXAMPLES["eval"], formatter_class=fmt,
                        description="Score audio_id,latitude,longitude predictions exactly as the benchmark's evaluate_geo.py.")
    ev.add_argument("pred", help="prediction CSV (audio_id,latitude,longitude)")
    g = ev.add_mutually_exclusive_group(required=True)
    g.add_argument("--dataset", choices=["inat", "xcdc"], help="registered gold set")
    g.add_argument("--gold", help="a gold CSV in the same format")
    ev.add_argument("--json", action="store_true", help="print one JSON object (accuracies as fractions)")
    ev.set_defaults(func=_cmd_eval)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError, ValueError, KeyError) as e:
        msg = str(e).strip("'\"") or type(e).__name__
        print(f"soundloc {args.command}: error: {msg}", file=sys.stderr)
        return 2
