# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · The data
#
# Where were these recordings made? Before any model, we look at the **real** data the book
# is built on: the iNatSounds 2024 test set (49,527 recordings of birds, frogs, insects,
# mammals and reptiles with species, date and location) and XCDC (576 dawn choruses from
# Xeno-canto, each with every species heard). Both are read from their official releases
# (or a checksum-verified local mirror), validated row by row, and summarised here as dataset
# cards and world maps. The chapter ends with the naive baseline of the paper's Table 1:
# guess a random location where recordings are made.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run (this chapter is small either way)
SEED = 0  # seed for every random draw
DEVICE = "auto"  # unused here; kept so every chapter takes the same parameters
OUT = None  # output folder; None means figures/
NAIVE_SEEDS = 3  # repetitions of the naive baseline (the paper reports 3 runs)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from IPython.display import display

from soundloc import book, listen, maps, paper
from soundloc.audio import load_audio
from soundloc.baselines import naive_row
from soundloc.data import fetch, load_gold, load_inat, load_xcdc
from soundloc.detect import get_detector
from soundloc.metrics import errors_km
from soundloc.reference import geoclip_coordinates

ch = book.start("00", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, NAIVE_SEEDS=NAIVE_SEEDS,
                types={"NAIVE_SEEDS": int})  # this chapter reads only the real small files

# %% [markdown]
# ## Loading and validating
# Every loader checks ids, coordinates and dates and would stop with the offending row named.
# The annotations must agree with the benchmark's gold file exactly: same ids, same coordinates.

# %%
inat = load_inat()
xcdc = load_xcdc()
print(inat.attrs["skip_report"], xcdc.attrs["skip_report"], sep="\n")
for name, df in (("inat", inat), ("xcdc", xcdc)):
    err = errors_km(df[["audio_id", "lat", "lon"]], load_gold(name))
    assert err.max() < 1e-6, f"{name}: annotations and gold disagree"
    print(f"{name}: {len(df)} recordings match the benchmark gold file exactly")

# %% [markdown]
# ## iNatSounds test set: dataset card

# %%
g = inat.groupby("supercategory")
card = pd.DataFrame({
    "recordings": g.size(), "species": g["species"].nunique(),
    "median recordings / species": g["species"].agg(lambda s: s.value_counts().median()),
    "median duration (s)": g["duration"].median(), "total hours": g["duration"].sum() / 3600,
}).sort_values("recordings", ascending=False).reset_index()
card.loc[len(card)] = ["all", len(inat), inat.species.nunique(), inat.species.value_counts().median(),
                       inat.duration.median(), inat.duration.sum() / 3600]
ch.table(card, "inat_card", "iNatSounds 2024 test set (real): recordings and species per group")

# %%
fig, ax = plt.subplots(1, 3, figsize=(15, 3.5))
inat.species.value_counts().plot.hist(bins=np.logspace(0, 3, 31), ax=ax[0], logx=True, logy=True)
ax[0].set(title="recordings per species", xlabel="recordings")
inat.duration.clip(upper=120).plot.hist(bins=60, ax=ax[1])
ax[1].set(title="duration (clipped at 120 s)", xlabel="seconds")
inat.week.value_counts().sort_index().plot.bar(ax=ax[2], width=0.9)
ax[2].set(title="week of year (1-48, BirdNET weeks)", xlabel="week")
ax[2].set_xticks(range(0, 48, 4), range(1, 49, 4))
fig.suptitle("iNatSounds test set (real)")
ch.figure(fig, "inat_distributions")

# %% [markdown]
# ## Where the recordings are
# H3 hexagons at resolution 2 (about 86,700 km² each), coloured by recording count on a log
# scale. The sampling is human-biased: North America, Europe, Australia. The same map is saved
# as an interactive folium page.

