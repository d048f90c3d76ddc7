"""Species-range geolocation on hand-checkable synthetic ranges, and on BirdNET's real ranges."""
import numpy as np
import pandas as pd
import pytest
import torch

from soundloc import taxonomy
from soundloc.sphere import haversine, land_grid, uniform_grid
from soundloc.range_geolocation import RangeGeolocator, RangeLocConfig, gallery, vmf_log_density
from soundloc.range_model import RangeModel
from soundloc.ranges import load_range_model


class DiscModel(RangeModel):
    """Species with disc ranges: p = high inside (centre, radius km), low outside."""

    name = "discs"

    def __init__(self, discs: dict, inside=0.9, outside=0.001, over=None):
        self.discs, self.species = discs, list(discs)
        self.inside, self.outside, self.over = inside, outside, over  # over: ((lat, lon), km, p) for ALL species

    def prob(self, lat, lon, week=None, species_idx=None):
        names = self.species if species_idx is None else [self.species[i] for i in species_idx]
        lat, lon = np.asarray(lat, float), np.asarray(lon, float)
        cols = []
        for n in names:
            (clat, clon), r, *p = self.discs[n]
            inside = p[0] if p else self.inside
            cols.append(np.where(haversine(lat, lon, clat, clon) <= r, inside, self.outside))
        p = np.stack(cols, 1)
        if self.over is not None:
            (olat, olon), r, po = self.over
            p[haversine(lat, lon, olat, olon) <= r] = po
        return p.astype(np.float32)


G = uniform_grid(1.0)
DISCS = {"A": ((0, 0), 2000), "B": ((0, 30), 2000), "C": ((40, -100), 3000)}


def _loc(model=None, **kw):
    return RangeGeolocator(model or DiscModel(DISCS), G, RangeLocConfig(prior_weight=0, **kw), gallery_name="g1")


def test_overlap_of_two_ranges_is_found_and_posterior_sums_to_one():
    r = _loc().locate([["A", "B"]], return_posterior=True, progress=False)
    post = r.posterior[0]
    assert post.sum() == pytest.approx(1.0, abs=1e-4)  # float32 over 64,800 points
    lat, lon = r.pred.lat[0], r.pred.lon[0]
    assert haversine(lat, lon, 0, 0) <= 2000 and haversine(lat, lon, 0, 30) <= 2000  # inside both discs
    # almost all mass lies in the lens where the discs overlap
    both = (haversine(G[:, 0], G[:, 1], 0, 0) <= 2000) & (haversine(G[:, 0], G[:, 1], 0, 30) <= 2000)
    assert post[both].sum() > 0.95


def test_unknown_species_are_reported_and_fall_back():
    r = _loc().locate([["A", "Notus species"], ["Notus species"]], progress=False)
    assert r.unknown == {"Notus species": 2}
    assert list(r.pred.fallback) == [False, True] and list(r.pred.n_known) == [1, 0]
    assert "no species the range model covers" in " ".join(r.notes)


def test_genus_proxy_locates_an_uncovered_species_by_its_congeners():
    # "Hyla nova" is not covered; its two covered congeners both live around (40, -100) only.
    m = DiscModel({"Hyla a": ((40, -100), 1500), "Hyla b": ((40, -95), 1500), "Rana c": ((0, 30), 2000)})
    off = _loc(m).locate([["Hyla nova"], ["Bufo nova"]], progress=False)
    on = _loc(m, genus_proxy=True).locate([["Hyla nova"], ["Bufo nova"]], return_posterior=True, progress=False)
    assert list(off.pred.fallback) == [True, True] and list(on.pred.fallback) == [False, True]  # no Bufo in the model
    assert list(on.pred.n_proxy) == [1, 0] and on.unknown == {"Hyla nova": 1, "Bufo nova": 1}  # still reported
    assert haversine(on.pred.lat[0], on.pred.lon[0], 40, -97.5) <= 1500
    # the proxy map is the congeners' mean: 0.9 where both live, 0.45 where one does, 0.001 elsewhere
    both = (haversine(G[:, 0], G[:, 1], 40, -100) <= 1500) & (haversine(G[:, 0], G[:, 1], 40, -95) <= 1500)
    assert on.posterior[0][both].sum() > 0.6
    assert "genus proxy" in " ".join(on.notes)


