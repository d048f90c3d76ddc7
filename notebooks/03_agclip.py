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
# # 03 · AG-CLIP: contrastive audio-to-location retrieval (simulated: SimSounds)
#
# The paper's own method, **AudioGeo-CLIP**: an audio encoder followed by a *location decoder*
# (a 2-layer MLP, hidden width 128) that maps each 3-second window into the 512-dimensional
# embedding space of GeoCLIP's frozen location encoder. It is trained with a contrastive (InfoNCE)
# loss with a learnable temperature: a window's embedding should be closer to the GeoCLIP
# embedding of its own recording's location than to those of the other recordings in the batch.
# A second 2-layer MLP, the *checklist decoder*, predicts the range model's species checklist at
# the recording's location (binary cross-entropy, weight 0.01): the species one *could* hear
# there, not only the one that is calling. A recording is located by averaging its windows'
# embeddings and retrieving the most similar point of a **gallery** of candidate locations
# (paper section 4, A.5-A.7).
#
# Everything below runs on **SimSounds**, the book's simulated world, and every number is
# *simulated*: a test bed for the pipeline and for comparing methods with each other, never a
# reproduction of the paper's iNatSounds numbers (shown beside ours, in separate columns, for
# orientation only).
#
# **On real iNatSounds audio.** With the audio downloaded and unpacked (README, "Full-size data
# and GPUs"), `python -m soundloc.runner 03 -p DATA inat -p INAT_ROOT /path/to/inatsounds` trains
# and evaluates everything below on it (`INAT_ROOT` holds `train/val/test.json` or `.json.tar.gz`
# and the audio they name; default `data/raw/inatsounds-audio`). SMALL mode takes a seeded subset
# of 3,000 / 500 / 500 recordings (`INAT_MAX` overrides; `-p SMALL False` uses all of them, on a
# GPU); run chapter 01 with the same parameters first to share its backbone. Those outputs are
# labelled *real*, named `03_inat_*`, and sit beside the SimSounds ones.

# %% tags=["parameters"]
SMALL = True  # CPU-sized: AG-CLIP heads on the frozen chapter-01 backbone; False: the paper's recipe (GPU)
SEED = 0  # seed of the main model (the ablations add seeds SEED+1, ... up to ABLATION_SEEDS)
ABLATION_SEEDS = None  # seeds SEED, SEED+1, ... of the checklist/encoder/pooling/fusion rows; None: 3 if SMALL, else 1
DATA = "sim"  # "sim": SimSounds (simulated); "inat": real iNatSounds audio from INAT_ROOT
INAT_ROOT = None  # with DATA "inat": folder with <split>.json(.tar.gz) + audio; None means data/raw/inatsounds-audio
INAT_MAX = None  # with DATA "inat": recordings per split (seeded subset); None means 3,000/500/500 in SMALL mode, all otherwise
DEVICE = "auto"  # "auto" | "cpu" | "cuda"
OUT = None  # output folder; None means figures/
WORLD_SEED = 0  # which SimSounds world (shared with chapters 01 and 04-07)
N_MAPS = 3  # example posterior maps (10th, 50th and 90th percentile of the error)
GALLERIES = ["uniform1", "uniform0.5", "land1", "train", "train_neighbours", "val"]  # Table A1's test-time galleries

# %%
import dataclasses

import matplotlib.pyplot as plt
import pandas as pd

from soundloc import agclip, book, datasets, maps, paper, recipe, report
from soundloc.locator import plot_posterior
from soundloc.metrics import compare, compare_holm, p_text, paired_better, seed_compare, seed_summary, summary_table

ch = book.start("03", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, DATA=DATA, INAT_ROOT=INAT_ROOT,
                INAT_MAX=INAT_MAX, WORLD_SEED=WORLD_SEED, N_MAPS=N_MAPS, ABLATION_SEEDS=ABLATION_SEEDS,
                GALLERIES=GALLERIES, types={"DATA": str, "INAT_ROOT": (str, type(None)), "INAT_MAX": (int, type(None)),
                                            "WORLD_SEED": int, "N_MAPS": int, "ABLATION_SEEDS": (int, type(None)),
                                            "GALLERIES": list})

