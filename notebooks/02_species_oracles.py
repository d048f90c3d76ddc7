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
# # 02 · Species oracles and species ranges
#
# Each species lives somewhere: knowing which species are in a recording constrains where it was
# made. This chapter measures how much, on the **real** iNatSounds test set (its locations,
# dates and annotated species), with BirdNET's week-aware range model (6,522 species; the paper
# used SINR, whose weights were not released). Two experiments, as in the paper's Table 1:
#
# 1. **Oracles**: a checklist of the species present at the true place and week (range
#    probabilities thresholded), complete, with half its species dropped, or cut to 10 random
#    species, is mapped linearly to a GeoCLIP location embedding and located by retrieval.
# 2. **Annotated-species ranges**: each recording's one annotated species, with and without its
#    week, located by its range map times a prior of where recordings are made.

# %% tags=["parameters"]
SMALL = True  # CPU-sized: a random subset of recordings, fewer reference points
SEED = 0  # seed for every random draw
DATA = "real"  # this chapter reads the real iNatSounds test annotations
DEVICE = "auto"  # range model device ("auto": GPU when present)
OUT = None  # output folder; None means figures/
N_EVAL = None  # iNatSounds test recordings used; None means 2,000 in SMALL mode, all 49,527 otherwise
N_REF = None  # GeoCLIP reference points for the oracle maps; None means 8,000 in SMALL mode, all otherwise
GALLERY = None  # range-geolocation gallery; None means "land2" in SMALL mode, "land1" otherwise

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from soundloc import book, maps, paper, taxonomy
from soundloc.data import load_inat
from soundloc.geo import haversine
from soundloc.geolocate import RangeGeolocator, RangeLocConfig, cross_fit, gallery, predict_folds, spatial_folds, sweep
from soundloc.location import gallery_embeddings, load_geoclip_encoder, embed_locations, retrieve
from soundloc.metrics import summary_row
from soundloc.oracles import CORRUPTIONS, checklists, corrupt, fit_linear_map, predict_embedding
from soundloc.ranges import load_range_model, range_map
from soundloc.reference import geoclip_coordinates

ch = book.start("02", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, DATA=DATA)
N_EVAL = N_EVAL or (2000 if SMALL else None)
N_REF = N_REF or (8000 if SMALL else None)
GALLERY = GALLERY or ("land2" if SMALL else "land1")
rng = np.random.default_rng(SEED)
inat = load_inat()
evalset = inat.sample(N_EVAL, random_state=SEED) if N_EVAL else inat
print(f"{len(evalset)} of {len(inat)} iNatSounds test recordings")

# %% [markdown]
# ## The range model and what it covers
# BirdNET's meta model knows 6,522 species, mostly birds. iNatSounds species it lacks are first
# reconciled by documented taxonomy changes; the rest cannot be located by ranges and fall back
# to the location prior (counted below, never dropped).

# %%
model = load_range_model("birdnet", "torch", device=str(ch.device))
sp = inat.drop_duplicates("species")
tax = taxonomy.reconcile(model, list(sp.species), list(sp.common_name))
taxonomy.apply(model, tax)
ch.table(tax.dropna(subset=["mapped_to"]), "taxonomy", "iNatSounds names mapped onto BirdNET V2.4's taxonomy (real)")
known = set(sp.species) - set(model.match(list(sp.species))[1])
cov = inat.assign(covered=inat.species.isin(known)).groupby("supercategory").agg(
    recordings=("covered", "size"), covered_recordings=("covered", "sum"),
    species=("species", "nunique"), covered_species=("species", lambda s: s[s.isin(known)].nunique())).reset_index()
cov["covered_%"] = 100 * cov.covered_recordings / cov.recordings
ch.table(cov, "coverage", "How much of the iNatSounds test set BirdNET's range model covers (real)")

# %% [markdown]
# Range maps of the four species of the paper's Fig. A7b in week 20 (mid-May).

