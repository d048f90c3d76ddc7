"""Chapter 05's XCDC-audio branch (soundloc.locator.locate_annotated_audio) on a fixture in the release's format:
xcdc.tar.gz holding xcdc/<audio_id>.wav for real XCDC ids, with real audio (slices of the Seattle soundscape)."""

import numpy as np
import pandas as pd
import pytest

from soundloc.data import load_xcdc, xcdc_audio
from soundloc.sphere import haversine
from soundloc.locator import LocateOptions, locate_annotated_audio

from conftest import XCDC_BAD as BAD, XCDC_IDS as IDS

OPTS = LocateOptions(gallery="land2")


@pytest.mark.slow
def test_locate_annotated_audio_on_release_fixture(xcdc_release_tar, one_thread):
    meta = load_xcdc()
    rows = xcdc_audio(xcdc_release_tar, meta)
    assert sorted(rows.audio_id) == sorted(IDS + [BAD]) and rows.attrs["skip_report"].skipped == len(meta) - 4
    out, rep = locate_annotated_audio(rows, OPTS, progress=False)
    # the unreadable file is counted, not silently dropped
    assert rep.total == 4 and rep.n_skipped == 1 and rep.n_ok == 3 and BAD not in set(out.audio_id)
    assert list(out.audio_id) == IDS
    m = meta.set_index("audio_id").loc[IDS]
    np.testing.assert_allclose(out.error_km, haversine(out.pred_lat, out.pred_lon, m.lat.to_numpy(), m.lon.to_numpy()))
    assert (out.n_annotated >= 1).all() and (out.n_annotated <= m.species.map(lambda s: len(set(s))).to_numpy()).all()
    # BirdNET hears the Seattle birds (e.g. Junco hyemalis) in the real audio: detections place it in North America
    assert (out.n_detected > 0).all() and any("Junco hyemalis" in d for d in out.detected)
    assert (out.pred_lon < -60).all() and (out.pred_lat > 20).all()
    assert ((out.recall >= 0) & (out.recall <= 1) & (out.precision >= 0) & (out.precision <= 1)).all()
    assert (out.n_hit <= np.minimum(out.n_annotated, out.n_detected)).all()
    # recall/precision against the annotations: recomputed from the names (plain names suffice for these species)
    for r, ann in zip(out.itertuples(), m.species):
        det = set(r.detected.split("; "))
        assert r.n_hit >= len(det & set(ann)) and r.recall == pytest.approx(r.n_hit / r.n_annotated)
    # a rerun reads the cached detections and gives the same table
    again, _ = locate_annotated_audio(rows, OPTS, progress=False)
    pd.testing.assert_frame_equal(out, again)