# %% [markdown]
# ## The world and the audio encoder
# The same SimSounds world and the same species-classifier backbone as chapter 01 (loaded from
# the model zoo, not retrained), standing in for the paper's iNatSounds-pretrained MobileNetV3.
# In SMALL mode the backbone stays **frozen**: every window is embedded once and only the AG-CLIP
# head is trained on the cached embeddings. Because a frozen encoder cannot be shaped by the
# checklist loss (the two decoders would be separate branches), the SMALL head puts one shared
# trainable layer (256 units) between the frozen embedding and both decoders, standing in for the
# fine-tuned encoder of the paper; `SMALL=False` fine-tunes everything as in A.5. With
# `DATA="inat"` the same cells read the real iNatSounds audio (and chapter 01's backbone on it).

# %%
sim = datasets.notebook_data(DATA, SMALL, WORLD_SEED, INAT_ROOT, INAT_MAX)  # bad DATA / no audio: ParameterError
SIM, S, NAME = sim.label, sim.suffix, sim.name  # "simulated (SimSounds)" or "real (iNatSounds)"; column suffix
P = "" if sim.simulated else "inat_"  # real-data outputs are named 03_inat_*, beside the SimSounds ones
base = recipe.sim_models(ch, sim=sim, progress=True)  # chapter 01's backbone and its window embeddings (zoo)
base_cfg, backbone, emb = base.cfg, base.backbone, base.emb
species_probs = {s: base.species_probs(s) for s in ("val", "test")}
print(f"backbone {backbone.key} ({'loaded from the zoo' if not backbone.trained else 'trained now'}); "
      f"windows per split: { {s: len(e[0]) for s, e in emb.items()} }")

# %% [markdown]
# ## Training AG-CLIP and its ablations
# One call trains (or loads from the zoo) every AG-CLIP head of this chapter and evaluates it on
# the test split: the main model (GeoCLIP location encoder, checklist loss), the location-encoder
# ablation (GeoCLIP frozen vs a learnable multi-scale Fourier encoder vs SINR's residual network,
# learnable), the checklist loss on and off, the poolings over windows, the
# galleries of Table A1, the fusion with species ranges and the calibration of the posterior.
# Checklists are BirdNET's year-round range probabilities thresholded at 0.1 (the paper's
# threshold for SINR) at each training recording's location. The SMALL training recipe (AdamW,
# learning rate 1e-3, 40 epochs, dropout 0.5 on the frozen embedding) was chosen on the
# validation split; `SMALL=False` uses the paper's A.5 recipe (Nesterov SGD, warm-up + cosine).
# Where the processor multiplies bfloat16 in hardware (a GPU, or a CPU with AVX512-BF16 or AMX),
# the heads train under bf16 autocast (losses in float32) and the GeoCLIP galleries are embedded
# with bf16 matrix products (Fourier features in float32; cosine to the float32 embeddings
# >= 0.9999): `bench/bench_bf16.py` measures both against float32; elsewhere everything is float32.
#
# **Decoding.** The paper predicts the single most similar gallery point (argmax). We also decode
# the softmax posterior (the learned temperature) by the point with the most posterior mass
# within 200 km, the Bayes decision for the region-level accuracy. On SimSounds this matters a
# lot: the frozen SMALL backbone mostly hears *which species* is calling, so the posterior is
# spread over that species' range, and the single most similar point is an almost arbitrary point
# of it, while the mass decision picks the range's densest part. The radius is the region scale
# of the metric, fixed before looking at the test split. The ablations use the mass decoder; the
# gallery table shows both, and `03_decoder_val` compares the two decoders on the validation split
# (the reading says whether validation favours the mass decoder too).
#
# **Where recordings are made.** As in species-range geolocation (chapter 02), a location prior
# helps: the gallery's logits get beta x log of a von Mises-Fisher density (200 km) of the
# *training* locations (never the test split's), with beta chosen on the validation split from
# {0, 0.5, 1, 2}. Table 1 shows AG-CLIP with and without it; every ablation uses the chosen weight.

# %%
run_cfg = dataclasses.replace(recipe.agclip_config(ch), galleries=tuple(GALLERIES),
                              ablation_seeds=tuple(range(SEED, SEED + ch.resolved("ABLATION_SEEDS"))))
