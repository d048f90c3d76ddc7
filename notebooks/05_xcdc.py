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
# # 05 · XCDC: species-rich dawn choruses
#
# XCDC holds 576 real dawn-chorus recordings from Xeno-canto, each annotated with *every*
# species heard (10-36). Knowing all species is the strongest signal the paper found: with
# SINR ranges it reached a 449 km median error (Table 3). Here we locate the same real lists
# with BirdNET's week-aware range model. All free parameters of the likelihood are chosen on a
# different real data set (multi-species lists assembled from iNatSounds test recordings),
# never on XCDC. The second part runs the models that listen (audio -> location) on long
# recordings: on XCDC's own audio when the user has it (`XCDC_AUDIO`: BirdNET detections -> species
# ranges, real), and always on SimSounds' simulated chorus split, which plays XCDC's role where
# XCDC's audio is absent (that part is simulated and labelled so).

# %% tags=["parameters"]
SMALL = True  # CPU-sized run: 2 degree gallery, smaller parameter grid and fewer random draws
SEED = 0  # seed for every random draw
DEVICE = "auto"  # range model device ("auto": GPU when present)
OUT = None  # output folder; None means figures/
GALLERY = None  # candidate points; None means "land2" in SMALL mode, "land1" otherwise
DRAWS = None  # random-subset draws per k; None means 10 in SMALL mode, 100 (the paper's) otherwise
N_VAL = None  # validation lists used to choose parameters; None means 250 in SMALL mode, all otherwise
WORLD_SEED = 0  # which SimSounds world the models part uses (shared with chapters 01, 03, 04)
XCDC_AUDIO = None  # the user's XCDC audio: xcdc.tar.gz or its unpacked folder; None means data/raw/xcdc/xcdc.tar.gz if present

# %%
from pathlib import Path

import numpy as np
import pandas as pd
import matplotlib.pyplot as plt

from soundloc import book, maps, paper, taxonomy
from soundloc.baselines import naive_row
from soundloc.cli import main as soundloc_cli
from soundloc.data import load_inat, load_xcdc
from soundloc.sphere import haversine
from soundloc.range_geolocation import RangeGeolocator, RangeLocConfig, gallery, pick_best, sweep
from soundloc.metrics import summary_row
from soundloc.ranges import load_range_model
from soundloc.species_sets import inat_lists, random_subsets, site_clusters
from soundloc.metrics import compare, summary_row_ci

ch = book.start("05", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, WORLD_SEED=WORLD_SEED, GALLERY=GALLERY,
                DRAWS=DRAWS, N_VAL=N_VAL, types={"WORLD_SEED": int})
GALLERY, DRAWS, N_VAL = ch.resolved("GALLERY", "DRAWS", "N_VAL")
xcdc, inat = load_xcdc(), load_inat()
truth = xcdc[["lat", "lon"]].to_numpy()

# %% [markdown]
# ## Names: reconciling taxonomies
# XCDC uses recent checklists, BirdNET V2.4 the eBird 2021 taxonomy. Names BirdNET lacks are
# mapped only by documented splits and genus moves, or by an equal common name with the same
# genus or epithet. What stays unknown (mostly frogs, mammals, insects) is counted, not dropped silently.

# %%
model = load_range_model("birdnet", "torch", device=str(ch.device))
tax = taxonomy.reconcile(model, [s for lst in xcdc.species for s in lst])
taxonomy.apply(model, tax)
sp = inat.drop_duplicates("species")
taxonomy.apply(model, taxonomy.reconcile(model, list(sp.species), list(sp.common_name)))
ch.table(tax.fillna("-"), "taxonomy", "XCDC species names BirdNET V2.4 lacks, and how they were resolved (real)")
n_unknown = sum(len(model.match(lst)[1]) for lst in xcdc.species)
print(f"{n_unknown} of {sum(map(len, xcdc.species))} species mentions stay unknown after reconciliation")

# %% [markdown]
# ## Choosing the likelihood on other data
# Validation lists: iNatSounds test recordings of birds grouped by H3 res-4 cell (about 1,770 km²)
# and month, keeping groups with at least 8 species: real multi-species lists that are not XCDC.
# The grid varies the observation model: raw presences with absences (a species present is heard
# with probability d, so a common species not heard lowers a place), the multinomial model (each
# heard species is a draw from the local community p / Σp, which discounts places where the range
# model over-predicts everything), and the GeoCLIP photo-density prior.

