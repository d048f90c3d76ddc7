"""Figures say what they show: units on axes, bars from 0 for categories, no gaps between grid cells."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from soundloc import aggregate as agg  # noqa: E402
from soundloc.locator import grid_step, plot_posterior  # noqa: E402
from soundloc.spectrogram import level_to_db  # noqa: E402


def test_levels_map_back_to_db():
    assert level_to_db(0) == -100 and level_to_db(255) == 0  # the image's dB scale (chapter 00's spectrograms: test_listen)


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
