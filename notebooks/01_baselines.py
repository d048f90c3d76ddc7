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
# # 01 · Baselines (simulated: SimSounds)
#
# How well do the simple answers to "where was this recorded?" work? This chapter runs the
# baselines of the paper's Table 1 on **SimSounds**, the book's simulated world: synthetic
# species voices placed on real geography (species ranges from BirdNET's range model,
# recording locations from GeoCLIP's human-biased photo coordinates). Every number below is
# *simulated*. It is a test bed for the pipeline and for comparing methods with each other,
# never a reproduction of the paper's iNatSounds numbers, which are shown beside ours in
# separate columns for orientation only.
#
# The baselines:
# - **naive**: a random training location for every test recording;
# - **regression** of latitude/longitude with an MSE loss (on coordinates scaled to [-1, 1]) or
#   a haversine (great-circle distance) loss;
# - **H3 classification** over the training set's hexagons at resolution 0, 1 and 2, predicting
#   the centre of the most probable cell, and the **hierarchical** 0 -> 1 -> 2 decoding of the
#   three classifiers (paper A.5: a cell's score adds the log probabilities of its ancestors);
# - **species ranges**: a species classifier followed by BirdNET's range model at the
#   recording's week, with the top-1 predicted species, or all species weighted by the
#   classifier's probabilities. The annotated (true focal) species is shown as a reference.
#
# **On real iNatSounds audio.** With the audio downloaded and unpacked (README, "Full-size data
# and GPUs"), `python -m soundloc.runner 01 -p DATA inat -p INAT_ROOT /path/to/inatsounds` trains
# and evaluates the same baselines on it (`INAT_ROOT` holds `train/val/test.json` or `.json.tar.gz`
# and the audio they name; default `data/raw/inatsounds-audio`). SMALL mode takes a seeded subset
# of 3,000 / 500 / 500 recordings (`INAT_MAX` overrides; `-p SMALL False` uses all of them, on a
# GPU). Those outputs are labelled *real*, named `01_inat_*`, and sit beside the SimSounds ones.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run: frozen backbone + heads; False: the paper's recipe (fine-tune everything, GPU)
SEED = 0  # seed of every model's training and of the naive draws
DATA = "sim"  # "sim": SimSounds (simulated); "inat": real iNatSounds audio from INAT_ROOT
INAT_ROOT = None  # with DATA "inat": folder with <split>.json(.tar.gz) + audio; None means data/raw/inatsounds-audio
INAT_MAX = None  # with DATA "inat": recordings per split (seeded subset); None means 3,000/500/500 in SMALL mode, all otherwise
DEVICE = "auto"  # "auto" | "cpu" | "cuda"
OUT = None  # output folder; None means figures/
WORLD_SEED = 0  # which SimSounds world (shared with chapters 03-07)
MAP_RES = 2  # H3 resolution of the error map (the paper's Fig. 3 uses 2)

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from soundloc import book, datasets, maps, recipe, report, table1
from soundloc.metrics import paired_better, summary_table

ch = book.start("01", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, DATA=DATA, INAT_ROOT=INAT_ROOT,
                INAT_MAX=INAT_MAX, WORLD_SEED=WORLD_SEED, MAP_RES=MAP_RES,
                types={"DATA": str, "INAT_ROOT": (str, type(None)), "INAT_MAX": (int, type(None)), "WORLD_SEED": int,
                       "MAP_RES": int})

# %% [markdown]
# ## The simulated world
# Built once (about a minute on 2 CPU cores) and shared by every SimSounds chapter, together
# with one spectrogram cache per split. SMALL mode uses the small world (100 species, 3-6 s
# clips) and 112-pixel model inputs; otherwise the large world and 224-pixel inputs. With
# `DATA="inat"` the same cell reads the real iNatSounds audio instead (a subset in SMALL mode).

# %%
sim = datasets.notebook_data(DATA, SMALL, WORLD_SEED, INAT_ROOT, INAT_MAX)  # bad DATA / no audio: ParameterError
SIM, S, NAME = sim.label, sim.suffix, sim.name  # "simulated (SimSounds)" or "real (iNatSounds)"; column suffix
P = "" if sim.simulated else "inat_"  # real-data outputs are named 01_inat_*, beside the SimSounds ones
ch.table(sim.card(), "sim_card" if sim.simulated else "inat_card",
         f"{NAME} splits — {SIM}: recordings, species, durations")

# %%
fig = report.spectrogram_figure(sim, "train", n=4, seed=ch.seed,
                                  title=f"{NAME} training clips — {SIM}: focal species and week")
ch.figure(fig, "sim_spectrograms" if sim.simulated else "inat_spectrograms")

# %%
counts = sim.train.species.value_counts()
fig, ax = plt.subplots(figsize=(10, 3.2))
ax.bar(range(len(counts)), counts.to_numpy(), width=0.9)
ax.set(yscale="log", xlabel="focal species (rank)", ylabel="training recordings",
       title=f"Training recordings per focal species, {SIM}")
