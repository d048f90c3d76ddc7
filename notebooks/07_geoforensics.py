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
# # 07 · Geo-forensics: does a recording sound like where it claims to be?
#
# `soundloc check AUDIO --lat --lon [--date]` weighs two lines of evidence against a claimed
# place and week (`soundloc.forensics`):
#
# * **species**: each confidently detected species (score >= 0.5) whose range probability at the
#   claim is below 0.03 (BirdNET's own location-filter threshold) is out of range; we give that
#   probability and the nearest gallery point where the species does occur that week;
# * **posterior**: where the claim falls under the recording's own location posterior
#   (species-range geolocation of the same detections): the posterior mass of all places at
#   least as probable as the claim (outside the 95 % credible region = objection), its
#   percentile, and its distance to the best place.
#
# Verdict: *inconsistent* when two confident species are out of range, or one is and the claim
# is outside the credible region; *suspicious* when one line objects; else *consistent*. These
# thresholds are conventions fixed in advance, not tuned on the recordings below.
#
# Part 1 uses a **real** recording (Xeno-canto XC563936, Seattle, BirdNET detections); part 2 uses
# **simulated** SimSounds recordings (the project's own species classifier as detector), some
# spliced with calls of species that do not occur at the claimed place.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run: 2 degree gallery, 12 simulated recordings
SEED = 0  # seed for the simulated draws (recordings, spliced species, false claims)
DATA = "real+simulated"  # part 1 real audio (data mirror), part 2 SimSounds
DEVICE = "auto"  # device for the range model and the SimSounds classifier
OUT = None  # output folder; None = figures/
GALLERY = None  # candidate points; None = "land2" in SMALL mode, "land1" otherwise
FALSE_CLAIM = [48.8566, 2.3522]  # a false claim for the Seattle recording: Paris, another continent
N_SIM = None  # simulated test recordings; None = 12 in SMALL mode, 100 otherwise
N_SPLICE = 2  # out-of-range species spliced into each simulated recording
WORLD_SEED = 0  # which SimSounds world (shared with chapters 01, 03, 04, 05)
CLIP_PATH = None  # local CLIP ViT-L/14 folder for the image side; None = $SOUNDLOC_CLIP or the HF cache
IMAGE = None  # an image that claims the same place (used only with CLIP weights)

# %%
import folium
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from soundloc import book, maps, paths, pipeline
from soundloc.audio import load_audio
from soundloc.cli import main as soundloc_cli
from soundloc.data.sim import SimConfig, splice
from soundloc.forensics import (check, check_species, classifier_species, find_clip_weights, image_geolocate,
                                out_of_range_candidates)
from soundloc.geo import haversine
from soundloc.locate import LocateOptions, plot_posterior, locate_species
from soundloc.spectrogram import SpecConfig

ch = book.start("07", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, DATA=DATA, N_SPLICE=N_SPLICE,
                WORLD_SEED=WORLD_SEED, types={"DATA": str, "N_SPLICE": int, "WORLD_SEED": int})
GALLERY = GALLERY or ("land2" if SMALL else "land1")
N_SIM = N_SIM or (12 if SMALL else 100)
opts = LocateOptions(gallery=GALLERY, device=str(ch.device))
AUDIO = paths.mirror_dir() / "audio" if paths.mirror_dir() else paths.raw_dir() / "audio"
SEATTLE, SEATTLE_LL, SEATTLE_DATE = AUDIO / "XC563936_soundscape.mp3", (47.6766, -122.294), "2020-03-15"
SIM = book.SIM_LABEL

# %% [markdown]
# ## Part 1 (real): the Seattle soundscape, claimed where it was made and somewhere else

# %%
true_rep = check(SEATTLE, *SEATTLE_LL, date=SEATTLE_DATE, opts=opts)
false_rep = check(SEATTLE, *FALSE_CLAIM, date=SEATTLE_DATE, opts=opts)
print(true_rep.text(), false_rep.text(), sep="\n\n")

# %%
claims = pd.DataFrame([{"claim": name, "lat": r.claim[0], "lon": r.claim[1], "week": r.week, "verdict": r.verdict,
                        "confident species": len(r.species), "out of range": len(r.out_of_range),
                        "hpd_mass": r.hpd_mass, "percentile": r.percentile, "km to best place": r.distance_km}
                       for name, r in (("true place (Seattle)", true_rep), ("false claim", false_rep))])
ch.table(claims, "seattle_claims", "Real recording XC563936 (Seattle, week 11): the true place vs a false claim", floatfmt=".3f")
ch.table(false_rep.species, "seattle_false_species",
         f"Real recording XC563936 claimed at {FALSE_CLAIM}: confident BirdNET species and their ranges there", floatfmt=".3f")

# %% [markdown]
# The same from the command line (exit code 0 whatever the verdict; bad input exits 2):

# %%
assert soundloc_cli(["check", str(SEATTLE), "--lat", str(FALSE_CLAIM[0]), "--lon", str(FALSE_CLAIM[1]),
                     "--date", SEATTLE_DATE, "--gallery", GALLERY]) == 0

# %%
post = locate_species([true_rep.species.scientific_name.tolist()], [true_rep.species.score.tolist()], [true_rep.week], opts)[0]
fig, ax = plt.subplots(figsize=(11, 5))
plot_posterior(post.points, post.posterior, "Real XC563936: posterior of its confident species vs two claims",
               SEATTLE_LL, true_rep.best, ax=ax)
ax.plot(FALSE_CLAIM[1], FALSE_CLAIM[0], "D", color="orange", mec="k", ms=10, label="false claim"), ax.legend(loc="lower left")
ch.figure(fig, "seattle_claims")
m = maps.folium_posterior(post.points, post.posterior, "Real XC563936: audio posterior, true place (green), false claim (orange)",
                          true=SEATTLE_LL, pred=true_rep.best)