res = agclip.run_agclip(sim, backbone, emb, run_cfg, species_probs=species_probs)
print(*res.notes, sep="\n")
ch.table(res.models_table(), P + "models",
         f"AG-CLIP heads of this chapter — {SIM}: trained now or loaded from the zoo",
         floatfmt=".3g")
ch.table(res.prior_sweep, P + "prior_val",
         f"Location-prior weight tried on the validation split, {SIM}; lowest median wins",
         floatfmt=".2f")
ch.table(res.decoder_sweep, P + "decoder_val", f"Decoders on the validation split ({run_cfg.gallery} gallery), without "
         f"and with the location prior, {SIM}; the ablations use {run_cfg.decoder}", floatfmt=".2f")
pd.Series(res.seconds, name="seconds").round(1)

# %% [markdown]
# ## Table 1: AG-CLIP beside the hierarchical classifier
# The chapter-01 baseline that AG-CLIP has to beat, "Classification hierarchical 0-1-2", is
# loaded from the zoo and evaluated on the same test split. Columns marked *simulated* (*real* with
# `DATA="inat"`) are ours; the paper's iNatSounds numbers are in the columns marked
# *paper (iNatSounds)*, beside the row that does what the paper did (argmax retrieval, no
# location prior).

# %%
HIER = "Classification hierarchical 0-1-2"
main_errors = {HIER: agclip.hierarchical_baseline(sim, backbone, base_cfg, emb), **res.main}
ARGMAX, MASS, P_ARGMAX, P_MASS = list(res.main)  # without / with the location prior
# the classifier decoded like AG-CLIP: its posterior spread over the same gallery, same decoders, same prior
gpts = agclip.build_gallery(run_cfg.gallery, sim.latlon("train"), sim.latlon("val"), run_cfg.neighbour_res)
lp_h = agclip.hierarchical_gallery_log_posterior(sim, backbone, base_cfg, emb, gpts)
lprior = res.prior_weight * agclip.vmf_log_prior(gpts, sim.latlon("train"), run_cfg.prior_bandwidth_km)[None]
SETTINGS = {name: (dec, pr) for name, (dec, pr) in zip((ARGMAX, MASS, P_ARGMAX, P_MASS),
            (("argmax", False), ("mass_within", False), ("argmax", True), ("mass_within", True)))}
H_ROWS = {}
for ag_name, (dec, pr) in SETTINGS.items():
    h_name = ag_name.replace("AG-CLIP", f"Hierarchical on the {run_cfg.gallery} gallery")
    idx = agclip.decode_log_posterior(lp_h + lprior if pr else lp_h, gpts, dec, run_cfg.radius_km)
    main_errors[h_name], H_ROWS[ag_name] = agclip.km_errors(gpts[idx], sim.latlon("test")), h_name
t1 = report.simulated_beside_paper(summary_table(main_errors, ci=True, seed=SEED), paper.TABLE1,
                                     {HIER: HIER, ARGMAX: "AG-CLIP"}, suffix=S)
ch.table(t1, P + "table1", f"AG-CLIP vs the hierarchical classifier on the {NAME} test split, {SIM}, 95 % bootstrap CIs; "
         "the paper's Table 1 (iNatSounds) beside the two rows decoded as it did (argmax, no prior)")

# %% [markdown]
# Like for like: each AG-CLIP row against the hierarchical classifier decoded the same way over
# the same gallery with the same prior; then, separately, what the decoder and the prior add to
# each model. Paired bootstrap over the test recordings (95 %): inside the interval is a tie. Each
# question asks four comparisons per metric and reads them together, so `verdict_holm` adjusts
# them (Holm-Bonferroni over the four, two-sided p-values from the same paired bootstrap,
# `metrics.compare_holm`); `verdict` is each comparison alone.

# %%
pairs = [(a, H_ROWS[a], "same decoder and prior") for a in SETTINGS]
for m in (lambda a: a, lambda a: H_ROWS[a]):
    pairs += [(m(MASS), m(ARGMAX), "what the mass decoder adds"), (m(P_MASS), m(P_ARGMAX), "what the mass decoder adds"),
              (m(P_ARGMAX), m(ARGMAX), "what the prior adds"), (m(P_MASS), m(MASS), "what the prior adds")]
