"""The ``soundloc`` command line: ``locate``, ``check``, ``eval``, ``species-locate``, ``soundscape``.

Bad input is one line on stderr naming the file and the problem, exit code 2. A bad CSV row is named "row N"
as a spreadsheet numbers it: the header is row 1, the first data row row 2 (every reader in soundloc.data).
Exit codes are the same for every command and batch (:data:`EXIT_CODES`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import traceback
from functools import partial
from pathlib import Path

from .data.validate import DataError
from .locator import FP_RATE

EXIT_CODES = ("exit codes (every command; the batches are locate -o, check --claims,\n"
              "species-locate and soundscape --sites):\n"
              "  0    all done (a batch: every input has its row, this run or resumed)\n"
              "  1    a batch finished and wrote its output but skipped some inputs (failed\n"
              "       files, bad rows), counted in its summary line\n"
              "  2    usage or bad input (checked before any work), or an output that cannot\n"
              "       be written: one line on stderr\n"
              "  3    an internal error (a bug in soundloc): its traceback on stderr\n"
              "  130  interrupted (Ctrl-C); a journaled batch resumes when rerun")
BATCH_DONE, BATCH_SKIPPED = 0, 1  # EXIT_CODES of a finished batch
INTERNAL_ERROR = 3  # EXIT_CODES of an unexpected exception (Python's own 1 would read as "skipped inputs")

EXAMPLES = {
    "eval": "examples:\n  soundloc eval preds.csv --dataset xcdc --json\n  soundloc eval preds.csv --gold my_gold.csv",
    "species-locate": ("input CSV: audio_id,species[,date], species as scientific names separated by ';'\n"
                       "examples:\n  soundloc species-locate lists.csv -o preds.csv --week-from-date\n"
                       "  soundloc species-locate lists.csv -o preds.csv --gallery land0.5 --decoder geomedian"),
    "locate": ("examples:\n  soundloc locate recording.mp3 --date 2020-03-15\n"
               "  soundloc locate recording.mp3 --date 2020-03-15 --top-k 10 --json\n"
               "  soundloc locate clips/*.wav --date 2019-05-22 --aggregate --map where.html\n"
               "  soundloc locate rec.mp3 --level 0.9 --regions where.geojson --decoder min_distance --json\n"
               "  soundloc locate recordings/ -o results.csv --workers 2   (or recordings.csv with path,date)\n"
               "  soundloc locate clip.wav --method fused --model data/cache/models/agclip-KEY/model.pt\n"
               "methods come from soundloc.locator's registry (soundloc.locator.register_method)"),
    "check": ("examples:\n  soundloc check recording.mp3 --lat 47.6766 --lon -122.294 --date 2020-03-15\n"
              "  soundloc check recording.mp3 --lat 48.85 --lon 2.35 --date 2020-03-15 --json\n"
              "  soundloc check --claims claims.csv -o flags.csv   (claims.csv: path,lat,lon,date)\n"
              "the verdict does not change the exit code"),
    "soundscape": ("examples:\n  soundloc soundscape --lat 47.68 --lon -122.29 --date 2020-05-15 --top-k 10\n"
                   "  soundloc soundscape --lat 46.5 --lon 6.6 --json\n"
                   "  soundloc soundscape --sites sites.csv -o ranked.csv --top-k 25\n"
                   "  soundloc soundscape --species 'Common Nightingale' --map nightingale.html\n"
                   "sites.csv: id,latitude,longitude[,date]; ranked.csv: id,rank,species,probability\n"
                   "bad rows are named by row number (the header is row 1, as a spreadsheet shows);\n"
                   "the good ones are written, exit code 1"),
}


class UsageError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help with the description wrapped to the terminal and the epilog (examples, one per line) kept as written."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return super()._fill_text(text, width, indent)
        return argparse.HelpFormatter._fill_text(self, text, width, indent)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (raised as UsageError, exit code 2 from :func:`main`)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message}")


def _device(value):
    """--device argument: cpu, cuda[:N] or auto, checked here (a one-line error otherwise)."""
    from .devices import resolve_device

    try:
        return str(resolve_device(value))
    except (RuntimeError, ValueError) as e:
        raise argparse.ArgumentTypeError(f"{value!r}: {str(e).splitlines()[0]}") from None


def _date(value):
    """--date argument: 'YYYY-MM-DD' checked here so that the error names the option."""
    from .locator import week_from_date

    try:
        week_from_date(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYY-MM-DD") from None
    return value


def _cmd_eval(args) -> int:
    from .data.gold import load_gold, read_locations
    from .metrics import evaluate

    pred = read_locations(_existing(args.pred))
    gold = load_gold(args.dataset) if args.dataset else read_locations(_existing(args.gold))
    try:
        m = evaluate(pred, gold)
    except DataError as e:  # ids that do not match: name the file and the gold set
        raise DataError(f"{args.pred} against {args.dataset or args.gold}: {e}") from None
    if args.json:
        print(json.dumps(m))
    else:
        print(f"{len(gold)} recordings  median {m['median_error']:.1f} km  mean {m['mean_error']:.1f} km")
        for k in ("street", "city", "region", "country", "continent"):
            print(f"  {k:<10} {100 * m[k]:6.2f} %")
    return 0


def _cmd_species_locate(args) -> int:
    from . import taxonomy
    from .batch import Item, SpeciesListJob, run_batch
    from .data.validate import DataError, raise_first, read_rows
    from .range_geolocation import PRESETS, RangeGeolocator, gallery
    from .ranges import load_range_model

    src = _existing(args.input)
    if Path(args.output).suffix.lower() not in (".csv", ".parquet"):
        raise UsageError(f"{args.output}: the output must end in .csv or .parquet")
    df, errors = read_rows(src, ("audio_id", "species"), ("date",), {"date": "date"} if args.week_from_date else {},
                           unique="audio_id", may_be_empty=("audio_id", "species"))
    raise_first(errors)
    species = [[s.strip() for s in str(v).split(";") if s.strip()] for v in df["species"]]
    if args.week_from_date and "date" not in df:
        raise DataError(f"{src}: --week-from-date needs a 'date' column (YYYY-MM-DD)")
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
    dates = df["date"] if args.week_from_date else [None] * len(df)  # a date is checked by read_rows above
    items = [Item(i, "", d or None, species=tuple(s)) for i, d, s in zip(df["audio_id"], dates, species)]
    job = SpeciesListJob(loc, gallery=args.gallery, details=args.details)
    rep = run_batch(items, job, args.output, progress=not args.quiet, id_column="audio_id", fresh=args.fresh)
    for name, n in job.unknown.most_common():
        print(f"unknown species (not in {model.name}): {name} x{n}", file=sys.stderr)
    for rest, n in job.notes.items():
        eg = f" (e.g. {', '.join(job.fallback[:5])})" if "no species" in rest else ""
        print(f"note: {n} {rest}{eg}", file=sys.stderr)
    n_err = sum(rep.errors.values())
    print(f"{rep.n_items} queries: {rep.n_done - len(job.fallback)} located from species, {len(job.fallback)} fell back "
          f"to the prior, {rep.n_resumed} already done"
          + (f", {n_err} errors ({', '.join(f'{k} x{n}' for k, n in rep.errors.most_common())})" if n_err else "")
          + (f"; {len(job.unknown)} species not covered by the range model ({sum(job.unknown.values())} mentions)"
             if job.unknown else "") + f"; wrote {args.output}" + (f" and {args.output}.errors.csv" if n_err else ""),
          file=sys.stderr)
    return BATCH_SKIPPED if n_err else BATCH_DONE


def _cmd_locate(args) -> int:
    from .locator import LocateOptions, aggregate, locate
    from .regions import write_geojson

    batch = args.output is not None
    unused = [o for o, v in (("--map", args.map), ("--regions", args.regions), ("--aggregate", args.aggregate),
                             ("--json", args.json)) if v] if batch else []
    if unused:
        raise UsageError(f"{' '.join(unused)}: not made by a batch (-o); its rows hold each recording's point, "
                         "area and warnings")
    if not batch:
        for p in args.audio:
            if Path(p).is_dir() or p.lower().endswith(".csv"):
                raise UsageError(f"{p}: a folder or CSV is a batch: add -o results.csv (or .parquet)")
            _audio_file(p)
    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be >= 1")
    if not 0 < args.level < 1:
        raise UsageError(f"--level {args.level}: must lie in (0, 1), e.g. 0.9")
    if not 0 <= args.fp_rate < 1:
        raise UsageError(f"--fp-rate {args.fp_rate}: must lie in [0, 1)")
    if not 0 <= args.min_conf <= 1:
        raise UsageError(f"--min-conf {args.min_conf}: must lie in [0, 1] (a BirdNET score)")
    if not args.radius_km > 0:
        raise UsageError(f"--radius-km {args.radius_km}: must be > 0")
    if args.method in ("agclip", "fused") and not args.model:
        raise UsageError(f"--method {args.method} needs --model CHECKPOINT (an AG-CLIP model.pt; chapter 03 trains "
                         "one on SimSounds under data/cache/models/agclip-*/, which has never heard real audio)")
    if args.model:
        _existing(args.model)
    opts = LocateOptions(gallery=args.gallery, min_conf=args.min_conf, overlap=args.overlap, device=args.device,
                         model=args.model, fusion_weight=args.fusion_weight, fp_rate=args.fp_rate, decoder=args.decoder,
                         radius_km=args.radius_km, levels=tuple(sorted({0.5, args.level})),
                         progress=not batch and not args.quiet and len(args.audio) > 1)
    if batch:
        return _locate_batch(args, opts)
    locs = locate(args.audio, date=args.date, method=args.method, top_k=args.top_k, opts=opts)
    agg = aggregate(locs, args.top_k, opts=opts) if args.aggregate and len(locs) > 1 else None
    shown = locs if agg is None else [agg]
    if args.map:
        _write_maps(shown, args.map, args.level)
    if args.regions:
        ids = _region_ids(locs) + (["aggregate"] if agg is not None else [])
        write_geojson([l.region_feature(args.level, i) for l, i in zip(locs + ([agg] if agg else []), ids) if l.regions],
                      args.regions)
        print(f"wrote {args.regions}", file=sys.stderr)
    if args.json:
        print(json.dumps({"method": args.method, "gallery": args.gallery, "level": args.level,
                          "results": [l.to_dict() for l in locs],
                          "aggregate": None if agg is None else agg.to_dict()}, default=float))
        return 0
    for l in locs + ([agg] if agg is not None else []):
        wk = f"week {l.week}" if l.week else "no date"
        if l.evidence:
            print(f"{l.path} ({args.method}, {wk}): best location {l.lat:.2f}, {l.lon:.2f} ({l.decoder}); "
                  f"expected error {l.expected_error_km:,.0f} km")
        else:
            print(f"{l.path} ({args.method}, {wk}): no location (no usable evidence)")
        for r in sorted(l.regions, key=lambda r: -r.level):
            print(f"  {100 * r.level:.0f} % credible region: {r.area_km2:,.0f} km^2, up to {r.radius_km:,.0f} km from the point")
        if l.evidence:
            for r in l.topk.itertuples():
                print(f"  {r.rank:>2}. {r.lat:7.2f} {r.lon:8.2f}  p = {r.prob:.4f}")
        if l.species is not None:
            sp = ", ".join(f"{r.scientific_name} ({r.common_name}) {r.max_score:.2f}" for r in l.species.itertuples())
            print(f"  species: {sp or 'none detected'}")
        for w in l.warnings:
            print(f"  WARNING ({w['code']}): {w['message']}")
        for n in l.notes:
            print(f"  note: {n}")
    return 0


def _locate_batch(args, opts) -> int:
    """Folder(s), CSV(s) path[,date][,id] or files -> one row per recording in args.output (resumable)."""
    from .batch import Item, read_items, run_batch
    from .locator import LocateJob

    items = []
    for p in args.audio:
        if Path(p).is_dir() or p.lower().endswith(".csv"):
            items += read_items(_existing(p) if not Path(p).is_dir() else p)
        else:
            items.append(Item(Path(p).name, str(_existing(p)), args.date))
    if args.date:
        items = [it if it.date else Item(it.id, it.path, args.date) for it in items]
    rep = run_batch(items, LocateJob(opts, args.method, args.level), args.output,
                    workers=args.workers, progress=not args.quiet, scheduler=args.scheduler, fresh=args.fresh)
    print(f"{rep.text()}; wrote {args.output}" + (f" and {args.output}.errors.csv" if rep.errors else ""),
          file=sys.stderr)
    return BATCH_SKIPPED if rep.errors else BATCH_DONE


def _region_ids(locs) -> list[str]:
    """Recording ids for GeoJSON features: file stems, the full path where two stems collide."""
    stems = [Path(l.path).stem for l in locs]
    return [s if stems.count(s) == 1 else l.path for s, l in zip(stems, locs)]


def _write_maps(locs, out: str, level: float = 0.9) -> None:
    import folium

    from .maps import folium_posterior, save_map

    base = Path(out)
    for l in locs:
        path = base if len(locs) == 1 else base.with_name(f"{base.stem}-{Path(l.path).stem}{base.suffix or '.html'}")
        m = folium_posterior(l.points, l.posterior, f"{Path(l.path).name}: location posterior ({l.method})",
                             pred=(l.lat, l.lon) if l.evidence else None)
        if l.regions:
            r = l.region(level)
            folium.GeoJson(l.region_feature(level), name=f"{100 * level:.0f} % credible region",
                           style_function=lambda _: {"color": "#08519c", "weight": 2, "fillOpacity": 0.08},
                           tooltip=f"{100 * level:.0f} % credible region: {r.area_km2:,.0f} km²").add_to(m)
        save_map(m, path)
        print(f"wrote {path}", file=sys.stderr)


def _cmd_check(args) -> int:
    from .forensics import CheckConfig, check
    from .locator import LocateOptions

    cfg = CheckConfig(range_threshold=args.range_threshold, min_score=args.min_score, hpd_level=args.hpd_level)
    opts = LocateOptions(gallery=args.gallery, device=args.device)
    if args.claims:
        if not args.output:
            raise UsageError("--claims needs -o flags.csv (or .parquet)")
        given = [n for n, v in (("AUDIO", args.audio), ("--lat", args.lat), ("--lon", args.lon), ("--json", args.json))
                 if v not in (None, False)]
        if given:
            raise UsageError(f"{', '.join(given)}: not used with --claims (each claim's path, lat, lon come from the CSV)")
        return _check_batch(args, cfg, opts)
    if args.output:
        raise UsageError("-o goes with --claims CLAIMS.csv (one claim prints its report; add --json for a file)")
    missing = [n for n, v in (("AUDIO", args.audio), ("--lat", args.lat), ("--lon", args.lon)) if v is None]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} "
                         "(or --claims claims.csv -o flags.csv)")
    _audio_file(args.audio)
    rep = check(args.audio, args.lat, args.lon, args.date, cfg, opts)
    print(json.dumps(rep.to_dict(), default=float) if args.json else rep.text())
    return 0


def _cmd_soundscape(args) -> int:
    from . import soundscape as ss
    from .data.validate import week_from_date
    from .ranges import load_range_model

    if args.top_k < 1:
        raise UsageError(f"--top-k {args.top_k}: must be >= 1")
    modes = sum(x is not None for x in (args.sites, args.species)) + (args.lat is not None or args.lon is not None)
    if modes != 1:
        raise UsageError("give exactly one of: --lat/--lon (one place), --sites CSV (batch), --species NAME (map)")
    if args.sites is None and args.species is None:  # checked before the model loads
        if args.lat is None or args.lon is None:
            raise UsageError("--lat and --lon go together")
        if not (-90 <= args.lat <= 90 and -180 <= args.lon <= 180):
            raise UsageError(f"--lat {args.lat} --lon {args.lon}: outside [-90, 90] x [-180, 180]")
    if args.sites is not None and not args.output:
        raise UsageError("--sites needs -o ranked.csv")
    if args.output and args.sites is None:
        raise UsageError("-o goes with --sites SITES.csv (one place prints its ranking; add --json for a file)")
    if args.map and args.species is None:
        raise UsageError("--map goes with --species NAME (the map of one species by month)")
    if not args.map_step > 0:
        raise UsageError(f"--map-step {args.map_step}: must be > 0 degrees")
    sites_path = _existing(args.sites) if args.sites is not None else None
    model = load_range_model("birdnet", "torch", device=args.device)
    if args.species is not None:
        return _soundscape_species(args, model)
    if args.sites is not None:
        sites, errors = ss.read_sites(sites_path)
        for e in errors:
            print(e, file=sys.stderr)
        ranked = ss.rank_sites(model, sites, args.top_k)
        from .io import atomic_path

        with atomic_path(args.output) as tmp:
            ranked.to_csv(tmp, index=False)
        print(f"{len(sites)} sites ranked, {len(errors)} bad rows skipped; wrote {args.output}", file=sys.stderr)
        return BATCH_SKIPPED if errors else BATCH_DONE
    week = week_from_date(args.date)
    top, richness = ss.rank_species(model, args.lat, args.lon, week, args.top_k)
    if args.json:
        print(json.dumps({"lat": args.lat, "lon": args.lon, "week": week, "expected_richness": richness,
                          "species": top.to_dict(orient="records")}, default=float))
        return 0
    print(f"{args.lat:.3f}, {args.lon:.3f} ({'week ' + str(week) if week else 'year-round'}): "
          f"expected richness {richness:.1f} species (BirdNET V2.4 occurrence)")
    for r in top.itertuples():
        print(f"  {r.rank:>3}. {r.probability:.3f}  {r.species} ({r.common_name})")
    return 0


def _soundscape_species(args, model) -> int:
    from . import soundscape as ss
    from .sphere import land_grid
    from .maps import save_map

    idx = ss.find_species(model, args.species)
    pts = land_grid(args.map_step)
    vals = ss.species_weeks(model, idx, pts)
    area = (vals >= 0.5).mean(1) * 100
    print(f"{model.species[idx]} ({model.common_names[idx]}): % of land grid cells with occurrence >= 0.5, "
          "Jan-Dec: " + " ".join(f"{v:.1f}" for v in area))
    if args.map:
        save_map(ss.month_layer_map(pts, vals, f"{model.common_names[idx]}: occurrence by month", args.map_step), args.map)
        print(f"wrote {args.map}", file=sys.stderr)
    return 0


def _check_batch(args, cfg, opts) -> int:
    """A claims CSV path,lat,lon[,date][,id] -> a verdict and a flag per row in args.output (resumable)."""
    from .batch import check_row, read_claims, run_batch

    rep = run_batch(read_claims(_existing(args.claims)), partial(check_row, config=cfg, opts=opts), args.output,
                    workers=args.workers, progress=not args.quiet, scheduler=args.scheduler, fresh=args.fresh)
    print(f"{rep.text('claims', 'checked')}; wrote {args.output}" + (f" and {args.output}.errors.csv" if rep.errors else ""),
          file=sys.stderr)
    return BATCH_SKIPPED if rep.errors else BATCH_DONE


def _params(items: list[str], cfg) -> dict:
    """["key=value", ...] -> typed overrides of a frozen config's fields (one-line errors)."""
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
    if path.is_dir():
        raise UsageError(f"{p}: a folder, not a file")
    if not path.is_file():
        raise UsageError(f"{p}: no such file")
    return path


