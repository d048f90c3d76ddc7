"""Batches at archive scale: a folder or a CSV of recordings (or of species lists) -> one row each, resumable,
errors counted.

Every finished row is appended to a journal (``OUT.journal.jsonl``, flushed and fsynced), so a killed run
loses nothing finished and a rerun skips it. The journal's first line names the job and its options: a rerun
with other options is refused rather than mixed with the old rows, and a row whose item changed (another path
or date under the same id) is redone. The table (CSV or Parquet, rows in input order) is rewritten
atomically from the journal at the end. A file that fails is counted by error kind, listed in
``OUT.errors.csv`` with its message, and retried by the next run; the batch goes on.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data.validate import DataError, raise_first, read_rows, week_from_date
from .devices import usable_cores
from .evidence import kl_nats
from .io import atomic_path
from .locator import WEAK_KL_NATS, LocateOptions, range_geolocator
from .regions import credible_regions, expected_distance_km, grid_step

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".m4a", ".opus")  # files a folder batch picks up


@dataclass(frozen=True)
class Item:
    """One recording of a batch."""

    id: str  # unique row id (relative path for folders, the CSV's id column or path otherwise)
    path: str  # audio file
    date: str | None = None  # YYYY-MM-DD or None (year-round)
    lat: float | None = None  # claimed latitude, degrees (claims batches only)
    lon: float | None = None  # claimed longitude, degrees
    species: tuple = ()  # scientific names (species-list batches only; no file read)


@dataclass
class BatchReport:
    """What a run did: rows written, rows resumed from the journal, errors by kind."""

    n_items: int
    n_resumed: int
    n_done: int
    errors: Counter = field(default_factory=Counter)  # error kind -> count

    def text(self, noun: str = "recordings", verb: str = "located") -> str:
        err = ", ".join(f"{k} x{n}" for k, n in self.errors.most_common()) or "none"
        return (f"{self.n_items} {noun}: {self.n_done} {verb} this run, {self.n_resumed} already done, "
                f"{sum(self.errors.values())} errors ({err})")


def read_items(src: str | os.PathLike) -> list[Item]:
    """A folder (audio files below it, sorted; none is a DataError) or a CSV with columns path[,date][,id] -> Items.

    DataError naming the file and row (:func:`~soundloc.data.validate.read_rows`) for a missing path column,
    an empty path, a bad date or a duplicate id (the path when id is empty). Relative paths in a CSV are read
    relative to the CSV's folder.
    """
    src = Path(src)
    if src.is_dir():
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataError(f"{src}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder or below")
        return [Item(str(p.relative_to(src)), str(p)) for p in files]
    return _items(src, ())


def _items(src: Path, required: tuple, kinds=None) -> list[Item]:
    """A path[,date][,id] CSV plus ``required`` columns -> Items (lat/lon filled when required); DataError on a bad row."""
    df, errors = read_rows(src, ("path", *required), ("date", "id"), {"date": "date", **(kinds or {})}, unique="id",
                           fallback={"id": "path"})
    raise_first(errors)
    items = []
    for r in df.to_dict("records"):
        p = Path(r["path"])
        ll = (float(r["lat"]), float(r["lon"])) if "lat" in r else (None, None)
        items.append(Item(r["id"], str(p if p.is_absolute() else src.parent / p), r.get("date") or None, *ll))
    return items


def read_claims(src: str | os.PathLike) -> list[Item]:
    """A CSV of claims path,lat,lon[,date][,id] -> Items with lat/lon; DataError naming the file and row of a bad value."""
    return _items(Path(src), ("lat", "lon"), {"lat": "lat", "lon": "lon"})


def check_row(item: Item, config=None, opts=None) -> dict:
    """A claim Item -> one row: path, claimed lat/lon/date, verdict, flag (not consistent), out-of-range species,
    credible mass above the claim (soundloc.forensics.check)."""
    from .forensics import CheckConfig, check  # torch (its classifier path): imported by claims batches only

    opts = opts or LocateOptions()
    range_geolocator(opts.gallery, opts.preset, opts.device).clear_maps()  # a row whatever rows came before
    r = check(item.path, item.lat, item.lon, item.date, config or CheckConfig(), opts)
    return {"path": item.path, "lat": item.lat, "lon": item.lon, "date": item.date or "", "verdict": r.verdict,
            "flag": r.verdict != "consistent", "out_of_range": ";".join(r.species.scientific_name[r.species.out_of_range]),
            "hpd_mass": r.hpd_mass}


@dataclass
class SpeciesListJob:
    """A batch job: Item with a species list (and a date for weekly ranges) -> latitude, longitude[, details].

    ``prepare`` locates a chunk's lists together (one vectorised pass); the signature names the gallery, the
    locator's config and ``details``, so a rerun with other options is refused. Unknown species, fallback ids
    and the locator's notes of this run are collected for the summary.
    """

    loc: object = field(repr=False)  # soundloc.range_geolocation.RangeGeolocator
    gallery: str = "land1"
    details: bool = False  # add area_km2_90, expected_error_km, decoder, top_species, warnings
    config: object = None  # loc.config (named in the journal's signature); filled from loc
    chunk: int = 512  # rows located per pass: (512, N) posteriors with details
    unknown: Counter = field(default_factory=Counter, repr=False)  # unknown name -> mentions (this run)
    fallback: list = field(default_factory=list, repr=False)  # ids located from the prior alone (this run)
    notes: Counter = field(default_factory=Counter, repr=False)  # note text after its leading count -> count
    _rows: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.config = self.loc.config

    def __call__(self, item: Item) -> dict:
        if item.id not in self._rows:  # prepare failed for the chunk: this item alone, so its own error shows
            self.prepare([item])
        return self._rows.pop(item.id)

    def prepare(self, items: Sequence[Item]) -> None:
        """The chunk's Items -> their rows, kept until each is asked for."""
        weeks = [week_from_date(it.date) if it.date else None for it in items]
        res = self.loc.locate([list(it.species) for it in items], weeks=weeks, return_posterior=self.details,
                              progress=False)
        priors = {}  # week (-1: year-round) -> (N,) the no-evidence posterior, once per chunk and week
        self.unknown.update(res.unknown)
        self.fallback += [it.id for it, f in zip(items, res.pred.fallback) if f]
        for note in res.notes:  # "N queries had ...": summed over chunks
            n, _, rest = note.partition(" ")
            self.notes[rest] += int(n) if n.isdigit() else 1
        for j, (it, r) in enumerate(zip(items, res.pred.itertuples())):
            row = {"latitude": float(r.lat), "longitude": float(r.lon)}
            if self.details:
                if r.week not in priors:
                    priors[r.week] = self._prior(None if r.week < 0 else int(r.week))
                row.update(self._details(res.posterior[j], r, it, priors[r.week]))
            self._rows[it.id] = row

    def _prior(self, week: int | None) -> np.ndarray:
        """Week (None: year-round) -> (N,) the locator's posterior with no species: its absence and prior terms."""
        base = self.loc._base(week).cpu().numpy().astype(np.float64)
        prior = np.exp(base - base.max())
        return prior / prior.sum()

    def _details(self, post, r, item: Item, prior: np.ndarray) -> dict:
        """One row's (N,) posterior and its week's (N,) :meth:`_prior` -> area of its 90 % credible region,
        expected error, warnings."""
        loc = self.loc
        p = post.astype(np.float64) / post.sum()
        reg = credible_regions(loc.points, p, [0.9], point=(r.lat, r.lon), step=grid_step(loc.points))[0]
        warn = ["no_known_species"] if r.fallback else (["weak_evidence"] if kl_nats(p, prior) < WEAK_KL_NATS else [])
        return {"area_km2_90": float(reg.area_km2),
                "expected_error_km": float(expected_distance_km(loc.points, p, r.lat, r.lon)[0]),
                "decoder": loc.config.decoder, "top_species": item.species[0] if item.species else "",
                "warnings": ";".join(warn)}