fams = pd.DataFrame(pairs, columns=["a", "b", "question"])
t1c = pd.concat([compare_holm([(main_errors[a], main_errors[b]) for a, b in zip(g.a, g.b)], metric, seed=SEED)
                 .assign(question=q, a=g.a.to_numpy(), b=g.b.to_numpy())
                 for q, g in fams.groupby("question", sort=False) for metric in ("median_error", "region")],
                ignore_index=True)
t1c = t1c[["question", "a", "b", *t1c.columns[:-3]]]
ch.table(t1c, P + "table1_compare", f"Paired differences a - b on the {NAME} test split (median km; region as a "
         f"fraction), 95 % bootstrap CIs; verdict_holm: Holm-adjusted over each question's 4 pairs per metric, {SIM}")

# %% [markdown]
# ## Table 2: ablations
# (b) the location encoder, the checklist loss, and (c) the pooling of window embeddings into one
# recording embedding: average (the default), per-dimension max, the centroid of the largest of
# k = 5 k-means clusters, and a 6-layer transformer trained on frozen window embeddings of the
# training split (A.6: 8 heads, feed-forward 128, Adam, learning rate 1e-3, weight decay 1e-3).
# SimSounds clips last 3-6 s, so a recording has only 2-4 windows: the pooling ablation is much
# weaker here than on iNatSounds' longer recordings. The paper's audio-encoder ablation (a) is not
# repeated (no pretrained audio encoders offline).
# Every row is trained and evaluated with `ABLATION_SEEDS` training seeds (three in the book): the
# table gives the mean over seeds, their sd and each seed's 95 % bootstrap interval over recordings.
# A row differs from its default only when the mean difference is larger than the seed sd and every
# seed's paired interval excludes 0; anything else is a tie.

# %%
enc_names = {"geoclip": "Location: GeoCLIP + checklist", "fourier": "Location: learnable Fourier",
             "sinr": "Location: SINR"}
pool_names = {"average": "Pooling: Average", "max": "Pooling: Max Pool", "kmeans": "Pooling: Cluster",
              "transformer": "Pooling: Transformer"}
SEEDS = run_cfg.seeds_of_ablations
abl = {s: {**{enc_names[k]: v for k, v in res.encoders_by_seed[s].items()},
           **{pool_names[k]: v for k, v in res.pooling_by_seed[s].items()}} for s in SEEDS}
t2 = seed_summary(abl, seed=SEED)
t2 = t2.rename(columns={c: c + S for c in t2.columns if c not in ("method", "n")})  # no paper column: see below
ch.table(t2, P + "table2", f"AG-CLIP ablations on the {NAME} test split ({run_cfg.decoder} decoding with the location "
         f"prior, {run_cfg.gallery} gallery), {SIM}: mean and sd over training seeds {list(SEEDS)}, 95 % bootstrap CIs "
         "over recordings per seed")
REF2 = {"Location": enc_names["geoclip"], "Pooling": pool_names["average"]}
t2c = pd.DataFrame([{"a": k, "b": REF2[k.split(":")[0]],
                     **seed_compare([(abl[s][k], abl[s][REF2[k.split(":")[0]]]) for s in SEEDS], m, seed=SEED)}
                    for k in abl[SEEDS[0]] if k not in REF2.values() for m in ("median_error", "region")])
ch.table(t2c, P + "table2_compare", f"Ablations against the default (paired differences a - b, median km; region "
         f"as a fraction), mean and sd over training seeds {list(SEEDS)}, envelope of the per-seed 95 % bootstrap "
         f"CIs; a gain only outside both, {SIM}")

# %% [markdown]
# The paper's Table 2 for orientation, in its own table: its rows are decoded by argmax retrieval
# without a location prior (and its SINR row uses SINR's location embeddings, ours only SINR's architecture,
# trained from scratch), while every row above uses the mass decoder and the location prior, so no row
# above corresponds to one of the paper's (Tables 1 and A1 put the paper beside the argmax, no-prior rows).

# %%
ch.table(paper.paper_frame(paper.TABLE2).rename(columns={c: report.PAPER_PREFIX + c for c in paper.COLS}),
         P + "table2_paper", "The paper's Table 2 (iNatSounds test; argmax retrieval, no location prior), published "
         "values only, not beside our rows")

