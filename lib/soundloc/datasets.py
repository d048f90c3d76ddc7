"""The datasets the learned chapters train on: the SimSounds world (simulated) or real iNatSounds audio.

- :func:`prepare_sim` -> :class:`AudioSplits`: the SimSounds world (built once, shared) with one
  :class:`~soundloc.spectrogram.SpectrogramCache` per split, keyed by the world and the image
  config, its train / val / test / chorus tables, image accessors and ready-made
  :class:`~soundloc.recording_sets.RecordingSet` s for any head.
- :func:`prepare_inat` gives the same object for real iNatSounds audio (any folder in its layout;
  chapters 01 and 03 with ``DATA="inat"``); :func:`chapter_data` / :func:`notebook_data` pick one from a
  chapter's ``DATA`` parameter.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pooch

from . import paths
from . import spectrogram as spec
from .audio import SkipReport
from .book import SIM_LABEL, ParameterError
from .data import sim as simlib
from .data.inat import load_inat
from .data.validate import DataError
from .io import digest
from .recording_sets import RecordingSet

__all__ = ["AudioSplits", "sim_data_key", "prepare_sim", "prepare_inat", "chapter_data", "notebook_data", "DATA_SOURCES",
           "INAT_SPLITS", "INAT_HOWTO", "inat_audio_root", "SIM_SUFFIX", "REAL_SUFFIX", "REAL_LABEL"]

SIM_SUFFIX = " (simulated)"
REAL_SUFFIX = " (real)"  # our numbers on real data (iNatSounds audio), beside the paper's
REAL_LABEL = "real (iNatSounds)"  # titles of results on real iNatSounds audio (book.SIM_LABEL's counterpart)


@dataclass
class AudioSplits:
    """Recordings with a spectrogram cache per split: a SimSounds world (:func:`prepare_sim`) or real
    iNatSounds audio (:func:`prepare_inat`, ``source="inatsounds"``, ``sim_cfg=None``, no chorus split)."""

    sim_cfg: simlib.SimConfig | None            # the world's config; None for iNatSounds
    spec_cfg: spec.SpecConfig
    root: Path                                  # the data folder (iNatSounds layout)
    splits: dict[str, pd.DataFrame]             # split -> recordings (load_inat columns + filepath), cached ones only
    caches: dict[str, spec.SpectrogramCache]    # split -> its spectrogram cache
    species: list[str]                          # species names, class index = position (category id order)
    key: str                                    # data key: world config / json digests + image config
    skipped: dict[str, SkipReport] = field(default_factory=dict)  # split -> recordings without an image
    source: str = "simsounds"                   # "simsounds" (simulated) | "inatsounds" (real)
    category_ids: tuple[int, ...] | None = None  # class index -> the dataset's category id (None: 0..S-1)

    @property
    def simulated(self) -> bool:
        """True for SimSounds: every number computed on it must be labelled simulated."""
        return self.source == "simsounds"

    @property
    def label(self) -> str:
        """What titles say about the data: ``book.SIM_LABEL`` or :data:`REAL_LABEL`."""
        return SIM_LABEL if self.simulated else REAL_LABEL

    @property
    def suffix(self) -> str:
        """Suffix of our numeric columns beside the paper's: :data:`SIM_SUFFIX` or :data:`REAL_SUFFIX`."""
        return SIM_SUFFIX if self.simulated else REAL_SUFFIX

    @property
    def name(self) -> str:
        """Dataset name for titles: "SimSounds" or "iNatSounds"."""
        return "SimSounds" if self.simulated else "iNatSounds"

    # -- tables
    @property
    def train(self) -> pd.DataFrame:
        return self.splits["train"]

    @property
    def val(self) -> pd.DataFrame:
        return self.splits["val"]

    @property
    def test(self) -> pd.DataFrame:
        return self.splits["test"]

    @property
    def chorus(self) -> pd.DataFrame:
        return self.splits["chorus"]

    def latlon(self, split: str) -> np.ndarray:
        """(N, 2) true lat/lon of a split's recordings."""
        return self.splits[split][["lat", "lon"]].to_numpy(float)

    def species_index(self, split: str) -> np.ndarray:
        """(N,) focal-species class index (into ``species``) of a split's recordings."""
        cid = self.splits[split]["category_id"].to_numpy(np.int64)
        if self.category_ids is None:
            return cid
        return np.searchsorted(np.asarray(self.category_ids, np.int64), cid)  # category_ids is sorted

    # -- images
    def image(self, split: str, audio_id: str) -> np.ndarray:
        """One recording's (128, T) uint8 spectrogram image."""
        return self.caches[split].get(str(audio_id))

    def images(self, split: str) -> list[np.ndarray]:
        """Every image of a split, in table order (memory-mapped views)."""
        return [self.image(split, a) for a in self.splits[split]["audio_id"]]

    def recording_set(self, split: str, head) -> RecordingSet:
        """Images + ``head.targets`` (true lat/lon, focal species) + true lat/lon for a split."""
        df = self.splits[split]
        t = head.targets(lat=df["lat"].to_numpy(float), lon=df["lon"].to_numpy(float),
                         species=self.species_index(split))
        return RecordingSet(self.caches[split], t, self.latlon(split), ids=list(df["audio_id"]), spec_cfg=self.spec_cfg)

    def card(self) -> pd.DataFrame:
        """Dataset card: recordings, species, species per recording, durations, per split."""
        rows = []
        for s, df in self.splits.items():
            # iNatSounds annotates one species per recording; SimSounds knows every species heard
            heard = df["all_species"] if "all_species" in df else df["species"].map(lambda x: [x])
            n_sp = heard.map(len)
            rows.append({"split": s, "recordings": len(df), "focal species": df["species"].nunique(),
                         "species heard (any)": len({x for a in heard for x in a}),
                         "species / recording (mean)": n_sp.mean(), "(max)": int(n_sp.max()),
                         "duration s (median)": df["duration"].median(), "total hours": df["duration"].sum() / 3600,
                         "without image": self.skipped[s].n_skipped if s in self.skipped else 0})
        return pd.DataFrame(rows)