def test_absence_of_a_common_species_lowers_a_place():
    # A everywhere in a big disc; B common only in its eastern part. Hearing A but not B -> west.
    m = DiscModel({"A": ((0, 15), 3000), "B": ((0, 30), 1200, 0.95)})
    pres = _loc(m).locate([["A"]], return_posterior=True, progress=False).posterior[0]
    absn = _loc(m, absence_weight=1.0).locate([["A"]], return_posterior=True, progress=False).posterior[0]
    in_b = haversine(G[:, 0], G[:, 1], 0, 30) <= 1200
    assert absn[in_b].sum() < 0.2 * pres[in_b].sum()


def test_richness_normalisation_resists_over_predicting_regions():
    # A and B occur (p = 0.9) over a large area; inside it, region R (50N 60E) predicts EVERY species
    # at 0.99, 32 species in all: the data-poor artefact of range models seen in northern Iran
    discs = {f"s{i}": ((-60, -60), 100) for i in range(30)}
    discs.update({"A": ((25, 30), 6000), "B": ((25, 30), 6000)})
    m = DiscModel(discs, over=((50, 60), 1500, 0.99))
    for name, ok in ((None, False), (1.0, True)):
        kw = {} if name is None else {"richness_weight": name}
        r = _loc(m, **kw).locate([["A", "B"]], progress=False)
        in_r = haversine(r.pred.lat[0], r.pred.lon[0], 50, 60) <= 1500
        assert in_r != ok  # raw p picks the over-predicting region (0.99 > 0.9), the multinomial does not


def test_decoders_on_a_hand_made_posterior():
    loc = _loc()
    post = np.zeros(len(G), np.float32)
    lone = np.argmin(haversine(G[:, 0], G[:, 1], -30, 120))
    cluster = np.flatnonzero(haversine(G[:, 0], G[:, 1], 45, 10) <= 150)
    post[lone] = 0.2
    post[cluster] = 0.8 / len(cluster)  # each below 0.2, together 0.8
    p = torch.as_tensor(np.log(np.maximum(post, 1e-30)))[None]  # decode takes log densities (equal weights here)
    la, lo, _ = loc.decode(p)
    assert haversine(la[0], lo[0], -30, 120) < 100  # argmax: the lone point
    la, lo, _ = loc.with_config(decoder="mass_within", radius_km=200).decode(p)
    assert haversine(la[0], lo[0], 45, 10) < 200
    la, lo, _ = loc.with_config(decoder="geomedian").decode(p)
    assert haversine(la[0], lo[0], 45, 10) < 200  # the geometric median sits with the majority mass
    _, _, tk = loc.decode(p, top_k=3)
    assert tk.shape == (1, 3, 3) and tk[0, 0, 2] == pytest.approx(0.2)


def test_range_posterior_on_a_lat_lon_grid_is_a_density_over_area():
    """One species everywhere: flat density; cells' masses follow their areas, integrating to 1 over area."""
    from soundloc.sphere import cell_areas

    loc = RangeGeolocator(DiscModel({"A": ((0, 0), 30000)}), G, RangeLocConfig(prior_weight=0), gallery_name="uniform1")
    areas = cell_areas(G, 1.0)
    assert np.allclose(loc.areas, areas)
    post = loc.locate([["A"]], return_posterior=True, progress=False).posterior[0].astype(np.float64)
    dens = post / areas  # per km^2
    assert (dens * areas).sum() == pytest.approx(1.0, abs=1e-5)
    eq, s80 = np.abs(G[:, 0] - 0.5) < 1e-9, np.abs(G[:, 0] + 79.5) < 1e-9
    assert dens[eq].mean() == pytest.approx(dens[s80].mean(), rel=1e-4)  # equal mass per km^2
    polar = np.abs(G[:, 0]) > 60  # a third of the points but 13.4 % of the sphere
    assert post[polar].sum() == pytest.approx(1 - np.sin(np.deg2rad(60)), abs=1e-4)
    # a sampled gallery (no grid name) keeps equal weights
    flat = RangeGeolocator(DiscModel({"A": ((0, 0), 30000)}), G, RangeLocConfig(prior_weight=0), gallery_name="g1")
    assert flat.areas is None and flat.locate([["A"]], return_posterior=True, progress=False).posterior[0][polar].sum() \
        == pytest.approx(polar.mean(), abs=1e-4)
    with pytest.raises(ValueError, match="not on the cell-centred"):
        RangeGeolocator(DiscModel(DISCS), G + 0.25, gallery_name="uniform1")


