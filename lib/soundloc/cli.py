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
    "species-locate": ("input CSV: audio_id,species[,date] with species as scientific names separated by ';'\n"
                       "examples:\n  soundloc species-locate lists.csv -o preds.csv --week-from-date\n"
                       "  soundloc species-locate lists.csv -o preds.csv --gallery land0.5 --decoder geomedian"),
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


def _cmd_species_locate(args) -> int:
    import pandas as pd

    from . import taxonomy
    from .data.gold import write_predictions
    from .data.validate import DataError, require_columns, week_of_year48
    from .geolocate import PRESETS, RangeGeolocator, gallery
    from .ranges import load_range_model

    src = _existing(args.input)
    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    require_columns(df, ["audio_id", "species"], str(src))
    if df["audio_id"].duplicated().any():
        i = int(df["audio_id"].duplicated().to_numpy().nonzero()[0][0])
        raise DataError(f"{src}: row {i + 1}: duplicate audio_id {df.audio_id.iloc[i]!r}")
    species = [[s.strip() for s in str(v).split(";") if s.strip()] for v in df["species"]]
    weeks = None
    if args.week_from_date:
        if "date" not in df:
            raise DataError(f"{src}: --week-from-date needs a 'date' column (YYYY-MM-DD)")
        parsed = pd.to_datetime(df["date"], format="%Y-%m-%d", errors="coerce")
        bad = parsed.isna() & (df["date"] != "")
        if bad.any():
            i = int(bad.to_numpy().nonzero()[0][0])
            raise DataError(f"{src}: row {i + 1} (audio_id={df.audio_id.iloc[i]!r}): date {df.date.iloc[i]!r} is not YYYY-MM-DD")
        weeks = [None if pd.isna(d) else int(w) for d, w in zip(parsed, week_of_year48(parsed.fillna(pd.Timestamp("2000-01-01"))))]
    model = load_range_model("birdnet", "torch", device=args.device)
    tax = taxonomy.reconcile(model, [s for lst in species for s in lst])
    if taxonomy.apply(model, tax):
        for r in tax.dropna(subset=["mapped_to"]).itertuples():
            print(f"taxonomy: {r.name} -> {r.mapped_to} ({r.rule})", file=sys.stderr)
    cfg = PRESETS[args.preset]
    overrides = {k: v for k, v in (("decoder", args.decoder), ("prior_weight", 0.0 if args.no_prior else None)) if v is not None}
    overrides.update(_params(args.param, cfg))
    loc = RangeGeolocator(model, gallery(args.gallery), cfg, gallery_name=args.gallery, device=args.device)
    if overrides:
        loc = loc.with_config(**overrides)
    res = loc.locate(species, weeks=weeks, progress=not args.quiet)
    for name, n in res.unknown.most_common():
        print(f"unknown species (not in {model.name}): {name} x{n}", file=sys.stderr)
    for note in res.notes:
        ids = ", ".join(df.audio_id[res.pred.fallback].head(5))
        print(f"note: {note} (e.g. {ids})", file=sys.stderr)
    out = pd.DataFrame({"audio_id": df["audio_id"], "lat": res.pred.lat, "lon": res.pred.lon})
    write_predictions(out, args.output)
    print(f"{res.summary()}; wrote {args.output}", file=sys.stderr)
    return 0


def _params(items: list[str], cfg) -> dict:
    """["key=value", ...] -> typed overrides of a frozen config's fields (one-line errors)."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(cfg)}
    out = {}
    for item in items or []:
        key, sep, val = item.partition("=")
        if not sep or key not in fields:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}")
        kind = type(getattr(cfg, key))
        try:
            out[key] = (val.lower() in ("1", "true", "yes")) if kind is bool else kind(val)
        except ValueError:
            raise UsageError(f"--param {item!r}: {val!r} is not a valid {kind.__name__}") from None
    return out


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
    sl = sub.add_parser("species-locate", help="geolocate species lists with range maps", epilog=EXAMPLES["species-locate"],
                        formatter_class=fmt, description="Locate each row's species set with BirdNET's range model "
                        "(presences, absences and GeoCLIP's photo-density prior) and write benchmark-format predictions.")
    sl.add_argument("input", help="CSV with audio_id, species (';'-separated scientific names), optional date")
    sl.add_argument("-o", "--output", required=True, help="output CSV (audio_id,latitude,longitude)")
    sl.add_argument("--week-from-date", action="store_true", help="use each row's date (YYYY-MM-DD) for week-specific ranges")
    sl.add_argument("--gallery", default="land1", help="candidate points: land1 (default), land0.5, uniform1, uniform0.5")
    sl.add_argument("--preset", default="lists", choices=["lists", "single"], help="parameter preset (see soundloc.geolocate.PRESETS)")
    sl.add_argument("--decoder", choices=["argmax", "geomedian", "mass_within"], help="override the preset's decoder")
    sl.add_argument("--no-prior", action="store_true", help="flat prior instead of GeoCLIP's photo density")
    sl.add_argument("--param", action="append", metavar="KEY=VALUE", help="override a RangeLocConfig field, e.g. absence_weight=0.5")
    sl.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    sl.add_argument("--quiet", action="store_true", help="no progress bar")
    sl.set_defaults(func=_cmd_species_locate)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError, ValueError, KeyError) as e:
        msg = (e.args[0] if isinstance(e, KeyError) and e.args else str(e)) or type(e).__name__
        print(f"soundloc {args.command}: error: {msg}", file=sys.stderr)
        return 2