def sim_data_key(sim_cfg: simlib.SimConfig, spec_cfg: spec.SpecConfig) -> str:
    """Key of (world config, generator version, spectrogram image config)."""
    return digest({"sim": sim_cfg.to_json(), "version": simlib.SIM_VERSION, "image": spec_cfg.image_key()})


def prepare_sim(sim_cfg: simlib.SimConfig | None = None, spec_cfg: spec.SpecConfig | None = None,
                progress: bool = True, splits: Sequence[str] = simlib.SPLITS, root=None,
                device=None) -> AudioSplits:
    """Build (or reuse) the SimSounds world of ``sim_cfg`` and a spectrogram cache per split -> AudioSplits.

    Defaults: ``SimConfig.small()`` and ``SpecConfig(small=True)``. Both steps are idempotent and
    resumable. Caches live under ``paths.cache_dir("spectrograms", "simsounds-<name>-seed<seed>-<key>", split)``.
    Recordings without an image (unreadable, too short) are dropped from the split's table and
    counted in ``AudioSplits.skipped`` (printed when ``progress``).
    """
    sim_cfg = sim_cfg or simlib.SimConfig.small()
    spec_cfg = spec_cfg or spec.SpecConfig(small=True)
    root = simlib.build_simsounds(sim_cfg, root, progress=progress)
    key = sim_data_key(sim_cfg, spec_cfg)
    base = paths.cache_dir("spectrograms", f"simsounds-{sim_cfg.name}-seed{sim_cfg.seed}-{key}")
    tables, caches, skipped = {}, {}, {}
    for split in splits:
        df = simlib.load_simsounds(sim_cfg, split, root, build=False, progress=progress)
        cache = spec.SpectrogramCache(base / split, spec_cfg, device=device)
        rep = cache.build(zip(df["audio_id"], df["filepath"]), progress=progress)
        have = set(cache.ids())
        keep = df["audio_id"].isin(have).to_numpy()
        if not keep.all() and progress:
            print(f"SimSounds {split}: {int((~keep).sum())} of {len(df)} recordings have no image and are left out ({rep})")
        tables[split], caches[split], skipped[split] = df[keep].reset_index(drop=True), cache, rep
    with open(Path(root) / "train.json") as f:
        cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    if [c["id"] for c in cats] != list(range(len(cats))):
        raise ValueError(f"{root}/train.json: category ids are not 0..{len(cats) - 1}")
    return AudioSplits(sim_cfg, spec_cfg, Path(root), tables, caches, [c["name"] for c in cats], key, skipped)