def test_mass_decoder_weighs_cells_by_area():
    """Two 300 km discs, the equatorial one 1.2x denser: per point, the polar disc (3.9x more 1 deg points) would
    hold more mass; per km^2 the equatorial one does, and argmax is the densest point."""
    loc = RangeGeolocator(DiscModel(DISCS), G, RangeLocConfig(prior_weight=0, decoder="mass_within", radius_km=300),
                          gallery_name="uniform1")
    scores = np.full(len(G), -50.0)
    scores[haversine(G[:, 0], G[:, 1], 75, 10) <= 300] = 0.0
    scores[haversine(G[:, 0], G[:, 1], 0, 10) <= 300] = np.log(1.2)
    la, lo, _ = loc.decode(torch.as_tensor(scores, dtype=torch.float32)[None])
    assert haversine(la[0], lo[0], 0, 10) < 300
    la, lo, _ = RangeGeolocator(DiscModel(DISCS), G, loc.config, gallery_name="g1").decode(
        torch.as_tensor(scores, dtype=torch.float32)[None])
    assert haversine(la[0], lo[0], 75, 10) < 300  # equal weights: the polar disc's many small cells win
    la, lo, _ = loc.with_config(decoder="argmax").decode(torch.as_tensor(scores, dtype=torch.float32)[None])
    assert haversine(la[0], lo[0], 0, 10) < 300


def test_config_validation():
    with pytest.raises(ValueError, match="decoder must be one of"):
        RangeLocConfig(decoder="mean")
    with pytest.raises(ValueError, match="unknown gallery"):
        gallery("ocean2")


def test_vmf_prior_is_a_normalised_smooth_density():
    pts = land_grid(2.0)
    lp = vmf_log_density(pts, np.array([[48.0, 2.0]] * 10 + [[-33.9, 151.2]]), 300)
    assert np.exp(lp).sum() == pytest.approx(1.0)
    paris = np.argmin(haversine(pts[:, 0], pts[:, 1], 48, 2))
    sydney = np.argmin(haversine(pts[:, 0], pts[:, 1], -33.9, 151.2))
    assert lp[paris] > lp[sydney] > np.median(lp)  # 10 centres beat 1, both beat empty land


def test_vmf_density_matches_a_float64_sum_of_kernels():
    """The float32 kernel sums against the definition, log sum_m w_m exp(kappa (cos d_nm - 1)), in float64."""
    from soundloc.sphere import to_xyz
    from soundloc.range_geolocation import kappa_for_bandwidth

    rng = np.random.default_rng(1)
    pts = np.c_[rng.uniform(-89, 89, 3000), rng.uniform(-180, 180, 3000)]
    cen = np.round(np.c_[rng.uniform(-60, 70, 400), rng.uniform(-180, 180, 400)], 1)  # already on the 0.1 deg bins
    for bw in (50.0, 200.0, 1000.0):
        k = kappa_for_bandwidth(bw)
        cos = to_xyz(pts[:, 0], pts[:, 1]) @ to_xyz(cen[:, 0], cen[:, 1]).T
        ref = np.log(np.exp(k * (cos - 1)).sum(1) + 1e-300)
        keep = ref > ref.max() - 50  # where the density is not vanishingly small (float64 underflow below)
        ref = ref - np.log(np.exp(ref - ref.max()).sum()) - ref.max()
        got = vmf_log_density(pts, cen, bw)
        assert np.abs(got - ref)[keep].max() < 2e-7 * k + 1e-4  # float32: about 1e-7 relative on kappa x.c