# %% [markdown]
# ### The checklist loss over training seeds
# The same head trained with and without the checklist loss for each training seed (weights and
# training order differ; the frozen backbone is shared). The mean and standard deviation over
# seeds are what to read: on 500 test recordings one percentage point is about five recordings.

# %%
ck = res.checklist
ch.table(ck.drop(columns=["checklist"]), P + "checklist_seeds", f"Checklist loss on/off per seed, {NAME} test, {SIM}")
ck_summary = ck.groupby("method", sort=False)[["median_km", "city_%", "region_%", "country_%", "continent_%"]].agg(
    ["mean", "std"])
ck_summary.columns = [f"{a} {b}{S}" for a, b in ck_summary.columns]
ck_summary = ck_summary.reset_index()
ch.table(ck_summary, P + "checklist",
         f"Checklist loss on/off: mean and std over seeds {list(run_cfg.seeds_of_ablations)}, "
         f"{NAME} test, {SIM}")

# %% [markdown]
# ## Table A1: galleries
# The same AG-CLIP model with different galleries at test time: uniform grids (1 and 0.5
# degrees), the 1-degree grid on land, the training locations, the training neighbours (0.5
# degree grid points inside H3 resolution-2 cells that hold training data) and the validation
# locations. The point counts differ from the paper's because our splits are small (3,000 training
# and 500 validation recordings). Each gallery is decoded by argmax and by mass, without and with
# the location prior; the paper's numbers sit beside the argmax rows without prior, which is what
# it used.

# %%
ga = res.galleries.copy()
ga["method"] = ga["method"] + " (" + ga["decoder"] + ", prior " + ga["prior"] + ")"
ga["points"] = ga["points"].map("{:,}".format)  # a count, not a simulated measurement
mapping = {m: agclip.PAPER_GALLERY[g] for m, g, d, pr in zip(ga["method"], ga["gallery"], ga["decoder"], ga["prior"])
           if d == "argmax" and pr == "none"}
ta1 = report.simulated_beside_paper(ga.drop(columns=["gallery", "decoder", "prior"]), paper.TABLE_A1, mapping,
                                      suffix=S)
ch.table(ta1, P + "tableA1", f"AG-CLIP with different galleries on the {NAME} test split, {SIM}, "
         "beside the paper's Table A1 (iNatSounds)")

# %% [markdown]
# ## Beyond the paper: fusing AG-CLIP with species ranges
# AG-CLIP's posterior and the species-range posterior of the top-1 species predicted by the
# backbone's classifier (BirdNET's range model at the recording's week) are multiplied as a
# product of experts, p ∝ p_AG-CLIP · p_ranges^w · prior, over the same gallery, with the same
# location prior on every row. The one weight w is chosen
# on the validation split; the test split is reported. Both parts alone are shown beside the fusion.
# With several training seeds, w is chosen on validation for each seed's model, and the second table
# gives the mean and sd over seeds.

# %%
ch.table(res.fusion_sweep, P + "fusion_val",
         f"Fusion weight w tried on the validation split, {SIM}; lowest median wins",
         floatfmt=".2f")
tf = summary_table(res.fusion, ci=True, seed=SEED)
ch.table(tf, P + "fusion", f"AG-CLIP fused with species ranges (w = {res.fusion_weight:g}, chosen on validation), "
         f"{NAME} test, {SIM}")
W_SEEDS = ", ".join(f"seed {s}: w = {w:g}" for s, w in res.fusion_weights.items())
ch.table(seed_summary(res.fusion_by_seed, seed=SEED), P + "fusion_seeds", f"AG-CLIP fused with species ranges, "
         f"mean and sd over training seeds (w chosen on validation per seed: {W_SEEDS}), {NAME} test, {SIM}")

# %% [markdown]
# ## Beyond the paper: is the posterior calibrated?
# For each test recording, the smallest set of 1-degree land cells holding 50 % (90 %) of AG-CLIP's
# posterior, its area in km², and how often the cell of the true location is inside (coverage). A
# calibrated posterior covers the truth about 50 % (90 %) of the time; less means over-confident,
# more under-confident. Two temperatures: the one learned by the contrastive loss, and one fitted
# on the validation split (the highest mean log posterior of the true cell, from a grid of
# multiples of the learned one), reported on test.