def _audio_file(p: str) -> Path:
    """An existing file whose header soundfile can read (checked before any model loads)."""
    import soundfile as sf

    path = _existing(p)
    try:
        info = sf.info(str(path))
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types for non-audio
        raise UsageError(f"{p}: not a readable audio file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if info.frames == 0:
        raise UsageError(f"{p}: empty audio file (0 samples)")
    return path


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="soundloc", description="Geolocate natural sounds: where was this recorded?", epilog=EXIT_CODES,
                 formatter_class=_Help)
    sub = ap.add_subparsers(dest="command", required=True)
    fmt = _Help
    _add_locate(sub, fmt)
    _add_check(sub, fmt)
    _add_eval(sub, fmt)
    _add_species_locate(sub, fmt)
    _add_soundscape(sub, fmt)
    return ap


def _add_locate(sub, fmt) -> None:
    """`soundloc locate` (audio -> location) on the subparsers ``sub``."""
    from .locator import available_methods

    methods = available_methods()
    lo = sub.add_parser("locate", help="where was this recorded? (audio -> location)", epilog=EXAMPLES["locate"] + "\n\n" + EXIT_CODES,
                        formatter_class=fmt, description="Detect species with BirdNET and locate each recording with "
                        "their ranges (or another registered method): best location, top-k with probabilities, species.")
    lo.add_argument("audio", nargs="+", help="audio file(s): wav, flac, ogg, mp3; with -o also folders and CSVs "
                    "(path[,date][,id])")
    lo.add_argument("-o", "--output", metavar="OUT.csv",
                    help="batch: one row per recording to OUT.csv or OUT.parquet, resumable (journal OUT.journal.jsonl)")
    lo.add_argument("--fresh", action="store_true", help="batch: discard OUT's journal and compute every row again "
                    "(default: resume, skipping rows already journaled)")
    lo.add_argument("--workers", type=int, default=0, help="batch: local worker processes (default 0: inline)")
    lo.add_argument("--scheduler", metavar="ADDRESS", help="batch: run on a Dask cluster (dask.distributed scheduler address)")
    lo.add_argument("--quiet", action="store_true", help="no progress bar (shown on stderr for several files)")
    lo.add_argument("--date", type=_date, help="recording date YYYY-MM-DD (week-specific ranges); default: year-round")
    lo.add_argument("--method", default="ranges", choices=sorted(methods),
                    help="; ".join(f"{k}: {v}" for k, v in methods.items()))
    lo.add_argument("--top-k", type=int, default=5, help="how many most probable places to list (default 5)")
    lo.add_argument("--gallery", default="land1", help="candidate points: land1 (default), land2, land0.5, uniform1")
    lo.add_argument("--min-conf", type=float, default=0.1, help="BirdNET score below which a species is ignored (0.1)")
    lo.add_argument("--overlap", type=float, default=0.0, help="BirdNET window overlap in seconds (0-3)")
    lo.add_argument("--aggregate", action="store_true", help="also report the mean posterior of all files (one site)")
    lo.add_argument("--json", action="store_true", help="print one JSON object")
    lo.add_argument("--map", metavar="OUT.html", help="write the posterior and its --level credible region as a folium map")
    lo.add_argument("--level", type=float, default=0.9,
                    help="credible level of the region in --regions and --map (default 0.9; 0.5 is always reported too)")
    lo.add_argument("--regions", metavar="OUT.geojson",
                    help="write each recording's --level credible region as GeoJSON (RFC 7946; properties id, level, area_km2)")
    lo.add_argument("--decoder", default="mass_within", choices=["argmax", "min_distance", "mass_within"],
                    help="point estimate: most mass within --radius-km (default, chosen in chapter 12 on iNatSounds lists), "
                         "most probable cell, least expected distance to the truth")
    lo.add_argument("--radius-km", type=float, default=200.0, help="radius of --decoder mass_within (default 200)")
    lo.add_argument("--fp-rate", type=float, default=FP_RATE,
                    help=f"ranges: chance that a detection is spurious, so one wrong species cannot veto a place "
                         f"(default {FP_RATE:g}, chosen in chapter 12; 0 = every detection trusted)")
    lo.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or auto")
    lo.add_argument("--model", metavar="MODEL.pt", help="AG-CLIP checkpoint for --method agclip / fused")
    lo.add_argument("--fusion-weight", type=float, default=1.0,
                    help="fused: exponent w in p_agclip * p_ranges^w (default 1)")
    lo.set_defaults(func=_cmd_locate)