# %%
res = 2
cells = maps.hexbin(inat.lat.to_numpy(), inat.lon.to_numpy(), res)
ax = maps.plot_hexbin(cells, "n", f"iNatSounds test recordings per H3 res-{res} cell (real)", log=True, label="recordings")
ch.figure(ax.figure, "inat_hexbin")
ch.map(maps.folium_hexbin(cells, "n", "iNatSounds test recordings per H3 cell (real)", log=True), "inat_hexbin")
cover = pd.DataFrame({"cells": [len(cells)], "top 10 % of cells hold (% of recordings)":
                      [100 * cells.n.iloc[: max(1, len(cells) // 10)].sum() / len(inat)]})
ch.table(cover, "inat_h3_cover", f"H3 res-{res} coverage of the iNatSounds test set (real)")

# %% [markdown]
# ## XCDC: dataset card and map

# %%
all_sp = pd.Series([s for lst in xcdc.species for s in lst])
xcard = pd.DataFrame([{
    "recordings": len(xcdc), "unique species": all_sp.nunique(),
    "species / recording (min)": xcdc.n_species.min(), "(median)": xcdc.n_species.median(),
    "(max)": xcdc.n_species.max(), "median duration (min)": xcdc.duration.median() / 60,
    "total hours": xcdc.duration.sum() / 3600,
    "years": f"{xcdc.date.str[:4].min()}-{xcdc.date.str[:4].max()}",
}])
ch.table(xcard, "xcdc_card", "XCDC dawn choruses (real)")
xcells = maps.hexbin(xcdc.lat.to_numpy(), xcdc.lon.to_numpy(), 2)
ax = maps.plot_hexbin(xcells, "n", "XCDC recordings per H3 res-2 cell (real)", cmap="magma")
ch.figure(ax.figure, "xcdc_hexbin")
ch.map(maps.folium_hexbin(xcells, "n", "XCDC recordings per H3 cell (real)", cmap="plasma"), "xcdc_hexbin")

# %% [markdown]
# ## What the models hear: spectrograms
# Two real recordings through the paper's exact spectrogram (22.05 kHz, Hann 512 / hop 128 /
# FFT 1024, 128 HTK mel bands, dB clipped to [-100, 0] as uint8, high frequencies on top): the
# Seattle soundscape (Xeno-canto XC563936) and a Jura forest clip at 05:15 on 22 May 2019.
# Each image is 128 mel bands by one frame every 128 samples (5.8 ms), drawn in seconds and Hz with
# a dB colourbar; models see 512-frame windows (about 3 s) cut from them. The lanes on top are
# BirdNET's 3 s detections (chapter 08), one per species. Play the clips below the figure.

# %%
clips = {"Seattle soundscape, XC563936 (real, first 12 s)": fetch("audio/XC563936_soundscape.mp3"),
         "Jura forest, 2019-05-22 05:15 (real)": fetch("audio/jura_2019-05-22/S4A03895_20190522_051500.wav")}
fig = plt.figure(figsize=(14, 9))
for sub, (title, path) in zip(fig.subfigures(len(clips), 1), clips.items()):
    listen.plot_listen(load_audio(path)[: 12 * 22050], title, get_detector().detect(path).table(0.1), fig=sub)
ch.figure(fig, "spectrograms")

# %%
display(*(listen.player(path, 0, 12) for path in clips.values()))

# %% [markdown]
# ## The naive baseline
# Predict, for every recording, a location drawn at random from a reference set of places
# where recordings are made. The paper draws from the iNatSounds *training* locations, which
# we do not have here; we use two stand-ins: the test set itself with the query left out
# (same distribution as the paper's, slightly optimistic), and GeoCLIP's bundled 100K photo
# coordinates on land (an independent source, differently biased). For XCDC the reference
# is the iNatSounds test locations.

# %%
true_inat = inat[["lat", "lon"]].to_numpy()
true_xcdc = xcdc[["lat", "lon"]].to_numpy()
geoclip_ref = geoclip_coordinates(land_only=True)
runs = {  # (dataset, method) -> (truth, reference, leave the query out)
    ("iNatSounds test", "Naive: test set, query left out"): (true_inat, true_inat, True),
    ("iNatSounds test", "Naive: GeoCLIP 100K photos"): (true_inat, geoclip_ref, False),
    ("XCDC", "Naive: iNatSounds test locations"): (true_xcdc, true_inat, False),
}
seeds = range(ch.seed, ch.seed + NAIVE_SEEDS)  # chapter 05 draws its XCDC row with the same seeds
rows = [{"dataset": d, "data": "real", **naive_row(m, t, ref, seeds, exclude_self=ex)} for (d, m), (t, ref, ex) in runs.items()]
naive = pd.DataFrame(rows).round(2)
naive["median_km ± sd"] = [f"{a:.0f} ± {b:.0f}" for a, b in zip(naive.median_km, naive["median_km sd"])]
naive = paper.beside_paper(naive, {**paper.TABLE1, **{"XCDC " + k: v for k, v in paper.TABLE_A2.items()}}, {
    "Naive: test set, query left out": "Naive (random train location)",
    "Naive: GeoCLIP 100K photos": "Naive (random train location)",
    "Naive: iNatSounds test locations": "XCDC Naive (random train location)",
})
ch.table(naive.drop(columns=["street_%", "street_% sd"]), "naive",
         f"Naive baseline (real data): each of {NAIVE_SEEDS} draws scored, scores averaged (sd over draws), beside the paper's Table 1 / A2")

# %% [markdown]
# **Reading.** On iNatSounds the naive guess lands about 7,600-7,950 km away whichever reference
# we draw from, within 500 km of the paper's 7,475 km, with the same 1 % region and 20-22 %
# continent accuracy: a random location from a human-biased set is a poor but not hopeless
# guess, because recordings cluster in North America, Europe and Australia. The test set drawn
# against itself is slightly *worse* than the paper's draw from the 137K training locations,
# so the training distribution must be a little more concentrated than the test set's.
# For XCDC our naive median (about 7,650 km, 5.8 % country) is far better than the paper's
# (9,915 km, 0.5 % country). XCDC sits where iNatSounds is dense (Europe, the Americas), so a
# random iNatSounds location should do at least this well; the paper's 0.5 % country accuracy
# is even below what a uniform guess on land gives (a 750 km disc is about 1.2 % of the land),
# so we cannot reproduce that row and flag it rather than match it. These numbers are the
# floor every later chapter must beat.