# %%
val = inat_lists(inat)
if N_VAL:
    val = val.sample(min(len(val), N_VAL), random_state=SEED)
grid = [dict(richness_weight=g, absence_weight=a, detectability=d, prior_weight=b)
        for g in ((0.0, 1.0) if SMALL else (0.0, 0.5, 1.0))
        for a, d in (((0.0, 1.0), (1.0, 0.1)) if SMALL else ((0.0, 1.0), (1.0, 0.1), (1.0, 0.25)))
        for b in ((1.0,) if SMALL else (0.0, 1.0))]
keys = ["richness_weight", "absence_weight", "detectability", "prior_weight"]
loc = RangeGeolocator(model, gallery(GALLERY), RangeLocConfig(), gallery_name=GALLERY, device=ch.device)
choice = sweep(loc, val, grid)
ch.table(choice, "choice_sweep", f"Parameter choice on {len(val)} iNatSounds-derived lists (real, not XCDC), gallery {GALLERY}")
best = pick_best(choice, keys)
print("chosen on iNatSounds lists:", best)

# %% [markdown]
# ## XCDC located from its true species

# %%
chosen = loc.with_config(**best)
rows, post_for_maps = [], None
for label, weeks in (("Ranges: true species, with date", xcdc.week), ("Ranges: true species, year-round", None)):
    r = chosen.locate(list(xcdc.species), weeks=weeks, progress=False, return_posterior=weeks is not None)
    if weeks is not None:
        pred_with_date, post_for_maps = r.pred, r.posterior
    rows.append(summary_row(label, haversine(r.pred.lat, r.pred.lon, truth[:, 0], truth[:, 1])))
# chapter 00's XCDC row: the same seeds, each draw scored by the benchmark metric, scores averaged
rows.append(naive_row("Naive: random iNatSounds test location", truth, inat[["lat", "lon"]].to_numpy(), range(SEED, SEED + 3)))
true_tab = paper.beside_paper(pd.DataFrame(rows), paper.TABLE_A2, {
    "Ranges: true species, with date": "Ranges: true species", "Ranges: true species, year-round": "Ranges: true species",
    "Naive: random iNatSounds test location": "Naive (random train location)"})
true_tab.insert(1, "data", "real XCDC")
ch.table(true_tab, "true_species", f"XCDC from its true species (real), parameters chosen on iNatSounds lists, gallery {GALLERY}")

# %% [markdown]
# Intervals (95 %) and what the date adds, paired on the same recordings; then where the misses are.
# XCDC's recordings are not independent draws: a few recordists made most of them (counted below),
# often many dawns at one site, with near-identical lists and the same predicted point, so the
# bootstrap resamples **clusters**: recordings linked by the same recordist or the same H3 res-4 cell
# (about 1,770 km²) are drawn together. Recordings from northern Iran (35-40° N, 44-63° E) are
# compared with the rest by the summed BirdNET occurrence Σp at their true place and week (the
# expected number of species there), which the multinomial likelihood divides by.

# %%
yr = chosen.locate(list(xcdc.species), weeks=None, progress=False).pred
xerr = {"Ranges: true species, with date": haversine(pred_with_date.lat, pred_with_date.lon, truth[:, 0], truth[:, 1]),
        "Ranges: true species, year-round": haversine(yr.lat, yr.lon, truth[:, 0], truth[:, 1])}
xclusters = site_clusters(xcdc.lat, xcdc.lon, xcdc.recordist, 4)
print(f"{len(xcdc)} recordings, {xcdc.recordist.nunique()} recordists (the largest made {xcdc.recordist.value_counts().iloc[0]}), "
      f"{xclusters.max() + 1} clusters (the largest holds {np.bincount(xclusters).max()})")
ci_tab = pd.DataFrame([summary_row_ci(k, v, seed=SEED, clusters=xclusters) for k, v in xerr.items()]).assign(data="real XCDC")
ch.table(ci_tab, "true_species_ci", f"XCDC from its true species (real) with 95 % bootstrap CIs over {xclusters.max() + 1} "
         "clusters of recordings (same recordist or same H3 res-4 cell)")