@pytest.fixture(scope="module")
def birdnet():
    return load_range_model("birdnet", "torch")


def test_real_ranges_locate_australian_birds(birdnet):
    loc = RangeGeolocator(birdnet, gallery("land1"), RangeLocConfig(prior_weight=0), gallery_name="land1")
    r = loc.locate([["Gymnorhina tibicen", "Dacelo novaeguineae", "Manorina melanocephala"],
                    ["Cardinalis cardinalis", "Poecile carolinensis", "Thryothorus ludovicianus"]],
                   weeks=[20, 20], progress=False)
    assert -40 < r.pred.lat[0] < -15 and 135 < r.pred.lon[0] < 155  # eastern Australia
    assert 25 < r.pred.lat[1] < 45 and -100 < r.pred.lon[1] < -70  # south-eastern USA


def test_taxonomy_maps_documented_synonyms_only(birdnet):
    t = taxonomy.reconcile(birdnet, ["Coloeus monedula", "Setophaga auduboni", "Hyla cinerea", "Ranoidea caerulea", "Turdus merula"],
                           [None, None, "Green Tree Frog", "Green Tree Frog", "Eurasian Blackbird"])
    got = dict(zip(t.name, t.mapped_to))
    assert "Turdus merula" not in got  # known already
    assert got["Coloeus monedula"] == "Corvus monedula" and got["Setophaga auduboni"] == "Setophaga coronata"
    assert got["Hyla cinerea"] == "Dryophytes cinereus"
    assert pd.isna(got["Ranoidea caerulea"])  # same common name, different genus and epithet: not mapped
    m = load_range_model("birdnet", "torch")
    assert taxonomy.apply(m, t) == 3
    idx, unk = m.match(["Coloeus monedula", "Ranoidea caerulea"])
    assert m.species[idx[0]] == "Corvus monedula" and unk == ["Ranoidea caerulea"]


def test_chunked_retrieval_equals_unchunked():
    from soundloc.location_encoders import retrieve

    g = torch.nn.functional.normalize(torch.randn(5000, 32), dim=1)
    q = torch.randn(300, 32)
    v1, i1 = retrieve(q, g, k=3, chunk=7)
    v2, i2 = retrieve(q, g, k=3, chunk=100000)
    full = torch.nn.functional.normalize(q, dim=1) @ g.T
    assert torch.equal(i1, i2) and torch.equal(i1[:, 0], full.argmax(1))
    torch.testing.assert_close(v1, v2)


def test_prewarm_disk_cache_gives_the_in_memory_maps_and_is_shared(tmp_path, monkeypatch):
    """prewarm(disk_cache=True) keeps each week's (K, N) float16 maps on disk: equal to the in-memory ones, and a
    second geolocator (another chapter) reads them without running the range model."""
    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    model = load_range_model("birdnet", "torch")
    pts = gallery("land2")[::7]
    names = [model.species[i] for i in (10, 200, 3000)]
    mem = RangeGeolocator(model, pts, RangeLocConfig(), gallery_name="land2-sub")
    mem.prewarm([names, names], [8, 20], progress=False)
    disk = RangeGeolocator(model, pts, RangeLocConfig(), gallery_name="land2-sub")
    disk.prewarm([names, names], [8, 20], progress=False, disk_cache=True)
    idx = np.unique(model.match(names)[0])
    for w in (8, 20):
        assert np.array_equal(disk.species_maps(idx, w), mem.species_maps(idx, w))
    assert len(list((tmp_path / "cache" / "ranges").glob("*.npy"))) == 2
    calls = []
    monkeypatch.setattr(type(model), "prob", lambda *a, **k: calls.append(1))
    again = RangeGeolocator(model, pts, RangeLocConfig(), gallery_name="land2-sub")
    again.prewarm([names, names], [8, 20], progress=False, disk_cache=True)
    assert not calls and np.array_equal(again.species_maps(idx, 8), mem.species_maps(idx, 8))