# %%
pts = gallery("land1")
show = ["Cardinalis cardinalis", "Zonotrichia capensis", "Luscinia megarhynchos", "Gymnorhina tibicen"]
P = range_map(model, pts, 20, species_idx=model.match(show)[0])
fig, axes = plt.subplots(2, 2, figsize=(14, 7))
for ax, name, p in zip(axes.ravel(), show, P):
    maps.land_background(ax)
    sc = ax.scatter(pts[:, 1], pts[:, 0], c=p, s=1.5, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{name}: BirdNET occurrence probability, week 20")
fig.colorbar(sc, ax=axes, shrink=0.6)
ch.figure(fig, "range_maps")

# %% [markdown]
# ## Oracles (paper Table 1)
# Checklists at GeoCLIP's photo coordinates (reference set, never the evaluation set) with random
# weeks train one ridge map per corruption (the map sees the same corruption it will be tested on);
# the evaluation checklists are made at the true place and week of each iNatSounds recording;
# retrieval runs over GeoCLIP's 100K land coordinates.

# %%
ref = geoclip_coordinates(land_only=True)
tr = ref[rng.choice(len(ref), N_REF, replace=False)] if N_REF else ref
tr_weeks = rng.integers(1, 49, len(tr))
encoder = load_geoclip_encoder(ch.device)
Y = embed_locations(encoder, tr)
G = gallery_embeddings(ref, "geoclip_land", device=ch.device, encoder=encoder)
true = evalset[["lat", "lon"]].to_numpy()
rows = []
for thr in (0.1, 0.03):
    Xtr = checklists(model, tr, tr_weeks, thr, progress=True)
    Xev = checklists(model, true, evalset.week.to_numpy(), thr, progress=True)
    keep = Xtr.any(0) | Xev.any(0)  # species present somewhere
    for mode in CORRUPTIONS:
        W, b = fit_linear_map(corrupt(Xtr[:, keep], mode, SEED + 1), Y, ridge=1.0)
        _, idx = retrieve(predict_embedding(corrupt(Xev[:, keep], mode, SEED), W, b), G)
        pred = ref[idx[:, 0].numpy()]
        name = {"full": "Oracle: full checklist", "corrupt50": "Oracle: 50% corrupted", "keep10": "Oracle: keep random 10"}[mode]
        rows.append({**summary_row(name, haversine(pred[:, 0], pred[:, 1], true[:, 0], true[:, 1])), "threshold": thr,
                     "species / checklist": float(Xev.sum(1).float().mean())})
oracles = paper.beside_paper(pd.DataFrame(rows), paper.TABLE1, {r["method"]: r["method"] for r in rows})
oracles.loc[oracles.threshold != 0.1, [c for c in oracles if c.startswith("paper")]] = None  # paper used 0.1 only
ch.table(oracles, "oracles", "Species oracles on iNatSounds test locations (real), BirdNET ranges, beside the paper's (SINR)")

# %% [markdown]
# ## Locating recordings from their annotated species
# The score of a place is the species' (week-specific) range probability, optionally divided by
# the place's expected species richness (a multinomial "which species of the local community was
# recorded" model), times a location prior: GeoCLIP's photo coordinates smoothed by a 200 km
# von Mises-Fisher kernel, an independent source of where people are. The prior weight and
# bandwidth, the richness weight and the decoder are chosen by 2-fold spatially blocked
# cross-fitting: folds are whole H3 res-1 cells, each fold is predicted with the parameters that
# did best (median error) on the other fold.

# %%
q = evalset.assign(species=evalset.species.map(lambda s: [s]))
loc = RangeGeolocator(model, gallery(GALLERY), RangeLocConfig(), gallery_name=GALLERY, device=ch.device)
grid = [dict(richness_weight=g, prior_weight=b, prior_bandwidth_km=h, decoder=d)
        for g in (0.0, 1.0) for b, h in ((0.0, 200.0), (1.0, 200.0), (1.0, 400.0)) for d in ("argmax", "geomedian")]
keys = ["richness_weight", "prior_weight", "prior_bandwidth_km", "decoder"]
folds = spatial_folds(q.lat.to_numpy(), q.lon.to_numpy(), 2, 1, SEED)
pred, choice = cross_fit(loc, q, grid, folds, keys)
ch.table(choice, "crossfit_choice", "Parameters chosen on the other fold (spatially blocked 2-fold cross-fitting, real)")

# %%
covered = q.species.map(lambda s: s[0] in known).to_numpy()
fixed = {"paper-style: year-round ranges, flat prior, argmax": (dict(richness_weight=0, prior_weight=0, use_week=False), None),
         "+ week": (dict(richness_weight=0, prior_weight=0), None),
         "+ week + GeoCLIP prior": (dict(richness_weight=0, prior_weight=1.0), None)}
res_rows = []
for name, (kw, _) in fixed.items():
    r = loc.with_config(**kw).locate(list(q.species), weeks=q.week, progress=False)
    d = haversine(r.pred.lat, r.pred.lon, true[:, 0], true[:, 1])
    res_rows += [summary_row(name, d[covered], subset="covered species"), summary_row(name, d, subset="all")]
d = haversine(pred.lat.to_numpy(), pred.lon.to_numpy(), true[:, 0], true[:, 1])
res_rows += [summary_row("cross-fitted choice", d[covered], subset="covered species"),
             summary_row("cross-fitted choice", d, subset="all")]
# the same per-fold choices, plus the genus proxy: an uncovered species counts as its covered congeners' mean range
proxy = predict_folds(loc, q, folds, choice, keys, genus_proxy=True)
d = haversine(proxy.lat.to_numpy(), proxy.lon.to_numpy(), true[:, 0], true[:, 1])
res_rows += [summary_row("cross-fitted choice + genus proxy", d, subset="all")]
print(f"genus proxy: {int((proxy.n_proxy > 0).sum())} of {int((~covered).sum())} uncovered recordings have covered congeners")
annotated = paper.beside_paper(pd.DataFrame(res_rows), paper.TABLE1,
                               {r["method"]: "Ranges: annotated species" for r in res_rows})
annotated.insert(1, "data", "real iNatSounds test")
ch.table(annotated, "annotated", f"iNatSounds test recordings located from their annotated species (real), gallery {GALLERY}")
print(f"{(~covered).sum()} recordings have a species BirdNET does not cover; they are predicted by the prior alone")

# %% [markdown]
# ## Three posteriors

# %%
best = choice.iloc[0][keys].to_dict()
sel = q.iloc[:3]
r = loc.with_config(**best).locate(list(sel.species), weeks=sel.week, return_posterior=True, progress=False)
for i in range(len(sel)):
    row = sel.iloc[i]
    err = haversine(r.pred.lat[i], r.pred.lon[i], row.lat, row.lon)
    title = f"{row.species[0]} (real iNatSounds {row.audio_id[:8]}), week {row.week}: error {err:.0f} km"
    ch.map(maps.folium_posterior(loc.points, r.posterior[i], title, true=(row.lat, row.lon),
                                 pred=(r.pred.lat[i], r.pred.lon[i])), f"posterior_{i}")
