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
# # 11 · For a class: listen, explore, practise
#
# A short path through species soundscapes for a class, on **real** data only: listen to a real
# recording and see what BirdNET hears in it; explore species ranges, the soundscape expected at a
# place, and where a recording's species say it was made, without editing code; learn how the book
# scores a geolocation; then practise with four exercises whose answers sit in collapsed cells
# (click the "..." of a collapsed cell to open it).
#
# The explorers are ipywidgets: they react in JupyterLab (`make lab`, then open this chapter), and a
# headless run (papermill, `make book`) shows and saves their default views.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run (this chapter is small either way)
SEED = 0  # seed (nothing here is random; kept for the book's interface)
DEVICE = "cpu"  # range-model device (the explorers' work is small)
OUT = None  # output folder; None means figures/
SPECIES = "Turdus merula"  # species explorer's default species (scientific or common name)
WEEK = 20  # default week, 1-48 (BirdNET weeks: 4 per month); 0 means year-round
PLACE = [46.6, 6.1]  # place explorer's default place, lat/lon degrees (the Jura recorder of chapter 08)
LEVEL = 0.9  # credible level of the recording explorer's region
LISTEN = [12.0, 15.0]  # start and length (s) of the Seattle excerpt played and drawn

# %%
import numpy as np
import pandas as pd

from soundloc import book, explore, listen
from soundloc.detect import get_detector
from soundloc.sphere import haversine
from soundloc.metrics import THRESHOLDS_KM, geo_metrics

ch = book.start("11", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, WEEK=WEEK, LEVEL=LEVEL,
                types={"WEEK": int, "LEVEL": float})  # every number here comes from real recordings and ranges
cfg = explore.ExploreConfig(device=str(ch.device), level=LEVEL)
recs = explore.real_recordings()
seattle = recs[0]
answers = {}  # exercise answers, saved as 11_answers.csv at the end

# %% [markdown]
# ## 1 · Listen
# A 15 s excerpt of the Seattle soundscape (Xeno-canto XC563936, March 2020). Press play, then read
# the picture below it: time in seconds, frequency in Hz (mel-spaced, as the models see it), loudness
# in dB. The coloured lanes on top are BirdNET's 3 s windows, one lane per species, more opaque when
# BirdNET is surer.

# %%
listen.player(seattle.path, *LISTEN)

# %%
det = get_detector().detect(seattle.path).table(0.1)
fig = listen.plot_listen(listen.excerpt(seattle.path, *LISTEN), f"{seattle.name} (real), {LISTEN[0]:g}-{sum(LISTEN):g} s",
                         det, start_s=LISTEN[0])
ch.figure(fig, "listen")
heard = det[(det.end_s > LISTEN[0]) & (det.start_s < sum(LISTEN)) & (det.score >= 0.3)]
ch.table(heard.drop(columns="path"), "listen", "BirdNET windows scoring >= 0.3 in the Seattle excerpt (real)", floatfmt=".2f")

# %% [markdown]
# ## 2 · Explore
# **A species and a week.** Type a species (scientific or common name) and move the week: the map is
# BirdNET's range model (the probability that the species occurs there that week); the table lists
# the species most expected *where it occurs*: each species' range probability averaged over the chosen
# species' range (the places where its own probability is at least 0.01), weighted by that probability.

# %%
sp = explore.species_explorer(SPECIES, WEEK, cfg)
ch.figure(sp.view.figure, "species_range")
ch.table(sp.view.companions, "species_companions",
         f"Species expected with {sp.view.common} in week {WEEK} (BirdNET ranges, real model)", floatfmt=".3f")
sp.widget

# %% [markdown]
# **A place and a week.** Click the map (or type lat/lon): the table ranks the species BirdNET's range
# model expects there that week, the expected soundscape of the place.

# %%
pl = explore.place_explorer(*PLACE, WEEK, cfg)
ch.table(pl.view, "place", f"Species most expected at {PLACE} in week {WEEK} (BirdNET ranges)", floatfmt=".3f")
pl.widget

# %% [markdown]
# **A real recording.** Choose a recording: hear it, see what BirdNET detected, and where those
# species say it was made. The blue squares are the credible region: the smallest area holding
# `LEVEL` of the posterior probability (cells weighted by their true area in km²).

# %%
rc = explore.recording_explorer(recs, LEVEL, cfg)
ch.figure(rc.view.figure, "recording_posterior")
ch.table(rc.view.summary, "recording", f"{seattle.name} (real): best place and {LEVEL:.0%} credible region", floatfmt=".1f")
ch.table(rc.view.species, "recording_species", "The species behind it: BirdNET score, range probability at the best "
         "and at the true place", floatfmt=".3f")
rc.widget

# %%
s = rc.view.summary.iloc[0]
print(f"Reading: the best place is {s.error_km:,.0f} km from where {seattle.name} was recorded; the {LEVEL:.0%} "
      f"region covers {s.region_km2 / 1e6:,.2f} million km² and {'contains' if s['true place in region'] else 'misses'} "
      "the true place.")

