"""Figures say what they show: units on axes, bars from 0 for categories, no gaps between grid cells."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from soundloc import aggregate as agg  # noqa: E402
from soundloc.locate import grid_step, plot_posterior  # noqa: E402
from soundloc.spectrogram import DEFAULT, hz_to_mel, level_to_db, mel_band_of_hz, show_spectrogram  # noqa: E402


def test_spectrogram_axes_in_hz_and_db():
    edges = np.linspace(hz_to_mel(DEFAULT.fmin), hz_to_mel(DEFAULT.fmax), DEFAULT.n_mels + 2)
    centres_hz = 700 * (10 ** (edges[1:-1] / 2595) - 1)
    np.testing.assert_allclose(mel_band_of_hz(centres_hz), np.arange(DEFAULT.n_mels), atol=1e-9)
    assert level_to_db(0) == -100 and level_to_db(255) == 0
    fig, ax = plt.subplots()
    img = np.tile(np.arange(128, dtype=np.uint8)[::-1, None] * 2, (1, 100))  # row 0 = highest band = loudest here
    im = show_spectrogram(ax, img)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["250", "500", "1,000", "2,000", "4,000", "8,000"]
    assert "Hz" in ax.get_ylabel() and ax.get_xlabel() == "time (s)"
    assert ax.get_xlim()[1] == pytest.approx(100 * DEFAULT.hop / DEFAULT.sr)
    assert im.get_clim() == (-100, 0)
    plt.close(fig)


def test_error_vs_grouping_has_two_panels_of_bars_from_zero():
    ours = pd.DataFrame({"method": ["No grouping", "H3 res 5", "H3 res 6 + week"], "median_km": [988.0, 581.0, 869.0],
                         "region_%": [9.4, 17.9, 11.5]})
    fig = agg.error_vs_grouping_figure(ours, "t", {"No grouping": (1082, 0, 17.2), "H3 res 6 + week": (890, 0, 19.9)})
    assert len(fig.axes) == 2  # no twin axis
    for ax in fig.axes:
        assert ax.get_ylim()[0] == 0
        assert not [ln for ln in ax.get_lines() if len(ln.get_xdata()) > 1]  # nothing joins categories
    heights = [round(b.get_height(), 1) for b in fig.axes[1].containers[0]]
    assert heights == [9.4, 17.9, 11.5]
    plt.close(fig)


def test_posterior_cells_tile_a_regular_grid():
    lat, lon = np.meshgrid(np.arange(-10, 11, 2.0), np.arange(0, 21, 2.0), indexing="ij")
    pts = np.c_[lat.ravel(), lon.ravel()]
    assert grid_step(pts) == 2.0
    assert grid_step(pts + np.random.default_rng(0).normal(0, 0.3, pts.shape)) is None
    post = np.exp(-((pts - [0, 10]) ** 2).sum(1) / 50)
    ax = plot_posterior(pts, post / post.sum(), "t")
    coll = [c for c in ax.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert len(coll) == 1
    boxes = np.array([p.vertices for p in coll[0].get_paths()])
    widths = boxes[:, :, 0].max(1) - boxes[:, :, 0].min(1)
    np.testing.assert_allclose(widths, 2.0)  # each cell as wide as the grid step: neighbours touch, no white lines
    plt.close(ax.figure)