def journal_path(out: str | os.PathLike) -> Path:
    """``OUT`` -> its journal, ``OUT.journal.jsonl``."""
    return Path(f"{out}.journal.jsonl")


def job_signature(job: Callable) -> str:
    """A job -> text naming its function and options, the same in every run (no object addresses)."""
    if isinstance(job, partial):
        return f"{job_signature(job.func)}{job.args!r}{sorted(job.keywords.items())!r}"
    if hasattr(job, "__qualname__"):
        return f"{job.__module__}.{job.__qualname__}"
    text = repr(job)  # a dataclass names its fields; the default repr (an address) names the class instead
    return f"{type(job).__module__}.{type(job).__qualname__}" if " at 0x" in text else text


def _item_key(item: Item) -> list:
    """What a journal row was computed from, beyond its id: path, date, claimed lat/lon[, species list]."""
    return [item.path, item.date or "", item.lat, item.lon] + ([list(item.species)] if item.species else [])


def _difference(old: str, new: str) -> str:
    """Two job signatures -> "field=old -> field=new, ..." where they differ token by token (else both in full)."""
    a, b = (re.split(r"(?<=[(,\[]) ?| ?(?=[)\]])", x) for x in (old, new))
    if len(a) != len(b):
        return f"{old} -> {new}"
    return ", ".join(f"{x.rstrip(',')} -> {y.rstrip(',')}" for x, y in zip(a, b) if x != y)