date_cmp = compare(*xerr.values(), seed=SEED, clusters=xclusters)

# %%
iran = (truth[:, 0] >= 35) & (truth[:, 0] <= 40) & (truth[:, 1] >= 44) & (truth[:, 1] <= 63)
sum_p = model.prob(truth[:, 0], truth[:, 1], xcdc.week.to_numpy()).sum(1)
in_europe = (pred_with_date.lon.to_numpy() < 40) & (pred_with_date.lat.to_numpy() > 35)
iran_tab = pd.DataFrame([{"recordings": name, "n": int(m.sum()), "summed occurrence Σp (mean)": float(sum_p[m].mean()),
                          "species listed (mean)": float(xcdc.species[m].map(len).mean()),
                          "placed in Europe (lon < 40°)_%": 100 * float(in_europe[m].mean()),
                          "median_km": float(np.median(xerr["Ranges: true species, with date"][m]))}
                         for name, m in (("northern Iran", iran), ("all others", ~iran))]).assign(data="real XCDC")
ch.table(iran_tab, "iran", "XCDC recordings from northern Iran against the rest (real): the range model's richness there")

# %%
full_row = ci_tab.set_index("method").loc["Ranges: true species, with date"]
ir, rest = iran_tab.iloc[0], iran_tab.iloc[1]
ch.reading("reading", [
    f"From their true species and date, XCDC recordings are located at a median {full_row.median_km:,.0f} km "
    f"(95 % CI {full_row['median_km 95% CI']} km), {full_row['region_%']:.1f} % within 200 km and "
    f"{full_row['continent_%']:.1f} % within 2,500 km.",
    book.say_compare(date_cmp, "Locating with the date", "locating with year-round ranges"),
    f"{int(ir.n)} recordings come from northern Iran; BirdNET's occurrence sums to {ir['summed occurrence Σp (mean)']:,.0f} "
    f"species on average at their places and weeks, against {rest['summed occurrence Σp (mean)']:,.0f} at the other "
    f"recordings' places" + (", so the chosen multinomial likelihood (richness weight "
                              f"{best['richness_weight']:g}) discounts Iran" if best["richness_weight"] > 0 else "")
    + f"; {ir['placed in Europe (lon < 40°)_%']:.0f} % of them are placed in Europe (median {ir.median_km:,.0f} km)"
    + (": the same over-broad meta-model occurrence as the nightingale over Siberia in chapter 02's range maps."
       if ir["summed occurrence Σp (mean)"] > 2 * rest["summed occurrence Σp (mean)"] else "."),
])

# %% [markdown]
# The same through the command line: `soundloc species-locate --week-from-date` on the XCDC rows,
# then the benchmark scorer `soundloc eval`, which must agree with the table's first row.

# %%
inp, outp = ch.out / "05_xcdc_species.csv", ch.out / "05_xcdc_pred.csv"
xcdc.assign(species=xcdc.species.map(";".join))[["audio_id", "species", "date"]].to_csv(inp, index=False)
params = [f"{k}={v}" for k, v in best.items()]
assert soundloc_cli(["species-locate", str(inp), "-o", str(outp), "--fresh", "--week-from-date", "--gallery", GALLERY,
                     "--quiet", "--device", str(ch.device)] + [a for p in params for a in ("--param", p)]) == 0
assert soundloc_cli(["eval", str(outp), "--dataset", "xcdc", "--json"]) == 0

# %% [markdown]
# ## How many species does it take? (paper Table 3, right)
# Random subsets of each recording's true species, with its date.

# %%
krows = []
for k in (1, 2, 5, 10, None):
    subs, idx = random_subsets(list(xcdc.species), k, DRAWS, SEED)
    r = chosen.locate(subs, weeks=xcdc.week.to_numpy()[idx], progress=False)
    d = haversine(r.pred.lat.to_numpy(), r.pred.lon.to_numpy(), truth[idx, 0], truth[idx, 1]).reshape(DRAWS, -1)
    per_draw = pd.DataFrame([summary_row("", dd) for dd in d]).select_dtypes("number")
    for col in ("median_km", "region_%", "country_%", "continent_%"):
        krows.append({"k": "all" if k is None else k, "metric": col, "mean": per_draw[col].mean(),
                      "std": per_draw[col].std(), "min": per_draw[col].min(), "max": per_draw[col].max()})
