"""Loaders in the official formats, on the real files and on hand-made bad inputs."""
import json

import numpy as np
import pandas as pd
import pytest

from soundloc.data import DataError, load_gold, load_inat, load_xcdc, read_locations
from soundloc.data.validate import week_of_year48


def test_real_inat_test_set(mirror):
    df = load_inat()
    assert len(df) == 49527 and df.audio_id.is_unique
    assert df.lat.between(-90, 90).all() and df.week.between(1, 48).all()
    assert set(df.supercategory) == {"Aves", "Insecta", "Amphibia", "Mammalia", "Reptilia"}
    assert df.audio_id.iloc[0] == "6f1fc127-8569-4310-b023-5d7fe65d4461" and df.species.iloc[0] == "Petrochelidon pyrrhonota"
    gold = load_gold("inat")
    m = df.merge(gold, on="audio_id", suffixes=("", "_g"))
    assert len(m) == len(df) and np.allclose(m.lat, m.lat_g) and np.allclose(m.lon, m.lon_g)


def test_real_xcdc(mirror):
    x = load_xcdc()
    assert len(x) == 576 and x.audio_id.is_unique
    assert x.n_species.between(10, 36).all()
    assert x.loc[x.audio_id == "894098", "species"].iloc[0][:2] == ["Cyanistes caeruleus", "Corvus corone"]
    assert x.duration.iloc[0] == 185.0  # "3:05"


def test_week_of_year48():
    w = week_of_year48(pd.Series(["2023-01-01", "2023-01-08", "2023-01-31", "2023-02-01", "2023-12-31"]))
    assert list(w) == [1, 2, 4, 5, 48]


def _coco(tmp_path, audio, name="a.json"):
    d = {"audio": audio, "annotations": [{"id": a["id"], "audio_id": a["id"], "category_id": 0} for a in audio],
         "categories": [{"id": 0, "name": "Turdus merula", "common_name": "Eurasian Blackbird", "supercategory": "Aves"}]}
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def _rec(i, lat=10.0, lon=20.0, date="2023-05-02T07:00:00+02:00", stem=None):
    return {"id": i, "file_name": f"test/x/{stem or i}.wav", "duration": 5.0, "date": date, "latitude": lat,
            "longitude": lon, "location_uncertainty": 10}


@pytest.mark.parametrize("bad,msg", [
    (_rec(2, lat=float("nan")), "row 2 .*NaN or non-numeric coordinate"),
    (_rec(2, lat=95.0), "row 2 .*latitude outside"),
    (_rec(2, lon=-181.0), "row 2 .*longitude outside"),
    (_rec(2, stem="1"), "row 2 .*duplicate id"),
    (_rec(2, date="05/02/2023"), "row 2 .*date not YYYY-MM-DD"),
])
def test_inat_bad_rows_name_the_row(tmp_path, bad, msg):
    p = _coco(tmp_path, [_rec(1), bad, _rec(3)])
    with pytest.raises(DataError, match=msg) as e:
        load_inat(p, cache=False)
    assert str(p) in str(e.value)
    df = load_inat(p, on_invalid="skip", cache=False)
    assert list(df.audio_id) == ["1", "3"]
    rep = df.attrs["skip_report"]
    assert rep.skipped == 1 and "skipped 1 of 3" in str(rep)


def test_inat_missing_key(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(json.dumps({"audio": [], "annotations": []}))
    with pytest.raises(DataError, match="missing top-level key 'categories'"):
        load_inat(p, cache=False)
    r = _rec(1)
    del r["latitude"]
    with pytest.raises(DataError, match="lack key 'latitude'"):
        load_inat(_coco(tmp_path, [r]), cache=False)


def test_inat_parses_local_date(tmp_path):
    df = load_inat(_coco(tmp_path, [_rec(1, date="2023-07-28T23:30:00-06:00"), _rec(2, date="2023-07-08")]), cache=False)
    assert list(df.date) == ["2023-07-28", "2023-07-08"] and list(df.week) == [28, 26]
    assert df.time.iloc[0] == "23:30:00" and pd.isna(df.time.iloc[1])


def test_xcdc_bad_inputs(tmp_path, mirror):
    raw = pd.read_csv(mirror / "xcdc" / "xcdc_recordings.csv", dtype=str).head(5)
    p = tmp_path / "x.csv"
    raw.drop(columns=["latitude"]).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['latitude'\]"):
        load_xcdc(p)
    b = raw.copy()
    b.loc[2, "all_scientific"] = "['Parus major', "
    b.to_csv(p, index=False)
    with pytest.raises(DataError, match="row 4: all_scientific is not a Python list literal"):
        load_xcdc(p)
    b = raw.copy()
    b.loc[1, "audio_id"] = b.loc[0, "audio_id"]
    b.to_csv(p, index=False)
    with pytest.raises(DataError, match="row 3 .*duplicate id"):
        load_xcdc(p)
    assert len(load_xcdc(p, on_invalid="skip")) == 4
    b.loc[3, "all_scientific"] = "Parus major"  # after a skipped row: still named by its own row (header = row 1)
    b.to_csv(p, index=False)
    with pytest.raises(DataError, match="row 5: all_scientific is not a Python list literal"):
        load_xcdc(p, on_invalid="skip")


def test_gold_csv_validation(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("audio_id,latitude,longitude\na,10,20\nb,,20\n")
    with pytest.raises(DataError, match="g.csv: row 3 .*NaN"):
        read_locations(p)
    p.write_text("audio_id,lat,lon\na,10,20\n")
    with pytest.raises(DataError, match="missing column"):
        read_locations(p)