# %%
ch.table(res.calibration, P + "calibration", f"AG-CLIP credible sets on the land 1-degree gallery, {NAME} test, {SIM}",
         floatfmt=",.1f")

# %% [markdown]
# ## Posterior maps (the paper's Fig. 2)
# Test recordings at the 10th, 50th and 90th percentile of the argmax error on the land gallery:
# the posterior over the gallery (red, opacity = probability relative to the map's maximum), the
# true location (green) and the prediction (red cross); below the interactive maps, the same
# posteriors as one static figure (log colour scale, the 4,000 most probable gallery points).
# These are AG-CLIP alone, without the location prior of Table 1: the mass it puts on land where
# no training recording lies (Antarctica, for one) is what that prior down-weights.

# %%
examples = res.examples[:N_MAPS]
for k, ex in enumerate(examples):
    title = (f"AG-CLIP posterior, {ex['species']} ({ex['audio_id'][:8]}), error {ex['error_km']:,.0f} km — {SIM}")
    ch.map(maps.folium_posterior(ex["points"], ex["prob"], title, true=ex["true"], pred=ex["pred"]),
           f"{P}posterior_{k}")
    print(title)

# %%
if examples:
    fig, axes = plt.subplots(len(examples), 1, figsize=(10, 4.6 * len(examples)), squeeze=False)
    for ax, ex in zip(axes[:, 0], examples):
        plot_posterior(ex["points"], ex["prob"], f"{ex['species']}: error {ex['error_km']:,.0f} km", ex["true"],
                       ex["pred"], ax=ax)
    fig.suptitle(f"AG-CLIP posteriors over the {examples[0]['gallery']} gallery, {NAME} test — {SIM}")
    fig.tight_layout()
    ch.figure(fig, f"{P}posterior_maps")

# %% [markdown]
# ## Checks
# The statements the reading below relies on, evaluated on this run's numbers. A statement that one row
# beats another holds only when the paired bootstrap over the same test recordings (95 %,
# `metrics.paired_better`) puts the difference on its side; over training seeds, only outside the seed sd
# and every seed's interval (`seed_compare`). A better point estimate inside the interval is a tie.

# %%
t = t1.set_index("method")
reg = t["region_%" + S]
E, GE, CB = main_errors, res.gallery_errors, res.checklist_by_seed  # (N,) km per row: paired tests on the same clips
ckm = ck.groupby("checklist")["region_%"].mean()
ck_cmp = seed_compare([(CB[s][True], CB[s][False]) for s in SEEDS], "region", seed=SEED)
fz = tf.set_index("method")
fused = [m for m in fz.index if m.startswith("Fused")][0]
W = f"{res.prior_weight:g}"
grids = [g for g in ("uniform1", "uniform0.5", "land1") if g in GALLERIES]
cal = res.calibration.set_index(["temperature", "credible level"])["coverage %"]
cov90 = {k[0].split(" (")[0]: v for k, v in cal.items() if k[1] == "90 %"}

# %%
checks = [
    ("AG-CLIP (mass decoding) beats the hierarchical classifier at region accuracy",
     paired_better(E[MASS], E[HIER], "region", seed=SEED)),
    ("AG-CLIP (mass decoding) beats the hierarchical classifier's median error", paired_better(E[MASS], E[HIER], seed=SEED)),
    ("AG-CLIP + location prior (mass decoding) beats the hierarchical classifier at region accuracy",
     paired_better(E[P_MASS], E[HIER], "region", seed=SEED)),
    ("AG-CLIP + location prior (mass decoding) beats the hierarchical classifier's median error",
     paired_better(E[P_MASS], E[HIER], seed=SEED)),
    ("the location prior lowers the land-grid median error (argmax)",
     res.prior_weight == 0 or paired_better(GE["land1", "argmax", W], GE["land1", "argmax", "none"], seed=SEED)),
]