def _read_journal(path: Path, signature: str) -> dict:
    """Journal -> {id: row with its "_item" key}; a torn last line (a run killed mid-write) is ignored.
    ValueError naming the journal when another job (other options) wrote it."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "_job" in row:
                if row["_job"] != signature:
                    raise ValueError(f"{path}: this output was started with other options "
                                     f"({_difference(row['_job'], signature)}); rerun with those, or delete the journal "
                                     "or choose another output to start over")
                continue
            done[row["id"]] = row
    return done


def _call(job: Callable, item: Item):
    """Run one job -> ("ok", row) or ("error", kind, message); exceptions stay in the worker."""
    try:
        return ("ok", {"id": item.id, **job(item)})
    except Exception as e:  # noqa: BLE001 - a bad file is counted and reported, the batch goes on
        reason = getattr(e, "reason", None)  # an AudioError's kind: unreadable, truncated, too-short...
        kind = type(e).__name__ + (f" ({reason})" if isinstance(reason, str) else "")
        return ("error", kind, str(e).splitlines()[0] if str(e) else type(e).__name__)


def _prepare(job: Callable, items: Sequence[Item]) -> None:
    """``job.prepare(items)`` when the job has one (shared work, e.g. BirdNET windows of several files scored
    together); a failing prepare leaves each item to fail or succeed on its own call."""
    if hasattr(job, "prepare"):
        try:
            job.prepare(items)
        except Exception:  # noqa: BLE001 - the per-item calls report their own errors
            pass


def _call_chunk(job: Callable, items: Sequence[Item]) -> list:
    """A chunk of items -> one :func:`_call` result each, after one ``prepare`` (for workers)."""
    _prepare(job, items)
    return [_call(job, it) for it in items]


def _inline(job: Callable, chunks: Sequence[Sequence[Item]]):
    """Chunks -> (item, result) pairs, each yielded (and so journaled) as soon as it is done."""
    for c in chunks:
        _prepare(job, c)
        for it in c:
            yield it, _call(job, it)


def _share_cores(n: int) -> None:
    """Pool initializer: a worker's interpreters use its share of the cores (:func:`soundloc.devices.cpu_threads`)
    unless the user set a thread count; N workers each taking every core would spin against each other."""
    if not (os.environ.get("SOUNDLOC_TORCH_THREADS") or os.environ.get("OMP_NUM_THREADS")):
        os.environ["OMP_NUM_THREADS"] = str(n)


def run_batch(items: Sequence[Item], job: Callable[[Item], dict], out: str | os.PathLike, workers: int = 0,
              progress: bool = True, scheduler: str | None = None, id_column: str = "id", fresh: bool = False) -> BatchReport:
    """Items, ``job(item) -> row dict`` (picklable for workers > 0) -> the table at ``out`` (.csv or .parquet).

    ``workers`` 0 runs inline, N > 0 in a local process pool of N; ``scheduler`` (a dask.distributed address,
    e.g. tcp://host:8786) runs the jobs on that Dask cluster instead, results journaled as they complete.
    A job with a ``prepare(items)`` method and a ``chunk`` size gets its items in chunks: ``prepare`` once per
    chunk, then the job per item (with workers, rows are journaled as their chunk completes). The table's
    first column, the item id, is named ``id_column``. ``fresh`` discards ``out``'s journal first: every row is
    computed again (e.g. a chapter whose code changed), and still journaled as it finishes.
    """
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{out}: the output must end in .csv or .parquet")
    out.parent.mkdir(parents=True, exist_ok=True)  # as soundloc.io.atomic_path does for the other commands' outputs
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup, n = Counter(ids).most_common(1)[0]
        raise ValueError(f"batch item ids must be unique: {dup!r} is the id of {n} items (give a CSV with an id column)")
    jpath = journal_path(out)
    if fresh:
        jpath.unlink(missing_ok=True)
    sig = job_signature(job)
    keys = {it.id: _item_key(it) for it in items}
    done = {k: v for k, v in _read_journal(jpath, sig).items() if k in keys and v.get("_item", keys[k]) == keys[k]}
    todo = [it for it in items if it.id not in done]
    rep = BatchReport(len(items), len(done), 0)
    errors = []
    bar = tqdm(total=len(todo), desc="recordings", disable=not progress, leave=False)
    with open(jpath, "a") as journal:
        if journal.tell() == 0:
            journal.write(json.dumps({"_job": sig}) + "\n")
        client = pool = None
        size = max(1, int(getattr(job, "chunk", 1))) if hasattr(job, "prepare") else 1
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        if scheduler:
            from distributed import Client, as_completed  # optional: dask.distributed, for --scheduler only

            client = Client(scheduler)  # the default client while it runs: as_completed looks it up
            futs = client.map(partial(_call_chunk, job), chunks, pure=False)
            which = {f.key: c for f, c in zip(futs, chunks)}
            pairs = (p for f, res in as_completed(futs, with_results=True) for p in zip(which[f.key], res))
        elif workers > 0:
            pool = ProcessPoolExecutor(workers, initializer=_share_cores, initargs=(max(1, usable_cores() // workers),))
            pairs = (p for c, res in zip(chunks, pool.map(partial(_call_chunk, job), chunks)) for p in zip(c, res))
        else:
            pairs = _inline(job, chunks)
        try:
            for it, res in pairs:
                if res[0] == "ok":
                    journal.write(json.dumps({**res[1], "_item": keys[it.id]}, default=str) + "\n")
                    journal.flush()
                    os.fsync(journal.fileno())  # a finished row survives a kill
                    done[it.id] = res[1]
                    rep.n_done += 1
                else:
                    rep.errors[res[1]] += 1
                    errors.append({"id": it.id, "path": it.path, "error": res[1], "message": res[2]})
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if client is not None:
                client.close()
    table = pd.DataFrame([{k: v for k, v in done[i].items() if k != "_item"} for i in ids if i in done])
    _write_table(table.rename(columns={"id": id_column}), out)
    epath = Path(f"{out}.errors.csv")
    if errors:
        _write_table(pd.DataFrame(errors), epath)
    elif epath.exists():
        epath.unlink()
    return rep


def _write_table(df: pd.DataFrame, path: Path) -> None:
    """DataFrame -> CSV or Parquet by suffix, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False) if path.suffix.lower() == ".parquet" else df.to_csv(tmp, index=False)