def _add_check(sub, fmt) -> None:
    """`soundloc check` (geo-forensics of a claimed place and date)."""
    ck = sub.add_parser("check", help="does a recording match the place/date it claims?", epilog=EXAMPLES["check"] + "\n\n" + EXIT_CODES,
                        formatter_class=fmt, description="Geo-forensics: species detected out of range at the claimed "
                        "place and week, where the claim falls under the audio posterior, and a verdict "
                        "(consistent / suspicious / inconsistent).")
    ck.add_argument("audio", nargs="?", help="audio file (or --claims)")
    ck.add_argument("--lat", type=float, help="claimed latitude (degrees)")
    ck.add_argument("--lon", type=float, help="claimed longitude (degrees)")
    ck.add_argument("--claims", metavar="CLAIMS.csv", help="batch: a CSV path,lat,lon[,date][,id], one claim per row")
    ck.add_argument("-o", "--output", metavar="FLAGS.csv", help="batch: a verdict and a flag per claim (.csv or .parquet)")
    ck.add_argument("--fresh", action="store_true", help="batch: discard OUT's journal and compute every row again "
                    "(default: resume, skipping rows already journaled)")
    ck.add_argument("--workers", type=int, default=0, help="batch: local worker processes (default 0: inline)")
    ck.add_argument("--scheduler", metavar="ADDRESS", help="batch: run on a Dask cluster (dask.distributed scheduler address)")
    ck.add_argument("--quiet", action="store_true", help="batch: no progress bar")
    ck.add_argument("--date", type=_date, help="claimed date YYYY-MM-DD; default: year-round ranges")
    ck.add_argument("--range-threshold", type=float, default=0.03,
                    help="range probability below which a species is out of range (default 0.03)")
    ck.add_argument("--min-score", type=float, default=0.5,
                    help="detection score for a species to count as evidence (default 0.5)")
    ck.add_argument("--hpd-level", type=float, default=0.95,
                    help="credible level of the audio posterior's region the claim is tested against (default 0.95)")
    ck.add_argument("--gallery", default="land1", help="candidate points (default land1)")
    ck.add_argument("--json", action="store_true", help="print one JSON object")
    ck.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or auto")
    ck.set_defaults(func=_cmd_check)