def test_sweep_builds_each_weeks_totals_in_one_pass_and_gives_the_lazy_values(tmp_path, monkeypatch):
    """A sweep whose variants need both per-week totals (absence and richness) runs the range model once per week,
    not once per total, and the totals and the sweep table equal those of the lazy path (one pass per total)."""
    from soundloc.range_geolocation import sweep

    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path))
    model = DiscModel(DISCS)
    q = pd.DataFrame({"species": [["A"], ["B", "A"], ["C"]], "week": [3, 3, 40], "lat": [0.0, 0.0, 40.0],
                      "lon": [5.0, 20.0, -95.0]})
    grid = [dict(absence_weight=1.0, richness_weight=0.0), dict(absence_weight=0.0, richness_weight=1.0),
            dict(absence_weight=1.0, richness_weight=1.0, detectability=0.5)]
    calls, prob = [], DiscModel.prob

    def counting(self, lat, lon, week=None, species_idx=None):
        calls.append(species_idx)
        return prob(self, lat, lon, week, species_idx)

    monkeypatch.setattr(DiscModel, "prob", counting)
    fast = RangeGeolocator(model, G, RangeLocConfig(prior_weight=0.0), gallery_name="g-fast")
    table = sweep(fast, q, grid, progress=False)
    full = [c for c in calls if c is None]  # all-species passes (the per-week totals)
    n_chunks = -(-len(G) // 4096)
    assert len(full) == 2 * n_chunks  # two weeks, one pass each, three totals per week
    lazy = RangeGeolocator(model, G, RangeLocConfig(prior_weight=0.0), gallery_name="g-lazy")
    calls.clear()
    rows = []
    for kw in grid:  # the lazy path: each total built on first use
        r = lazy.with_config(**kw).locate(list(q.species), weeks=q.week, progress=False)
        rows.append(r.pred[["lat", "lon"]].to_numpy())
    assert len([c for c in calls if c is None]) == 6 * n_chunks  # three totals x two weeks, a pass each
    assert fast._totals.keys() == lazy._totals.keys()
    for k in fast._totals:
        assert np.array_equal(fast._totals[k], lazy._totals[k])
    again = sweep(lazy, q, grid, progress=False)  # everything cached now
    pd.testing.assert_frame_equal(table, again)


# a chapter locating with a preset: LocateOptions(preset=...), range_geolocator(..., "name"), PRESETS["name"], --preset name
_PRESET_USE = r"""(?:preset\s*=\s*|range_geolocator\([^)]*?|PRESETS\[\s*|--preset["']\s*,\s*)["']{name}["']"""


def test_the_preset_chosen_on_all_inatsounds_test_recordings_is_reported_by_no_chapter():
    """Every preset names the data it was chosen on; "single" was chosen on all iNatSounds test recordings, so a number
    with it there would be in-sample: no chapter locates with it (the detector itself is checked on hand-made lines)."""
    import re

    from soundloc.range_geolocation import PRESET_CHOSEN_ON, PRESETS
    from soundloc.runner import chapters

    assert set(PRESET_CHOSEN_ON) == set(PRESETS) and "iNatSounds test" in PRESET_CHOSEN_ON["single"]
    use = re.compile(_PRESET_USE.format(name="single"))
    for line in ('LocateOptions(gallery=G, preset="single")', 'range_geolocator(GALLERY, "single", dev)',
                 "PRESETS['single']", 'soundloc_cli(["species-locate", x, "--preset", "single"])'):
        assert use.search(line), line
    assert not use.search('range_geolocator(GALLERY, "lists", dev)') and not use.search('a "single" species')
    assert [p.name for p in chapters() if use.search(p.read_text())] == []
    lists = re.compile(_PRESET_USE.format(name="lists"))
    assert "12_trust.py" in [p.name for p in chapters() if lists.search(p.read_text())]  # it finds a real use