# --------------------------------------------------------------------------- real iNatSounds audio + caches

INAT_SPLITS = ("train", "val", "test")
INAT_HOWTO = ("download it with python -c \"from soundloc.data import fetch_group; fetch_group('inat-audio')\" "
              "(133 GB, into data/raw/inatsounds/; test.json.tar.gz comes with 'make data'), then mkdir -p "
              "data/raw/inatsounds-audio and, for s in train val test: tar -xzf data/raw/inatsounds/$s.tar.gz -C data/raw/inatsounds-audio (it unpacks $s/<category>/"
              "<recording>.wav) and cp data/raw/inatsounds/$s.json.tar.gz data/raw/inatsounds-audio/")


def inat_audio_root() -> Path:
    """Default folder of the iNatSounds audio: ``data/raw/inatsounds-audio`` (``<split>.json`` + audio)."""
    return paths.data_dir() / "raw" / "inatsounds-audio"


def _inat_json(root: Path, split: str) -> Path:
    """``root/<split>.json`` or ``root/<split>.json.tar.gz``; DataError naming the file when neither exists."""
    for name in (f"{split}.json", f"{split}.json.tar.gz"):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root / (split + '.json')}: missing (no {split}.json or {split}.json.tar.gz "
                    "in the iNatSounds folder)")