# %%
checks += [
    ("mass decoding beats argmax decoding at region accuracy", paired_better(E[MASS], E[ARGMAX], "region", seed=SEED)),
    ("AG-CLIP with argmax decoding beats the hierarchical classifier at region accuracy",
     paired_better(E[ARGMAX], E[HIER], "region", seed=SEED)),
    (f"the checklist loss raises region accuracy over {len(SEEDS)} seeds (outside seed sd and intervals)",
     ck_cmp["verdict"] == "better"),
    ("the checklist effect (mean region points) is smaller than the spread over seeds (std)",
     bool(abs(ckm[True] - ckm[False]) < ck.groupby("checklist")["region_%"].std().max())),
]

# %%
checks += [
    ("the fused model beats both parts at region accuracy (paired bootstrap, interval excludes 0)",
     all(paired_better(res.fusion[fused], res.fusion[m], "region", seed=SEED) for m in fz.index if m != fused)),
    (f"the fused model beats both parts at region accuracy over {len(SEEDS)} seeds (outside seed sd and intervals)",
     all(seed_compare([(fb[agclip.FUSION_ROWS[2]], fb[m]) for fb in res.fusion_by_seed.values()], "region",
                      seed=SEED)["verdict"] == "better" for m in agclip.FUSION_ROWS[:2])),
    ("the training-location gallery beats every grid gallery (argmax, region)",
     all(paired_better(GE["train", "argmax", "none"], GE[g, "argmax", "none"], "region", seed=SEED) for g in grids)),
    ("the learned temperature is over-confident (90 % sets cover the truth less than 90 % of the time)",
     bool(cov90["learned"] < 90)),
    ("the temperature fitted on validation brings the 90 % coverage closer to 90 %",
     bool(abs(cov90["fitted on validation"] - 90) < abs(cov90["learned"] - 90))),
]
ch.table(pd.DataFrame(checks, columns=["statement", "holds"]), P + "checks", f"Statements of the reading, checked on this "
         f"run (a gain: paired bootstrap over the test recordings, 95 % each, not adjusted for the other statements; over seeds: outside seed sd and every interval), {SIM}")

# %% [markdown]
# **Reading** (of the default SimSounds run; with `DATA="inat"` the checks table says which of
# these statements hold on the real audio). On SimSounds, AG-CLIP is only as good as what its
# audio encoder hears. The SMALL backbone is a small species classifier, frozen, so AG-CLIP's
# posterior is essentially "where does this species occur, weighted by where recordings are made":
# broad and multi-modal, and its single most similar gallery point (the paper's argmax) is a poor
# summary of it. Decoding the same posterior by its mass within 200 km helps AG-CLIP, and it helps
# the hierarchical classifier too when that is decoded the same way over the same gallery: the
# like-for-like comparison below (`03_table1_compare`, read out in `03_reading.md`) says whether
# AG-CLIP still differs from the classifier then; with the paper's fine-tuned encoder and 137K training recordings
# the posteriors are sharper and argmax retrieval works. The checklist loss's effect is small
# compared with the spread over seeds, as in the paper (+0.2 points at region level there). The
# galleries tell the clearest story: a location decoder trained on the GeoCLIP embeddings of only
# 3,000 places generalises poorly to grid points it never saw, so the uniform and land grids are
# far worse than the training locations, a much larger gap than the paper's Table A1 (137K
# training places) shows; galleries that follow the data (training, validation locations) are the
# right choice for a small training set. Part of that gap is this world's, not the method's: the
# SimSounds splits are drawn from the same clustered photo coordinates, not spatially disjoint, so
# the training locations hold a point near most test places (the share is read out below). A prior over where recordings are made (from the training
# locations, its weight chosen on validation) repairs most of that: the grid galleries stop
# favouring places no recording comes from, and it improves the training-location gallery as well.
# What fusion with the ranges of the top-1 predicted species does on this run is read out below
# from the fusion table (generated, `03_reading.md`). Calibration says how far the
# posterior's probabilities can be trusted: the learned contrastive temperature is tuned to
# separate a batch's locations, not to give calibrated probabilities over a 20K-cell grid, and the
# table shows how far a temperature fitted on validation moves the coverage towards the nominal 50
# % and 90 %.

# %% [markdown]
# ## Reading, generated from this run's tables (`03_reading.md`)

