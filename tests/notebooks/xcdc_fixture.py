"""The checks of chapter 05's audio branch on the ``xcdc_release_tar`` fixture (tests/conftest.py)."""
import json

import numpy as np
import pandas as pd
import pytest

from soundloc.data import load_xcdc
from soundloc.sphere import haversine

from conftest import XCDC_IDS as IDS


def check_audio_branch(out, nb):
    """Chapter 05's audio-branch tables and printed skip report, from a run on :func:`xcdc_audio_fixture`."""
    per = pd.read_csv(out / "05_audio_per_recording.csv", dtype={"audio_id": str})
    assert list(per.audio_id) == IDS  # the unreadable file is skipped (and counted in the printed report)
    text = "".join("".join(o.get("text", "")) for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", []))
    assert "1 skipped (unreadable: 1)" in text and "SKIPPED the XCDC audio branch" not in text
    meta = load_xcdc().set_index("audio_id").loc[IDS]
    np.testing.assert_allclose(per.error_km, haversine(per.pred_lat, per.pred_lon, meta.lat.to_numpy(), meta.lon.to_numpy()))
    tab = pd.read_csv(out / "05_audio_ranges.csv").set_index("method")
    row = tab.loc["XCDC audio, BirdNET detections -> ranges (real)"]
    assert row.n == 3 and row.median_km == pytest.approx(per.error_km.median()) and row["paper median_km"] == 1097
    assert tab.loc["Ranges: true species, with date (same recordings)", "paper median_km"] == 449
    det = pd.read_csv(out / "05_audio_detection.csv").iloc[0]
    assert det.recordings == 3 and det["recall_% (pooled)"] == pytest.approx(100 * per.n_hit.sum() / per.n_annotated.sum())
    assert det["precision_% (mean per recording)"] == pytest.approx(100 * per.precision.mean())