def _add_eval(sub, fmt) -> None:
    """`soundloc eval` (score benchmark-format predictions)."""
    ev = sub.add_parser("eval", help="score a benchmark-format prediction CSV", epilog=EXAMPLES["eval"], formatter_class=fmt,
                        description="Score audio_id,latitude,longitude predictions exactly as the benchmark's evaluate_geo.py.")
    ev.add_argument("pred", help="prediction CSV (audio_id,latitude,longitude)")
    g = ev.add_mutually_exclusive_group(required=True)
    g.add_argument("--dataset", choices=["inat", "xcdc"], help="registered gold set")
    g.add_argument("--gold", help="a gold CSV in the same format")
    ev.add_argument("--json", action="store_true", help="print one JSON object (accuracies as fractions)")
    ev.set_defaults(func=_cmd_eval)


def _add_species_locate(sub, fmt) -> None:
    """`soundloc species-locate` (species lists -> locations)."""
    sl = sub.add_parser("species-locate", help="geolocate species lists with range maps", epilog=EXAMPLES["species-locate"] + "\n\n" + EXIT_CODES,
                        formatter_class=fmt, description="Locate each row's species set with BirdNET's range model "
                        "(presences, absences and GeoCLIP's photo-density prior) and write benchmark-format predictions.")
    sl.add_argument("input", help="CSV with audio_id, species (';'-separated scientific names), optional date")
    sl.add_argument("-o", "--output", required=True, help="output .csv or .parquet (audio_id,latitude,longitude), "
                    "resumable (journal OUT.journal.jsonl: a killed run loses no finished row, a rerun goes on)")
    sl.add_argument("--fresh", action="store_true", help="batch: discard OUT's journal and compute every row again "
                    "(default: resume, skipping rows already journaled)")
    sl.add_argument("--week-from-date", action="store_true", help="use each row's date (YYYY-MM-DD) for week-specific ranges")
    sl.add_argument("--gallery", default="land1", help="candidate points: land1 (default), land0.5, uniform1, uniform0.5")
    sl.add_argument("--preset", default="lists", choices=["lists", "single"], help="parameter preset (see soundloc.range_geolocation.PRESETS)")
    sl.add_argument("--decoder", choices=["argmax", "geomedian", "mass_within"], help="override the preset's decoder")
    sl.add_argument("--no-prior", action="store_true", help="flat prior instead of GeoCLIP's photo density")
    sl.add_argument("--param", action="append", metavar="KEY=VALUE", help="override a RangeLocConfig field, e.g. absence_weight=0.5")
    sl.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or auto")
    sl.add_argument("--quiet", action="store_true", help="no progress bar")
    sl.add_argument("--details", action="store_true", help="also write area_km2_90, expected_error_km, decoder, "
                    "top_species and warnings per row (soundloc eval reads the first three columns only)")
    sl.set_defaults(func=_cmd_species_locate)


