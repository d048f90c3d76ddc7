"""soundloc.data.validate.read_rows: the one CSV row check behind batch, claims, sites and species-locate."""
from __future__ import annotations

import pytest

from soundloc.data.validate import DataError, raise_first, read_rows

KINDS = {"lat": "lat", "lon": "lon", "date": "date"}


def _csv(tmp_path, text):
    p = tmp_path / "rows.csv"
    p.write_text(text)
    return p


def test_each_bad_row_is_named_by_file_and_spreadsheet_row_good_rows_kept(tmp_path):
    p = _csv(tmp_path, "id,lat,lon,date,note\n"
                       "a, 10 ,20,2020-03-15,x\n"   # row 2: good (values stripped)
                       ",10,20,,\n"                  # row 3: empty required id
                       "b,95,-181,,\n"               # row 4: both coordinates out of range
                       "c,north,20,,\n"              # row 5: not a number
                       "d,1,2,2020-02-30,\n"         # row 6: impossible date
                       "a,1,2,,\n"                   # row 7: repeats row 2's id
                       "e,-90,180,,\n")              # row 8: good (range ends included, empty date allowed)
    good, errors = read_rows(p, ("id", "lat", "lon"), ("date",), KINDS, unique="id")
    assert list(good.columns) == ["id", "lat", "lon", "date"]  # columns not asked for are dropped
    assert good.to_dict("list") == {"id": ["a", "e"], "lat": ["10", "-90"], "lon": ["20", "180"],
                                    "date": ["2020-03-15", ""]}
    assert errors == [f"{p}: row 3: empty id",
                      f"{p}: row 4: lat '95' outside [-90, 90]; lon '-181' outside [-180, 180]",
                      f"{p}: row 5: lat 'north' is not a number",
                      f"{p}: row 6: date '2020-02-30' is not YYYY-MM-DD",
                      f"{p}: row 7: duplicate id 'a' (first on row 2)"]
    with pytest.raises(DataError) as ei:
        raise_first(errors)
    assert str(ei.value) == f"{p}: row 3: empty id (and 4 more bad rows)"
    raise_first([])  # no errors: nothing raised


def test_missing_column_is_row_1_and_raises(tmp_path):
    p = _csv(tmp_path, "id,latitude\na,1\n")
    with pytest.raises(DataError) as ei:
        read_rows(p, ("id", "lat", "lon"), ("date",), KINDS)
    assert str(ei.value) == f"{p}: row 1: missing column(s) ['lat', 'lon']; found ['id', 'latitude']"


def test_fallback_may_be_empty_and_datetime(tmp_path):
    p = _csv(tmp_path, "path,id,when,species\nx.wav,,2020-05-15 06:00,\ny.wav,x.wav,2020-05-150,a\n")
    good, errors = read_rows(p, ("path", "species"), ("id", "when"), {"when": "datetime"}, unique="id",
                             may_be_empty=("species",), fallback={"id": "path"})
    assert good.to_dict("records") == [{"path": "x.wav", "id": "x.wav", "when": "2020-05-15 06:00", "species": ""}]
    assert errors == [f"{p}: row 3: when '2020-05-150' is not YYYY-MM-DD; duplicate id 'x.wav' (first on row 2)"]


@pytest.mark.parametrize("data,msg", [
    (b"", "empty file (no header row)"),
    (b"id,lat,lon\n", "no rows under the header"),
    (b"\xff\xfe\x00garbage", "not a text CSV (byte 0 is not UTF-8)"),
    (b'id,lat,lon\na,1,2\n"b,1,2\n', "not a readable CSV (Error tokenizing data. C error: EOF inside string starting at row 2)"),
], ids=["empty", "header-only", "binary", "open-quote"])
def test_a_file_that_is_no_table_is_one_error_naming_it(tmp_path, data, msg):
    p = tmp_path / "rows.csv"
    p.write_bytes(data)
    with pytest.raises(DataError) as ei:
        read_rows(p, ("id", "lat", "lon"), (), KINDS)
    assert str(ei.value) == f"{p}: {msg}"
