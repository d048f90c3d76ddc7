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
# # 06 · Species soundscape affinities (simulated: SimSounds)
#
# The paper's A.11 asks what an audio geolocation model has learned about each species: average
# the AG-CLIP embeddings of all recordings of a species, compare that one vector with the location
# embedding of every place on land, and draw the similarity (clamped to [0, 1]) as a map. Where
# the map lights up is where the model thinks the species' sound comes from; beside the species'
# range map it shows whether the model learned the species' geography or just "where recordings
# are made". Here the model is chapter 03's AG-CLIP (loaded from the model zoo) on **SimSounds**,
# the simulated world whose species follow BirdNET's real ranges, so every map and number below
# is *simulated*. Beyond the paper, the match between affinity and range is measured for every
# species: the Spearman correlation over the land gallery and the AUC of the affinity for
# in-range (range probability >= 0.1) vs out-of-range places, each gallery point weighted by its
# cell's area (an equal-angle grid has many small cells near the poles), against a control that
# pairs each species' affinity with *another* species' range, and against a baseline with no
# audio at all: the density of where recordings are made (the training recordings' locations), the
# same map for every species. A species' range overlaps where recordings are made, so only an AUC
# above that baseline says the model learned ranges rather than sampling.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run: the small world, 2 degree land gallery
SEED = 0  # seed of chapter 03's AG-CLIP model (and of the control's species shuffle)
DEVICE = "auto"  # "auto" | "cpu" | "cuda"
OUT = None  # output folder; None means figures/
WORLD_SEED = 0  # which SimSounds world (shared with chapters 01 and 03-05)
SPECIES = None  # species to draw (list of scientific names); None means the 3 with the most recordings
GALLERY = None  # land gallery; None means "land2" in SMALL mode, "land1" otherwise
MIN_RECORDINGS = 10  # species with fewer recordings are left out of the agreement table

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from soundloc import affinity, agclip, book, maps, recipe
from soundloc.range_geolocation import gallery, gallery_areas
from soundloc.location_encoders import gallery_embeddings
from soundloc.ranges import load_range_model, range_map

ch = book.start("06", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, WORLD_SEED=WORLD_SEED,
                SPECIES=SPECIES, GALLERY=GALLERY, MIN_RECORDINGS=MIN_RECORDINGS,
                types={"WORLD_SEED": int, "SPECIES": (list, type(None)), "GALLERY": (str, type(None)),
                       "MIN_RECORDINGS": int})
SIM = book.SIM_LABEL
GALLERY = ch.resolved("GALLERY")

# %% [markdown]
# ## The model and the species' mean embeddings
# Chapter 03's main AG-CLIP model (GeoCLIP location space, checklist loss) from the zoo. Only the
# held-out **test** recordings are embedded (window features averaged), as in the paper: the model
# was fitted to the training locations, so training recordings would show what it memorised. Each
# species' test recordings (its focal recordings) are averaged into one unit vector.

# %%
sim = recipe.sim_world(ch, world_seed=WORLD_SEED)
names = list(sim.species)
for name in SPECIES or []:  # checked before any model work
    if name not in names:
        raise book.ParameterError(f"SPECIES: {name!r} is not a SimSounds species (e.g. {names[:3]})")
models = recipe.sim_models(ch, ag=True, sim=sim)  # chapter 03's main AG-CLIP model (zoo)
emb = models.emb["test"]
feats = agclip.pool_windows(agclip.window_features(models.agclip_head, emb[0]), emb[1])  # test recordings only
labels = sim.species_index("test")
sp_emb, counts = affinity.species_embeddings(feats, labels, len(sim.species), min_count=MIN_RECORDINGS)
print(f"{len(feats)} test recordings, {int((counts >= MIN_RECORDINGS).sum())} of {len(sim.species)} species with >= "
      f"{MIN_RECORDINGS} recordings")

# %% [markdown]
# ## Affinity and range maps on land
# The gallery's GeoCLIP location embeddings (cached) against each species' mean embedding; the
# range maps are BirdNET's year-round occurrence probabilities on the same points (SimSounds drew
# its recordings from these maps, week by week).

# %%
pts = gallery(GALLERY)
aff = affinity.affinity_maps(sp_emb, gallery_embeddings(pts, GALLERY, encoder=agclip.load_location_encoder()))
rmodel = load_range_model("birdnet", "torch")
idx, unknown = rmodel.match(sim.species)
assert not unknown, unknown  # SimSounds species are BirdNET species by construction
rng_maps = range_map(rmodel, pts, None, species_idx=idx)
density = affinity.recording_density(pts, sim.latlon("train"))  # (N,) where recordings are made: no audio, no species
areas = gallery_areas(pts, GALLERY)  # (N,) km^2: a point counts for the land it stands for, not one grid point

# %%
keep = counts >= MIN_RECORDINGS
rho, auc = affinity.agreement(aff[keep], rng_maps[keep], weights=areas)
perm = np.random.default_rng(SEED).permutation(int(keep.sum()))
perm = np.where(perm == np.arange(len(perm)), np.roll(perm, 1), perm)  # another species' range, never its own
rho_c, auc_c = affinity.agreement(aff[keep], rng_maps[keep][perm], weights=areas)
rho_d, auc_d = affinity.agreement(np.broadcast_to(density, rng_maps[keep].shape), rng_maps[keep], weights=areas)
per_species = pd.DataFrame({"species": np.asarray(sim.species)[keep], "test recordings": counts[keep],
                            "spearman": rho, "AUC in-range": auc, "control spearman": rho_c, "control AUC": auc_c,
                            "density spearman": rho_d, "density AUC": auc_d})