ch.figure(fig, "sim_species_counts" if sim.simulated else "inat_species_counts")

# %% [markdown]
# ## Training the baselines
# The paper starts every model from a MobileNetV3 pretrained for species classification on
# iNatSounds. Here the **species classifier plays that role**: a MobileNetV3 (Small in SMALL
# mode) is trained from scratch on the training split's focal species and becomes the
# backbone of every geolocation model. In SMALL mode the backbone is then **frozen**: every
# window of every recording is embedded once and each geolocation head (a linear layer) is
# trained on those embeddings (the trainer's fast path), which is what lets this chapter run
# on a laptop CPU. With `SMALL=False` every model is fine-tuned end to end as in the paper
# (MobileNetV3-Large, 224 px, 50 epochs of Nesterov SGD), on a GPU.
#
# Trained models are cached in a model zoo under `data/cache/models`, keyed by every config
# that determines their weights, so reruns and later chapters load them instead of training.
# Both regression heads start at the mean training location (zero weights): from a random
# start the haversine head can drift over a pole, where its longitude gradient vanishes, and
# stay there. Free parameters were chosen on the validation split, never on the test split:
# the heads' optimiser settings (AdamW, learning rate 1e-3), and the weight of the location prior
# in species-range geolocation (a smoothed density of the *training* locations, never of the
# test split), swept below. Predictions are made per recording by averaging the window outputs
# (probabilities, or unit vectors for regression).

# %%
cfg = recipe.baseline_config(ch)  # SMALL: frozen backbone + heads; otherwise the paper's recipe
res = table1.baseline_errors(sim, cfg, seed=SEED)
print(*res.notes, sep="\n")
ch.table(res.models_table(), P + "models", f"Models of this chapter — {SIM}: trained now or loaded from the zoo",
         floatfmt=".3g")
ch.table(res.range_sweep.drop(columns=["method"]), P + "range_settings_val",
         f"Species-range settings tried on the validation split, {SIM}; the lowest median wins")
rs = res.range_sweep.sort_values(["median_km", "region_%"], ascending=[True, False])
w, top = rs.prior_weight.iloc[0], res.range_sweep.prior_weight.max()
ties = rs[rs.median_km == rs.median_km.iloc[0]].prior_weight.tolist()
ch.reading(P + "range_reading", [
    f"The location-prior weight chosen on validation is {w:g} ({rs.median_km.iloc[0]:,.0f} km) on a grid up to {top:g}"
    + (": at the grid's top edge, so a larger weight might do better." if w == top else ", inside the grid.")
    + (f" Weights {', '.join(f'{x:g}' for x in ties)} tie on the median; the higher region accuracy decided." if len(ties) > 1 else "")])
pd.Series(res.seconds, name="seconds").round(1)

# %% [markdown]
# ## Table 1 on SimSounds
# Our numbers (columns marked *simulated*; *real* with `DATA="inat"`) beside the paper's Table 1
# on iNatSounds (columns marked *paper (iNatSounds)*). The paper has no res-1 row; its
# "annotated species" row uses SINR ranges, ours BirdNET's. Accuracies are percentages of the
# test split within 1 km (street), 25 km (city), 200 km (region), 750 km (country) and 2,500 km
# (continent). The 95 % intervals resample the test recordings: each SimSounds test clip is its own
# independent draw of place (from GeoCLIP's photo coordinates), week, species and audio, sharing no
# recording, recordist or site with another, so the recording is the unit. The places cluster in cities
# (the test split is not spatially disjoint from the training split), which is where the data come from,
# not a dependence between rows.

# %%
table = report.simulated_beside_paper(summary_table(res.errors, ci=True, seed=SEED), suffix=S)
ch.table(table, P + "baselines", f"Geolocation baselines on the {NAME} test split, {SIM}, 95 % bootstrap CIs over "
         "the test recordings, beside the paper's Table 1 (iNatSounds)")

# %% [markdown]
# ## Errors across scales
# The fraction of test recordings located within a given distance (the paper's Fig. 3, left);
# the table's accuracies are points on these curves.

# %%
ax = report.error_cdf_figure(res.errors, f"Geolocation error CDF, {NAME} test split, {SIM}")
ch.figure(ax.figure, P + "error_cdf")

# %% [markdown]
# ## Where the best method works
# The median error of the best method (lowest validation median among those that learn from
# audio) per H3 cell of the test recordings (the paper's Fig. 3, right). Cells with few recordings are
# noisy; the interactive map's tooltips give each cell's median.

