"""soundloc.listen: the embedded excerpt, the spectrogram's units and the species lanes."""
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from soundloc import listen
from soundloc.spectrogram import DEFAULT, hz_to_mel


@pytest.fixture
def tone(tmp_path):
    """4 s of a 2 kHz sine at half full scale, 22.05 kHz WAV."""
    sr = DEFAULT.sr
    t = np.arange(4 * sr) / sr
    p = tmp_path / "tone.wav"
    sf.write(p, 0.5 * np.sin(2 * np.pi * 2000 * t), sr)
    return p


def test_spectrogram_peak_sits_at_the_tone_in_hz_and_db(tone):
    db = listen.image_db(listen.excerpt(tone))
    assert db.shape[0] == 128 and db.min() >= -100 and db.max() <= 0
    edges = np.linspace(hz_to_mel(DEFAULT.fmin), hz_to_mel(DEFAULT.fmax), 130)  # row k is centred at edges[k + 1]
    peak = int(np.argmax(db[:, db.shape[1] // 2]))
    assert abs(edges[peak + 1] - hz_to_mel(2000)) < 2 * (edges[1] - edges[0])  # row 0 is the lowest band
    assert db[peak].mean() > -20 and db[5].mean() < -80  # loud at 2 kHz, near the floor at ~100 Hz


def test_excerpt_mp3_is_the_asked_span(tone):
    out = listen.excerpt_mp3(tone, start_s=1.0, seconds=2.0)
    info = sf.info(out)
    assert out.suffix == ".mp3" and info.duration == pytest.approx(2.0, abs=0.1)
    assert out.stat().st_size < 40_000  # 2 s: tens of KB, not a WAV's 88 KB
    assert "audio/mpeg" in listen.player(tone, 1.0, 2.0)._repr_html_()
    with pytest.raises(ValueError, match="tone.wav"):
        listen.excerpt(tone, start_s=-1)


def test_lanes_keep_the_best_species_first_and_drop_weak_windows():
    t = pd.DataFrame({"start_s": [0, 3, 0, 6, 9], "end_s": [3, 6, 3, 9, 12],
                      "common_name": ["Robin", "Robin", "Wren", "Wren", "Owl"], "score": [0.4, 0.6, 0.9, 0.2, 0.31]})
    lanes = listen.detection_lanes(t, min_score=0.3, max_species=2)
    assert lanes.common_name.tolist() == ["Wren", "Robin", "Robin"] and lanes.lane.tolist() == [0, 1, 1]


def test_plot_marks_species_on_the_time_axis(tone):
    t = pd.DataFrame({"start_s": [0.0, 3.0], "end_s": [3.0, 6.0], "common_name": ["Wren", "Owl"], "score": [0.9, 0.8]})
    fig = listen.plot_listen(listen.excerpt(tone), "tone", t, start_s=10.0)  # 4 s drawn at 10-14 s: no window overlaps
    top, ax = fig.axes[:2]
    assert ax.get_xlim() == pytest.approx((10.0, 14.0)) and [x.get_text() for x in top.get_yticklabels()] == ["no species >= 0.3"]
    fig = listen.plot_listen(listen.excerpt(tone), "tone", t, start_s=2.0)
    top, ax = fig.axes[:2]
    assert [x.get_text() for x in top.get_yticklabels()] == ["Wren", "Owl"]
    assert "Hz" in ax.get_ylabel() and "s" in ax.get_xlabel() and "dB" in fig.axes[2].get_ylabel()
    assert [x.get_text() for x in ax.get_yticklabels()][:3] == ["250", "500", "1,000"]
