"""The iNatSounds-layout fixture of chapters 01 and 03 (``DATA="inat"``) and what their tests check of every file.

It is an iNatSounds-layout folder made from the SMALL SimSounds world (SimSounds is written in the
iNatSounds format): its ``<split>.json`` files hold a few recordings from four weeks (few range-map
weeks to compute), without SimSounds' extra keys, with category ids made non-contiguous (3 c + 7), one
test recording naming an audio file that is not there, and the world's audio folders linked in.
"""
import json
from pathlib import Path

import pandas as pd

SIZES = {"train": 128, "val": 32, "test": 32}
WEEKS = (8, 20, 32, 44)
SIM_KEYS = ("all_species", "background_species", "snr_db", "background_snr_db", "simulated")


def _cid(c: int) -> int:
    return 3 * c + 7


def write_split(world: Path, dst: Path, split: str, n: int, missing: int = 0) -> None:
    from soundloc.data.validate import week_of_year48

    d = json.loads((world / f"{split}.json").read_text())
    weeks = week_of_year48(pd.Series([a["date"][:10] for a in d["audio"]])).to_numpy()
    audio = [{k: v for k, v in a.items() if k not in SIM_KEYS} for a, w in zip(d["audio"], weeks) if w in WEEKS][:n]
    keep = {a["id"] for a in audio}
    for a in audio[:missing]:  # named in the json, never downloaded
        a["file_name"] = f"{split}/not-downloaded/{Path(a['file_name']).name}"
    ann = [{**a, "category_id": _cid(a["category_id"])} for a in d["annotations"] if a["audio_id"] in keep]
    out = {"info": {"description": "soundloc test fixture in the iNatSounds layout"}, "audio": audio,
           "annotations": ann, "categories": [{**c, "id": _cid(c["id"])} for c in d["categories"]],
           "licenses": d["licenses"]}
    (dst / f"{split}.json").write_text(json.dumps(out))




def written(out: Path, prefix: str) -> list[Path]:
    return [p for p in out.glob(f"{prefix}_*") if p.suffix in (".csv", ".md", ".html")]


def no_simulated_label(files: list[Path]) -> None:
    bad = [p.name for p in files if "simulated" in p.read_text().lower()]
    assert not bad, f"tables/maps of real data labelled simulated: {bad}"