# %%
best = res.best_on_val(table1.LEARNED)  # chosen on the validation split, drawn on the test split
cells = maps.hexbin(sim.test.lat.to_numpy(), sim.test.lon.to_numpy(), MAP_RES, res.errors[best], agg="median")
title = f"Median error (km) of '{best}' per H3 res-{MAP_RES} cell, {NAME} test, {SIM}"
ax = maps.plot_hexbin(cells, "value", title, label="median error (km)")
ch.figure(ax.figure, P + "error_map")
ch.map(maps.folium_hexbin(cells.rename(columns={"value": "median_km"}), "median_km", title), P + "error_map")
print(f"best learned method: {best}; {len(cells)} cells, {int((cells.n >= 5).sum())} with >= 5 recordings")

# %% [markdown]
# ## Checks
# The statements the reading below relies on, evaluated on this run's numbers. "Beats" means the paired
# bootstrap over the test recordings (95 %, `metrics.paired_better`) puts the difference on its side: a
# better point estimate inside the interval is a tie and the statement does not hold. Where a
# statement names a family's best member, that member is the one with the best *validation*
# median (or region accuracy): picking it on the test split would favour the family tested.

# %%
t = table.set_index("method")
reg = t["region_%" + S]
E, HIER = res.errors, "Classification hierarchical 0-1-2"
fam = {f: [m for m in t.index if m.startswith(f)] for f in ("Classification", "Regression", "Ranges: predicted")}
best_med = {f: res.best_on_val(ms) for f, ms in fam.items()}  # each family's best, chosen on validation
best_reg = {f: res.best_on_val(ms, "region") for f, ms in fam.items()}

# %%
checks = pd.DataFrame([
    ("every learned method beats the naive median", all(paired_better(E[m], E[table1.NAIVE], seed=SEED)
                                                        for m in table1.LEARNED)),
    ("haversine regression beats MSE regression (median)",
     paired_better(E["Regression (Haversine)"], E["Regression (Euclidean/MSE)"], seed=SEED)),
    ("hierarchical beats res 0 at region accuracy", paired_better(E[HIER], E["Classification res 0"], "region", seed=SEED)),
    ("hierarchical: region accuracy within 1 point of res 2 (or better), continent within 2 points of res 0",
     bool(reg[HIER] >= reg["Classification res 2"] - 1
          and t.loc[HIER, "continent_%" + S] >= t.loc["Classification res 0", "continent_%" + S] - 2)),
    ("classification beats regression (best validation median of each)",
     paired_better(E[best_med["Classification"]], E[best_med["Regression"]], seed=SEED)),
    ("species ranges beat classification at region accuracy (best on validation of each)",
     paired_better(E[best_reg["Ranges: predicted"]], E[best_reg["Classification"]], "region", seed=SEED)),
    ("annotated species beats predicted species (median)",
     paired_better(E["Ranges: annotated species"], E[best_med["Ranges: predicted"]], seed=SEED)),
    ("all species weighted by the classifier do not beat its top-1 species (median or region)",
     not any(paired_better(E["Ranges: predicted species all"], E["Ranges: predicted species top-1"], m, seed=SEED)
             for m in ("median_error", "region"))),
], columns=["statement", "holds"])
ch.table(checks, P + "checks", f"Statements of the reading, checked on this run (paired bootstrap, 95 %), {SIM}")

# %% [markdown]
# **Reading** (of the default SimSounds run; with `DATA="inat"` the checks table says which of
# these statements hold on the real audio). On SimSounds every model that listens does far
# better than guessing a random training location, and much of the paper's Table 1 reappears.
# Regression is the weakest family, and the haversine loss beats the squared error on
# coordinates: it optimises the distance that is scored and behaves like a median, while MSE
# regresses towards the mean of the plausible places, a point that may lie between them. Every H3
# classifier has a lower median than either regression head, but with each family's best chosen on
# validation (res 1 and haversine on this run) the paired interval of the difference reaches 0:
# a tie in the checks table, which picking the best on the test split itself had turned into a
# gain. The finest cells alone suffer from having only a few training
# clips per class, the coarsest from cell centres too far apart to ever be within 200 km; the
# hierarchical decoding keeps roughly the region accuracy of the fine cells and the continent
# accuracy of the coarse ones, as in the paper, although its median error is not always the best
# of the classifiers here. Species ranges reach the best region-level accuracy of the learned
# methods, and that is expected rather than a finding: SimSounds draws each recording's species
# from the very BirdNET range maps we geolocate with, so the range model is exact for this
# world, whereas the paper's SINR maps are an independent, imperfect model of reality. The gap
# between the annotated and the predicted species is the cost of a species classifier trained
# for a few CPU minutes; weighting all species by the classifier's probabilities is not reliably
# better than its top-1 species here. Most errors are larger than the paper's: the SMALL
# backbone is small, briefly trained and frozen, with only a few thousand training clips, and
# its quality varies from seed to seed. What carries over to the paper is the ordering of the
# methods, not the kilometres; the statements above are checked on this run's numbers in the
# "checks" table.