ktab = pd.DataFrame(krows)
ch.table(ktab, "random_k", f"XCDC from k random true species (real), {DRAWS} draws per k")

# %%
fig, ax = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
labels = {"median_km": "median error (km)", "region_%": "within 200 km (region, %)"}
for a, col in zip(ax, labels):
    t = ktab[(ktab.metric == col) & (ktab.k != "all")]
    k = t.k.astype(float)
    a.errorbar(k, t["mean"], yerr=t["std"], marker="o", capsize=3, label="mean ± sd over draws")
    a.fill_between(k, t["min"], t["max"], alpha=0.2, label="min-max over draws")
    allk = ktab[(ktab.metric == col) & (ktab.k == "all")].iloc[0]
    a.errorbar([40], [allk["mean"]], yerr=[allk["std"]], marker="s", color="C3", capsize=3, label="all species")
    a.axvline(20, color="0.6", lw=0.8, ls=":")  # 'all' is set apart from the log-spaced k
    a.set_xscale("log")
    a.set_xticks([1, 2, 5, 10, 40], ["1", "2", "5", "10", "all"])
    a.set(xlabel="species known (k, log scale)", ylabel=labels[col], title=f"XCDC (real): {labels[col]} vs k")
    a.legend(fontsize=8)
ch.figure(fig, "random_k")

# %% [markdown]
# ## Where the posterior puts a few recordings