def _add_soundscape(sub, fmt) -> None:
    """`soundloc soundscape` (place -> ranked species; species -> map)."""
    sc = sub.add_parser("soundscape", help="what will be heard here? (place -> ranked species; species -> map)",
                        epilog=EXAMPLES["soundscape"] + "\n\n" + EXIT_CODES, formatter_class=fmt, description="Rank species by BirdNET V2.4 "
                        "occurrence at a place and week, with expected richness; batch over a sites CSV; or map a "
                        "species (scientific or common name) month by month.")
    sc.add_argument("--lat", type=float, help="latitude (degrees)")
    sc.add_argument("--lon", type=float, help="longitude (degrees)")
    sc.add_argument("--date", type=_date, help="date YYYY-MM-DD (week-specific ranges); default: year-round")
    sc.add_argument("--sites", metavar="SITES.csv", help="batch: CSV with id,latitude,longitude[,date]")
    sc.add_argument("-o", "--output", metavar="RANKED.csv", help="batch output: id,rank,species,probability")
    sc.add_argument("--species", metavar="NAME", help="map one species (scientific or common name)")
    sc.add_argument("--map", metavar="OUT.html", help="with --species: folium map, one layer per month")
    sc.add_argument("--map-step", type=float, default=4.0, help="map grid step in degrees (default 4: about 1 MB of HTML)")
    sc.add_argument("--top-k", type=int, default=20, help="species per place (default 20)")
    sc.add_argument("--json", action="store_true", help="print one JSON object")
    sc.add_argument("--device", default="cpu", type=_device, help="cpu, cuda or auto")
    sc.set_defaults(func=_cmd_soundscape)

def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as e:  # argparse's complaint, already prefixed with the (sub)command
        print(str(e).replace("\n", " "), file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (UsageError, DataError, FileNotFoundError, ValueError, KeyError) as e:
        msg = (e.args[0] if isinstance(e, KeyError) and e.args else str(e)) or type(e).__name__
        print(f"soundloc {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as e:  # an output that is a folder, a read-only place, a full disk: the path and the reason
        where = e.filename2 or e.filename
        print(f"soundloc {args.command}: error: " + (f"{where}: {e.strerror}" if where and e.strerror else str(e)),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback; a batch's finished rows are in its journal
        resume = "; rerun the same command to resume" if getattr(args, "output", None) and args.command in (
            "locate", "check", "species-locate") else ""
        print(f"\nsoundloc {args.command}: interrupted{resume}", file=sys.stderr)
        return 130
    except Exception:  # not the input's fault: the traceback, and a code that a script can tell from 1 (skipped inputs)
        traceback.print_exc()
        print(f"soundloc {args.command}: internal error (a bug; please report it with the traceback above)",
              file=sys.stderr)
        return INTERNAL_ERROR