# %% [markdown]
# ## 3 · How the book scores a guess
# The error of a guess is the great-circle distance to the truth (the haversine formula on a sphere
# of radius 6,371 km). A set of guesses is summarised by its median and mean error and by the share
# within five distances, the benchmark's thresholds:

# %%
print(f"one degree of latitude: {haversine(0.0, 0.0, 1.0, 0.0):.2f} km; Seattle to the Jura: "
      f"{haversine(seattle.lat, seattle.lon, *PLACE):,.0f} km")
errors = np.array([0.4, 30.0, 150.0, 700.0, 3000.0])
worst = np.append(errors, 20015.0)  # add one guess on the far side of the Earth
cmp = pd.DataFrame([{"guesses": label, **{k: round(v, 3) for k, v in geo_metrics(e).items()}}
                    for label, e in (("five guesses", errors), ("plus one antipodal miss", worst))])
ch.table(cmp, "metrics_worked", f"Worked example (hand-made errors): median, mean and accuracy at {THRESHOLDS_KM} km")

# %%
d_mean, d_median = cmp.mean_error.diff().iloc[1], cmp.median_error.diff().iloc[1]
print(f"Why the median: one miss moved the mean by {d_mean:,.0f} km but the median by only {d_median:,.0f} km. "
      "Errors on a sphere are heavily skewed (a few continent-scale misses), so the book reports the median and the "
      "threshold accuracies first.")
assert d_mean > 10 * d_median

# %% [markdown]
# ## 4 · Glossary
# * **H3**: Uber's hierarchical grid of hexagons on the globe; resolution 0 has 122 cells, each finer
#   resolution splits a cell into 7. The book bins recordings and classifies places with it.
# * **Occurrence vs detection**: a range model gives the probability that a species *occurs* at a place
#   and week; a detector (BirdNET) gives the probability that a species is *heard* in a recording. A
#   species can occur without being heard (silent, far away) and be "heard" without occurring (a false
#   detection, a mimic, a recording made elsewhere).
# * **von Mises-Fisher (vMF) prior**: the vMF distribution is the Gaussian of the sphere. Summing a vMF bump
#   (200 km wide) around each of GeoCLIP's 100K photo places on land gives a prior over where people record
#   (`soundloc.range_geolocation.location_prior`); the species-range posterior multiplies it in.
# * **Credible region**: the smallest area holding a chosen share (say 90 %) of a posterior's
#   probability; a larger share gives a larger region.
# * **Cross-fitting**: choose a free parameter on one half of the data and report on the other half,
#   then swap, so that every reported number comes from data its setting was not chosen on.

# %% [markdown]
# ## 5 · Exercises
# Answers are in the collapsed cells below each exercise. Try first.
#
# **Exercise 1.** How far is Seattle (47.6766, -122.294) from Paris (48.8566, 2.3522)? Use
# `soundloc.sphere.haversine`.

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
answers["1 Seattle-Paris km"] = float(haversine(47.6766, -122.294, 48.8566, 2.3522))
print(f"{answers['1 Seattle-Paris km']:,.0f} km")

# %% [markdown]
# **Exercise 2.** Ten guesses miss by 3, 12, 40, 180, 260, 700, 800, 2,400, 9,000 and 15,000 km.
# What are the five accuracies, the median and the mean? If the worst miss were 20,000 km instead,
# how much would the mean and the median change?

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
ten = np.array([3, 12, 40, 180, 260, 700, 800, 2400, 9000, 15000], float)
m10, m10b = geo_metrics(ten), geo_metrics(np.where(ten == 15000, 20000, ten))
answers.update({f"2 {k}": v for k, v in m10.items()})
answers["2 mean change km"] = m10b["mean_error"] - m10["mean_error"]
answers["2 median change km"] = m10b["median_error"] - m10["median_error"]
pd.Series(answers).filter(like="2 ")

# %% [markdown]
# **Exercise 3.** Which species does BirdNET's range model expect most in the Jura (46.6, 6.1) in week 20,
# and with what probability? (Use the place explorer, or `explore.place_view`.)

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
top = explore.place_view(46.6, 6.1, 20, cfg).iloc[0]
answers["3 species"], answers["3 prob"] = top.scientific_name, float(top.prob)
top

# %% [markdown]
# **Exercise 4.** Lower the Seattle recording's credible level from 90 % to 50 %. How many km² does the
# region lose, and is Seattle still inside?

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
r90, r50 = (explore.recording_view(seattle, lv, cfg).summary.iloc[0] for lv in (0.9, 0.5))
answers["4 region_km2 at 90%"], answers["4 region_km2 at 50%"] = float(r90.region_km2), float(r50.region_km2)
answers["4 km2 lost"] = float(r90.region_km2 - r50.region_km2)
answers["4 Seattle inside at 50%"] = bool(r50["true place in region"])
pd.Series(answers).filter(like="4 ")

# %% [markdown]
# All answers in one table (`11_answers.csv`, which the chapter's test checks), collapsed too:

# %% jupyter={"outputs_hidden": true, "source_hidden": true}
ch.table(pd.DataFrame({"question": list(answers), "answer": [str(v) for v in answers.values()]}), "answers",
         "Answers to the exercises (real data)")