# %%
pts = gallery(GALLERY)
for i in (0, len(xcdc) // 2):
    p = post_for_maps[i]
    title = (f"XCDC {xcdc.audio_id[i]} (real): {len(xcdc.species[i])} species, week {xcdc.week[i]}, "
             f"error {haversine(pred_with_date.lat[i], pred_with_date.lon[i], *truth[i]):.0f} km")
    ch.map(maps.folium_posterior(pts, p, title, true=truth[i], pred=(pred_with_date.lat[i], pred_with_date.lon[i])),
           f"posterior_{xcdc.audio_id[i]}")

# %% [markdown]
# ## Post-hoc sensitivity on XCDC (not used for any choice)
# For transparency only: the same grid scored on XCDC itself. Where its best row differs from the
# chosen one, the gap measures what choosing on iNatSounds lists costs on dawn choruses.

# %%
ch.table(sweep(loc, xcdc, grid, progress=False), "posthoc_sweep", "Post-hoc: the grid scored on XCDC (real), NOT used for choosing")

# %% [markdown]
# ## XCDC audio: what BirdNET hears in a dawn chorus (real, when the audio is present)
# With the XCDC release's audio (`xcdc.tar.gz`, about 6 GB, Zenodo record 15420487; set
# `XCDC_AUDIO`, or put it at `data/raw/xcdc/xcdc.tar.gz`), each recording goes through BirdNET's
# acoustic model (3 s windows; species with max score >= 0.1, birdnetlib's default) and the
# detections, scores as weights, through the same species-range geolocation as `soundloc locate
# --method ranges`, with the recording's week. That is the paper's "Ranges: predicted species all"
# row with BirdNET as the species classifier. Beside it: how much of each annotated species list
# BirdNET hears (recall) and how many of its detections are annotated (precision), names matched
# through the range model's taxonomy. Detections are cached per file (`soundloc.detect`), so a
# rerun is fast; unreadable files are counted, never dropped silently. Without the audio the
# chapter says what it skipped and goes on.

# %%
from soundloc import paths
from soundloc.data import xcdc_audio
from soundloc.locator import LocateOptions, locate_annotated_audio

xa_src = Path(XCDC_AUDIO) if XCDC_AUDIO else paths.raw_dir() / "xcdc" / "xcdc.tar.gz"
HAVE_AUDIO = xa_src.exists()
if not HAVE_AUDIO:
    print(f"SKIPPED the XCDC audio branch (BirdNET detections -> ranges, detection recall/precision): no XCDC audio "
          f"at {xa_src}. To run it, download xcdc.tar.gz (Zenodo record 15420487, about 6 GB; "
          f"python -c \"import soundloc.data as d; d.fetch_group('xcdc-audio')\") to {paths.raw_dir() / 'xcdc'}, "
          "or set XCDC_AUDIO to the tarball or its unpacked folder (python -m soundloc.runner 05 -p XCDC_AUDIO /path/xcdc.tar.gz).")
else:
    xa = xcdc_audio(xa_src, xcdc)
    print(f"XCDC audio: {len(xa)} of {len(xcdc)} recordings have a file ({xa.attrs['skip_report']})")
    per_rec, audio_skips = locate_annotated_audio(xa, LocateOptions(gallery=GALLERY, device=str(ch.device)),
                                                  taxonomy_names=[s for lst in xcdc.species for s in lst])
    print(f"BirdNET on the XCDC audio: {audio_skips}", *(f"  {r}: {e}" for r, e in audio_skips.examples.items()), sep="\n")
    ch.table(per_rec, "audio_per_recording", "XCDC audio, BirdNET detections -> ranges, per recording (real)", floatfmt=".3f")

# %%
if HAVE_AUDIO:
    same = xcdc.audio_id.isin(per_rec.audio_id).to_numpy()
    audio_rows = [summary_row("XCDC audio, BirdNET detections -> ranges (real)", per_rec.error_km.to_numpy()),
                  summary_row("Ranges: true species, with date (same recordings)",
                              haversine(pred_with_date.lat.to_numpy()[same], pred_with_date.lon.to_numpy()[same],
                                        truth[same, 0], truth[same, 1]))]
    audio_tab = paper.beside_paper(pd.DataFrame(audio_rows), paper.TABLE_A2, {
        "XCDC audio, BirdNET detections -> ranges (real)": "Ranges: predicted species all",
        "Ranges: true species, with date (same recordings)": "Ranges: true species"})
    audio_tab.insert(1, "data", "real XCDC audio")
    ch.table(audio_tab, "audio_ranges", f"XCDC audio, BirdNET detections -> ranges (real), {len(per_rec)} recordings, "
             f"gallery {GALLERY}, beside the paper's Table A2")

# %%
if HAVE_AUDIO:
    det_tab = pd.DataFrame([{"data": "real XCDC audio", "recordings": len(per_rec),
                             "annotated species (mean)": per_rec.n_annotated.mean(),
                             "detected species (mean)": per_rec.n_detected.mean(),
                             "recall_% (pooled)": 100 * per_rec.n_hit.sum() / max(1, per_rec.n_annotated.sum()),
                             "recall_% (mean per recording)": 100 * per_rec.recall.mean(),
                             "precision_% (mean per recording)": 100 * per_rec.precision.mean(),
                             "no detection_%": 100 * (per_rec.n_detected == 0).mean()}])
    ch.table(det_tab, "audio_detection", "XCDC audio: BirdNET detections (max score >= 0.1) vs the annotated species lists (real)")

# %% [markdown]
# ## Models on long recordings (simulated: SimSounds chorus split)
# The paper's Table 3 (left) runs its models, trained on short iNatSounds clips, on XCDC's long,
# species-rich dawn choruses, and finds them much worse than on iNatSounds (hierarchical
# classification 1,116 km, species classifier -> ranges 1,097 km, 2.5 % region). XCDC's audio
# cannot be downloaded here, so this part uses SimSounds' **chorus** split: recordings of at
# least 60 s with at least 10 species, from the same simulated world whose short clips trained
# chapter 01's models (loaded from the model zoo, not retrained). Each recording is cut into
# stride-256 windows and the window outputs are averaged (the paper's average pooling). The
# "annotated species" row uses every species of the chorus (as XCDC's true-species row does);
# the range settings of the predicted-species rows are chosen on the short validation clips.
# Chapter 03's AG-CLIP model (with its location prior, weight chosen on validation) retrieves over
# the training locations, and over the chorus split's own locations (the analogue of the paper's
# "XCDC gallery", which holds the true places of the evaluated recordings and so is optimistic).
# Everything in this part is **simulated**.

# %%
from soundloc import agclip, recipe, report, table1

SIM = book.SIM_LABEL
models = recipe.sim_models(ch, ag=True, world_seed=WORLD_SEED)  # chapters 01 and 03's models (zoo)
sim = models.sim
chorus = table1.baseline_errors(sim, models.cfg, seed=SEED, split="chorus", progress=False)
print(*chorus.notes, sep="\n")
# chapter 03's AG-CLIP, averaged windows, over the training locations and over the chorus locations
q = agclip.split_recording_features(models.ag, sim, "chorus")
for name, pts in (("AG-CLIP", sim.latlon("train")), ("AG-CLIP (chorus-locations gallery)", sim.latlon("chorus"))):
    post = agclip.gallery_posterior(models.agclip_head, q, pts, models.ag.prior_weight, sim.latlon("train"))
    pred = pts[post.argmax(1).numpy()]
    chorus.errors[name] = haversine(pred[:, 0], pred[:, 1], *sim.latlon("chorus").T)
print(f"AG-CLIP: location-prior weight {models.ag.prior_weight:g} (chosen on the validation split in chapter 03's way)")

# %%
chorus_rows = {"Ranges: annotated species": "Ranges: true species",
               "Classification hierarchical 0-1-2": "Classification hierarchical",
               "Ranges: predicted species all": "Ranges: predicted species all",
               "Naive (random train location)": "Naive (random train location)",
               "AG-CLIP": "AG-CLIP", "AG-CLIP (chorus-locations gallery)": "AG-CLIP (XCDC gallery)"}
chorus_tab = report.simulated_beside_paper(chorus.table(), paper.TABLE_A2, chorus_rows, paper_prefix="paper (XCDC) ")
ch.table(chorus_tab, "models_chorus", f"Models on the SimSounds chorus split ({len(sim.chorus)} long recordings), {SIM}, "
         "beside the paper's Table 3 / A2 (XCDC)")

# %% [markdown]
# With n = 20 choruses the intervals are wide: 95 % bootstrap CIs over the choruses, and paired
# comparisons against the hierarchical classifier (a difference inside its interval is a tie).

# %%
ch.table(pd.DataFrame([summary_row_ci(k, v, seed=SEED) for k, v in chorus.errors.items()]).assign(data=SIM),
         "models_chorus_ci", f"Models on the SimSounds chorus split ({len(sim.chorus)} recordings), {SIM}, 95 % bootstrap CIs")
ref_name = "Classification hierarchical 0-1-2"
chorus_cmp = pd.DataFrame([{"a": k, "b": ref_name, **compare(v, chorus.errors[ref_name], seed=SEED)}
                           for k, v in chorus.errors.items() if k != ref_name])
ch.table(chorus_cmp, "models_chorus_compare", f"Paired median differences a - b on the chorus split (km), {SIM}")

# %%
ax = report.error_cdf_figure(chorus.errors, f"Error CDF on the SimSounds chorus split, {SIM}")
ch.figure(ax.figure, "models_chorus_cdf")

# %% [markdown]
# **Reading (models part, simulated)**, generated from this run's tables (`05_chorus_reading.md`).
# The paper finds models trained on short clips much worse on long multi-species recordings;
# with 20 simulated choruses the intervals say how much of that this split can show.

# %%
cci = pd.DataFrame([summary_row_ci(k, v, seed=SEED) for k, v in chorus.errors.items()]).set_index("method")
n_tie = int((chorus_cmp.verdict == "tie").sum())
ann_vs_naive = compare(chorus.errors["Ranges: annotated species"], chorus.errors["Naive (random train location)"], seed=SEED)
ch.reading("chorus_reading", [
    f"On {len(sim.chorus)} simulated choruses, {n_tie} of the {len(chorus_cmp)} other rows tie with the hierarchical "
    f"classifier ({cci.loc[ref_name, 'median_km']:,.0f} km, 95 % CI {cci.loc[ref_name, 'median_km 95% CI']}): "
    "differences between models on this split are inside the intervals and are not read as gains.",
    f"The annotated species lists reach {cci.loc['Ranges: annotated species', 'median_km']:,.0f} km "
    f"(95 % CI {cci.loc['Ranges: annotated species', 'median_km 95% CI']}). "
    + book.say_compare(ann_vs_naive, "Locating from them", "the naive baseline"),
    "SMALL mode has only these few choruses; `-p SMALL False` uses the large world's 300.",
])