ch.table(per_species.sort_values("test recordings", ascending=False), "per_species",
         f"Affinity vs range per species, {GALLERY} gallery (weighted by cell area), {SIM}", floatfmt=".3f")
summary = pd.DataFrame({"pairing": ["species' own range", "another species' range (control)",
                                    "recording density alone (baseline, no audio)"],
                        "species": [int(keep.sum())] * 3,
                        "mean spearman": [np.nanmean(rho), np.nanmean(rho_c), np.nanmean(rho_d)],
                        "mean AUC in-range": [np.nanmean(auc), np.nanmean(auc_c), np.nanmean(auc_d)],
                        "species with AUC > 0.5 (%)": [100 * np.nanmean(v > 0.5) for v in (auc, auc_c, auc_d)],
                        "species with AUC > density AUC (%)": [100 * np.nanmean(v > auc_d) for v in (auc, auc_c, auc_d)]})
ch.table(summary, "agreement", f"Do affinity maps follow the species' ranges? {GALLERY} gallery (weighted by cell "
         f"area), {SIM}", floatfmt=".3f")

# %% [markdown]
# ## Maps of chosen species
# Left: the affinity map; right: the range map (both scaled to their maximum). The interactive
# map has both as layers (switch them in the layer control).

# %%
chosen = SPECIES or list(per_species.sort_values("test recordings", ascending=False).species.head(3))
for k, name in enumerate(chosen):
    i = names.index(name)
    fig, axes = plt.subplots(1, 2, figsize=(14, 3.6))
    for ax, v, what in ((axes[0], aff[i], "affinity (AG-CLIP)"), (axes[1], rng_maps[i], "range (BirdNET, year-round)")):
        maps.land_background(ax)
        sc = ax.scatter(pts[:, 1], pts[:, 0], c=v / max(v.max(), 1e-12), s=4, cmap="viridis", vmin=0, vmax=1)
        ax.set(xlim=(-180, 180), ylim=(-60, 85), title=f"{name}: {what}")
    fig.colorbar(sc, ax=axes, shrink=0.8, label="relative to the map's maximum")
    fig.suptitle(f"Soundscape affinity vs range, {name} ({counts[i]} test recordings), {SIM}")
    ch.figure(fig, f"species_{k}")
    ch.map(maps.folium_layers(pts, {"affinity (AG-CLIP)": aff[i], "range (BirdNET)": rng_maps[i]},
                              f"{name}: affinity vs range, {SIM}"), f"species_{k}")

# %% [markdown]
# ## Audio -> text / image retrieval
# The paper also retrieves text and images with CLIP from the audio embeddings. That needs CLIP
# weights, which cannot be downloaded here.

# %%
import os

clip_path = os.environ.get("SOUNDLOC_CLIP_WEIGHTS")
print("SKIPPED audio -> text/image retrieval: no local CLIP weights (set SOUNDLOC_CLIP_WEIGHTS to a CLIP ViT-L/14 "
      "checkpoint to run it)" if not clip_path else
      f"CLIP weights found at {clip_path}, but this book has no text/image retrieval code yet: SKIPPED")

# %% [markdown]
# **Reading (simulated).** Generated from this run's agreement table: the affinity against the
# control (another species' range) and against the recording-density baseline, with a 95 %
# bootstrap interval over species for the paired difference in AUC.

# %%
d_auc = (auc - auc_d)[np.isfinite(auc - auc_d)]
boot = d_auc[np.random.default_rng(SEED).integers(0, len(d_auc), (2000, len(d_auc)))].mean(1)
lo_hi = np.quantile(boot, [0.025, 0.975])
beats = "above" if lo_hi[0] > 0 else ("below" if lo_hi[1] < 0 else "not distinguishable from")
verdict = {"above": "the affinity maps carry range information beyond where recordings are made",
           "below": "the agreement is mostly where recordings are made: the density of recordings alone "
                    "ranks in-range places better than the model's affinity does",
           "not distinguishable from": "the agreement is mostly where recordings are made, not the species' ranges"}[beats]
reading = (f"Over {len(d_auc)} species with >= {MIN_RECORDINGS} test recordings, the affinity's mean AUC for "
           f"in-range places (land weighted by area) is {np.nanmean(auc):.3f}, against {np.nanmean(auc_c):.3f} for "
           f"another species' range (control) and {np.nanmean(auc_d):.3f} for recording density alone. The affinity "
           f"is {beats} the density baseline (paired difference {d_auc.mean():+.3f}, 95 % interval "
           f"{lo_hi[0]:+.3f} to {lo_hi[1]:+.3f}): "
           f"{verdict} ({SIM}).")
print(reading)
ch.path("reading", ".md").write_text(reading + "\n")

# %% [markdown]
# Why: SimSounds recordings are drawn from BirdNET's ranges and the model only hears the species
# through a frozen, small classifier, so its affinity maps mix the species' range with where
# recordings are made (GeoCLIP's photo density and the training locations): an affinity map can
# light up in well-recorded regions inside or near the range rather than across all of it, which is
# what the range maps beside them show.