def _subset(df: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, a seeded random subset kept in table order (all rows when ``n`` is None)."""
    if n is None or len(df) <= n:
        return df
    keep = np.sort(np.random.default_rng(seed).choice(len(df), int(n), replace=False))
    return df.iloc[keep].reset_index(drop=True)


def prepare_inat(root=None, spec_cfg: spec.SpecConfig | None = None, splits: Sequence[str] = INAT_SPLITS,
                 progress: bool = True, device=None, max_per_split: int | dict | None = None,
                 subset_seed: int = 0) -> AudioSplits:
    """Real iNatSounds audio in its release layout -> AudioSplits (``source="inatsounds"``) with a cache per split.

    ``root`` (default :func:`inat_audio_root`) holds ``<split>.json`` (or ``.json.tar.gz``, COCO-style, read by
    :func:`soundloc.data.inat.load_inat`) and the audio at ``root/<file_name>``. Species: the categories of
    the recordings kept (all splits), in category-id order, class index = position (ids need not be
    contiguous: ``AudioSplits.category_ids`` maps back). ``max_per_split`` (int, or {split: int}) keeps a
    seeded random subset of each split (``subset_seed``), for CPU-sized runs. Caches live under
    ``paths.cache_dir("spectrograms", "inatsounds-<key>", split)``, the key hashing the json contents, the
    subset and the image config. Recordings whose audio file is missing, or that give no image (unreadable,
    too short), are dropped and counted in ``AudioSplits.skipped`` (printed when ``progress``); a split with
    none of its audio present is a DataError naming an expected file.
    """
    spec_cfg = spec_cfg or spec.SpecConfig(small=True)
    root = Path(root).expanduser() if root is not None else inat_audio_root()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder (the iNatSounds audio folder)")
    files = {s: _inat_json(root, s) for s in splits}  # every missing json reported before any work
    limit = {s: (max_per_split.get(s) if isinstance(max_per_split, dict) else max_per_split) for s in splits}
    digests = {s: pooch.file_hash(str(f), alg="sha1") for s, f in files.items()}
    key = digest({"inat": digests, "subset": {s: limit[s] for s in splits}, "subset_seed": subset_seed,
                   "image": spec_cfg.image_key()})
    base = paths.cache_dir("spectrograms", f"inatsounds-{key}")
    raw, invalid = {}, {}
    for s, f in files.items():  # the parsed table is cached (parquet) only for large files, where parsing is slow
        df = load_inat(f, split=s, on_invalid="skip", cache=f.stat().st_size > (1 << 20))
        raw[s] = _subset(df, limit[s], subset_seed)
        # rows with bad ids / coordinates / dates, counted when the whole file is used (0 when read from cache)
        invalid[s] = df.attrs["skip_report"].skipped if len(raw[s]) == len(df) else 0
    cats = (pd.concat([raw[s][["category_id", "species"]] for s in splits]).dropna(subset=["category_id"])
            .astype({"category_id": np.int64}).drop_duplicates().sort_values("category_id", kind="stable"))
    if cats["category_id"].duplicated().any():
        bad = cats.loc[cats["category_id"].duplicated(keep=False)].head(2)
        raise DataError(f"{root}: category id {bad['category_id'].iloc[0]} has two names across the split files: "
                        f"{list(bad['species'])}")
    if cats.empty:
        raise DataError(f"{files[splits[0]]}: no annotated recordings")
    ids = tuple(int(i) for i in cats["category_id"])
    tables, caches, skipped = {}, {}, {}
    for s in splits:
        df = raw[s]
        df = df[df["category_id"].notna()].reset_index(drop=True)  # unannotated recordings cannot be trained on
        df["category_id"] = df["category_id"].astype(np.int64)
        df["filepath"] = [str(root / p) for p in df["path"]]
        present = np.fromiter((os.path.isfile(p) for p in df["filepath"]), bool, len(df))
        if len(df) and not present.any():
            raise DataError(f"{df['filepath'].iloc[0]}: missing, as is every audio file of {files[s].name} "
                            f"({len(df)} recordings); the audio is not under {root}")
        cache = spec.SpectrogramCache(base / s, spec_cfg, device=device)
        rep = cache.build(zip(df["audio_id"][present], df["filepath"][present]), progress=progress)
        rep.total += int((~present).sum())
        for a, p in zip(df["audio_id"][~present], df["filepath"][~present]):  # not cached: may appear later
            rep.add("missing", f"{a}: missing: {p}: no such file")
        for reason, n in (("unannotated", len(raw[s]) - len(df)), ("invalid row", invalid[s])):
            if n:
                rep.total += n
                rep.skipped[reason] += n
        keep = df["audio_id"].isin(set(cache.ids())).to_numpy()
        if progress and rep.n_skipped:
            print(f"iNatSounds {s}: {rep.n_skipped} of {rep.total} recordings are left out ({rep})")
        tables[s], caches[s], skipped[s] = df[keep].reset_index(drop=True), cache, rep
    return AudioSplits(None, spec_cfg, root, tables, caches, list(cats["species"]), key, skipped,
                   source="inatsounds", category_ids=ids)


DATA_SOURCES = {"sim": "SimSounds, simulated", "inat": "iNatSounds audio, real"}  # a chapter's DATA values
_DATA_HELP = "use " + " or ".join(f"{k!r} ({v})" for k, v in DATA_SOURCES.items())


def chapter_data(data: str, small: bool, world_seed: int = 0, inat_root=None, inat_max: int | None = None,
                 progress: bool = True, device=None) -> AudioSplits:
    """A chapter's ``DATA`` parameter -> AudioSplits: "sim" = the SimSounds world (small or large preset, ``world_seed``);
    "inat" = real iNatSounds audio at ``inat_root`` (default :func:`inat_audio_root`), at most ``inat_max``
    recordings per split (None: the small world's split sizes when ``small``, else all).

    ValueError for another ``data``; DataError naming what is missing, and how to get it, when the audio is absent.
    """
    small_cfg = simlib.SimConfig.small(world_seed)
    spec_cfg = spec.SpecConfig(small=small)
    if data == "sim":
        return prepare_sim(small_cfg if small else simlib.SimConfig.large(world_seed), spec_cfg, progress=progress,
                           device=device)
    if data != "inat":
        raise ValueError(f"DATA={data!r}: {_DATA_HELP}")
    cap = inat_max if inat_max is not None else (
        {s: small_cfg.split_size(s) for s in INAT_SPLITS} if small else None)
    try:
        return prepare_inat(inat_root, spec_cfg, progress=progress, device=device, max_per_split=cap)
    except (DataError, FileNotFoundError) as e:
        raise DataError(f"{e}; to get the iNatSounds audio, {INAT_HOWTO}") from e


def notebook_data(data: str, small: bool, world_seed: int = 0, inat_root=None, inat_max: int | None = None) -> AudioSplits:
    """:func:`chapter_data` for a chapter's parameters: an unknown ``DATA`` or absent audio -> ``book.ParameterError``."""
    if data not in DATA_SOURCES:
        raise ParameterError(f"parameter DATA={data!r}: {_DATA_HELP}")
    try:
        return chapter_data(data, small, world_seed, inat_root, inat_max)
    except DataError as e:
        raise ParameterError(f"DATA={data!r}: {e}") from None