# %%
fv = res.fusion_sweep
tied = fv[fv.median_km == fv.median_km.min()]["weight"].tolist()
ag_f = [m for m in fz.index if m.startswith("AG-CLIP")][0]
rg_f = [m for m in fz.index if m.startswith("Ranges")][0]
fused_km, ag_km = (fz.loc[k, "median_km"] for k in (fused, ag_f))
same = t1c[(t1c.question == "same decoder and prior") & (t1c.metric == "median_error")]
dv = res.decoder_sweep[res.decoder_sweep["prior weight"] == res.prior_weight].drop_duplicates("decoder").sort_values(
    ["median_km", "region_%"], ascending=[True, False])
near = agclip.km_errors(sim.latlon("train")[agclip.nearest_point(sim.latlon("train"), sim.latlon("test"))], sim.latlon("test"))

# %%
sentences = [
    "AG-CLIP against the hierarchical classifier decoded the same way over the same gallery (median, AG-CLIP minus "
    f"classifier; the {len(same)} comparisons read together, verdicts Holm-adjusted over them): " + "; ".join(
        f"{r.a.split('(')[-1].rstrip(')')}{' with the prior' if 'prior' in r.a else ''}: "
        f"{'a tie' if r.verdict_holm == 'tie' else 'AG-CLIP ' + r.verdict_holm} ({r.diff:+,.0f} km, unadjusted 95 % "
        f"CI [{r.lo:+,.0f}, {r.hi:+,.0f}], Holm {p_text(r.p_holm, m=len(same))})" for r in same.itertuples()) + ".",
    f"On validation (prior weight {res.prior_weight:g}) the {dv.decoder.iloc[0]} decoder has the lower median ({dv.median_km.iloc[0]:,.0f} km "
    f"against {dv.median_km.iloc[1]:,.0f} km; region {dv['region_%'].iloc[0]:.1f} % against {dv['region_%'].iloc[1]:.1f} %): "
    f"the ablations' {run_cfg.decoder} decoder {'is' if dv.decoder.iloc[0] == run_cfg.decoder else 'is not'} that choice.",
    ("The fusion weight was a validation tie: " + ", ".join(f"{w:g}" for w in tied) + f" all reach {fv.median_km.min():,.2f} km; "
     f"w = {res.fusion_weight:g} was kept by the tie-break (region accuracy)." if len(tied) > 1 else
     f"The fusion weight w = {res.fusion_weight:g} was the validation optimum (no tie)."),
]

# %%
sentences += [
    (f"With w = 0 the fused model is AG-CLIP alone ({ag_km:,.0f} km): on this run "
     "the ranges of the predicted species add nothing that validation could see." if res.fusion_weight == 0 else
     book.say_compare(compare(res.fusion[fused], res.fusion[ag_f], seed=SEED),
                      f"The fused model ({fused_km:,.0f} km)", f"AG-CLIP alone ({ag_km:,.0f} km)")),
    book.say_compare(compare(res.fusion[fused], res.fusion[rg_f], seed=SEED), "The fused model", "the predicted-species ranges alone"),
    f"The checklist loss, over {len(SEEDS)} seeds: region {ckm[True]:.1f} % with it, {ckm[False]:.1f} % without "
    f"(seed sd up to {ck.groupby('checklist')['region_%'].std().max():.1f} points); paired per seed: "
    + book.say_compare(ck_cmp, "with the checklist loss", "without", unit="points"),
    f"{(near <= 25).mean():.0%} of the {NAME} test recordings lie within 25 km of a training location "
    f"({(near <= 1).mean():.0%} within 1 km): the training-location gallery holds a point near most test places, "
    "which favours that gallery over the grid galleries (the splits are not spatially disjoint).",
    f"Over training seeds {list(SEEDS)} (fusion weight chosen on validation per seed: {W_SEEDS}): " + book.say_compare(
        seed_compare([(fb[agclip.FUSION_ROWS[2]], fb[agclip.FUSION_ROWS[0]]) for fb in res.fusion_by_seed.values()],
                     seed=SEED), "the fused model", "AG-CLIP alone"),
    *(book.say_compare(r._asdict(), f"Table 2: {r.a}", r.b, unit="km" if r.metric == "median_error" else "points")
      for r in t2c.itertuples(index=False)),
]
ch.reading(P + "reading", sentences)