folium.Marker(FALSE_CLAIM, tooltip="false claim", icon=folium.Icon(color="orange")).add_to(m)
ch.map(m, "seattle_claims")

# %% [markdown]
# ## Part 2 (simulated): SimSounds recordings, honest, spliced, and falsely claimed
# For each of `N_SIM` SimSounds test recordings (its true place and week known), three cases:
# the original claimed at its true place; the same recording with `N_SPLICE` calls of species
# that are out of range there (`soundloc.data.sim.splice`, at the world's focal SNR) claimed at its
# true place; and the original claimed at another test recording's place at least 5,000 km away.
# The detector is the project's SimSounds species classifier (chapter 01's backbone, from the
# model zoo); its window softmax scores play BirdNET's role. Everything here is **simulated**.

# %%
sim = pipeline.prepare_sim(SimConfig.small(WORLD_SEED) if SMALL else SimConfig.large(WORLD_SEED), SpecConfig(small=SMALL),
                           progress=False)
cfg = pipeline.BaselineConfig.small(SEED, DEVICE) if SMALL else pipeline.BaselineConfig.paper(SEED, DEVICE)
backbone = pipeline.train_backbone(sim, cfg, progress=False)
rng = np.random.default_rng(SEED)
test = sim.test.iloc[rng.choice(len(sim.test), min(N_SIM, len(sim.test)), replace=False)]
ll = sim.latlon("test")

# %%
rows = []
for r in tqdm(test.itertuples(), total=len(test), desc="simulated checks"):
    wave = load_audio(r.filepath, sr=sim.sim_cfg.sr)
    planted = list(rng.choice(out_of_range_candidates(sim.species, r.lat, r.lon, int(r.week), opts=opts).scientific_name,
                              N_SPLICE, replace=False))
    far = ll[haversine(ll[:, 0], ll[:, 1], r.lat, r.lon) >= 5000]
    claim = far[rng.integers(len(far))]
    heard = classifier_species(backbone.model, wave, sim.spec_cfg, sim.species)
    heard_spliced = classifier_species(backbone.model, splice(wave, planted, sim.sim_cfg, rng=rng), sim.spec_cfg, sim.species)
    for case, sp, (la, lo) in (("original, true place", heard, (r.lat, r.lon)),
                               ("spliced, true place", heard_spliced, (r.lat, r.lon)),
                               ("original, false place (>= 5000 km)", heard, claim)):
        rep = check_species(sp, la, lo, int(r.week), opts=opts)
        rows.append({"audio_id": r.audio_id, "case": case, "focal": r.species, "planted": "; ".join(planted) if "spliced" in case else "",
                     "verdict": rep.verdict, "out_of_range": "; ".join(rep.out_of_range.scientific_name),
                     "planted_flagged": len(set(planted) & set(rep.out_of_range.scientific_name)) if "spliced" in case else np.nan,
                     "hpd_mass": rep.hpd_mass, "km_to_best": rep.distance_km})
cases = pd.DataFrame(rows)
ch.table(cases, "sim_cases", f"Geo-forensics per simulated recording and case, {SIM}", floatfmt=".3f")

# %%
verdicts = (cases.groupby("case").verdict.value_counts().unstack(fill_value=0).reindex(columns=["consistent", "suspicious",
            "inconsistent"], fill_value=0).reset_index())
verdicts.insert(1, "data", SIM)
verdicts["flagged_%"] = 100 * (verdicts.suspicious + verdicts.inconsistent) / verdicts[["consistent", "suspicious", "inconsistent"]].sum(axis=1)
planted = cases.planted_flagged.dropna()
print(f"planted species caught as out of range: {int(planted.sum())} of {N_SPLICE * len(planted)} "
      f"({100 * planted.sum() / max(1, N_SPLICE * len(planted)):.0f} %)")
ch.table(verdicts, "sim_verdicts", f"Verdicts on {len(test)} SimSounds test recordings per case, {SIM}")

# %% [markdown]
# ## Image / text side (CLIP)
# With local CLIP ViT-L/14 weights, an image said to come from the same place is geolocated with
# GeoCLIP's image encoder and compared with the claim. Without them (this machine has no network
# and the project does not ship CLIP), the chapter skips that side and says so.

# %%
clip = find_clip_weights(CLIP_PATH)
if clip is None or IMAGE is None:
    print(f"SKIPPED image/text geolocation: {'no local CLIP ViT-L/14 weights found' if clip is None else 'no IMAGE given'} "
          "(set CLIP_PATH / $SOUNDLOC_CLIP to a local openai/clip-vit-large-patch14 folder and IMAGE to an image file)")
else:
    img = image_geolocate(IMAGE, clip)
    img["km_to_claim"] = haversine(img.lat.to_numpy(), img.lon.to_numpy(), *SEATTLE_LL)
    ch.table(img, "image_side", f"GeoCLIP image geolocation of {IMAGE} (real image) vs the Seattle claim")

# %% [markdown]
# ## Reading
# On the real recording the species line carries the decision: the confident BirdNET species are
# North American and in range in Seattle in March, and out of range at the false claim on another
# continent (with their nearest occurrence thousands of km away). The posterior line agrees. The
# simulated part measures how often the same rules flag planted and false claims with a much
# weaker detector (the small SimSounds classifier): read the verdict table's `flagged_%` for the
# honest originals as the false-alarm rate and for the spliced / false-place cases as the
# detection rate. A planted species the classifier does not hear confidently cannot be flagged.
