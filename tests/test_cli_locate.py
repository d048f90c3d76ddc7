"""`soundloc locate` and `soundloc check` on real audio; the method registry; one-line errors with exit 2."""
import json

import numpy as np
import pytest
import soundfile as sf

from soundloc import locator as L
from soundloc.cli import main
from soundloc.sphere import haversine

SEATTLE = (47.6766, -122.294)


@pytest.fixture(scope="module")
def seattle(mirror):
    return str(mirror / "audio" / "XC563936_soundscape.mp3")


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_locate_seattle_json_returns_a_location(seattle, capsys, one_thread):
    """The issue's Done-when: default gallery (land1), date given."""
    assert main(["locate", seattle, "--date", "2020-03-15", "--json"]) == 0
    out = _json(capsys)
    r = out["results"][0]
    err = float(haversine(r["lat"], r["lon"], *SEATTLE))
    print(f"Seattle locate error: {err:.1f} km at ({r['lat']}, {r['lon']})")
    assert r["week"] == 11 and out["method"] == "ranges" and err < 500
    assert len(r["top_k"]) == 5 and r["top_k"][0]["lat"] == r["lat"]
    assert np.all(np.diff([t["per_km2"] for t in r["top_k"]]) <= 0)  # the densest points first (land1 has cell areas)
    from soundloc.sphere import cell_areas

    assert all(t["prob"] / t["per_km2"] == pytest.approx(cell_areas(np.array([[t["lat"], t["lon"]]]), 1.0)[0], rel=1e-6)
               for t in r["top_k"])  # mass = density x the point's 1 deg cell area
    assert r["species"][0]["scientific_name"] == "Junco hyemalis"


def test_locate_text_map_and_aggregate(seattle, tmp_path, capsys, one_thread):
    m = tmp_path / "m.html"
    assert main(["locate", seattle, seattle, "--date", "2020-03-15", "--gallery", "land2", "--top-k", "3",
                 "--aggregate", "--map", str(m)]) == 0
    out, err = capsys.readouterr()
    assert out.count("best location") == 3 and "Junco hyemalis (Dark-eyed Junco)" in out and " 3. " in out
    assert "BirdNET" in err and "species ranges" in err  # several files: progress bars on stderr
    html = m.read_text()
    assert "leaflet" in html.lower() and "prediction" in html


@pytest.mark.parametrize("claim,verdict", [(SEATTLE, "consistent"), ((48.8566, 2.3522), "inconsistent"),
                                           ((-33.87, 151.21), "inconsistent")])
def test_check_flags_false_continent_and_passes_true_place(seattle, capsys, one_thread, claim, verdict):
    assert main(["check", seattle, "--lat", str(claim[0]), "--lon", str(claim[1]), "--date", "2020-03-15",
                 "--gallery", "land2", "--json"]) == 0
    r = _json(capsys)
    assert r["verdict"] == verdict
    assert all(isinstance(s["out_of_range"], bool) for s in r["species"])
    assert any(s["out_of_range"] for s in r["species"]) == (verdict != "consistent")


def test_check_text(seattle, capsys, one_thread):
    assert main(["check", seattle, "--lat", "48.8566", "--lon", "2.3522", "--gallery", "land2"]) == 0
    out = capsys.readouterr().out
    assert "verdict: INCONSISTENT" in out and "no date" in out


def test_registry_plugs_in_methods(seattle, capsys, monkeypatch):
    def fake(paths, weeks, opts):
        pts = np.array([[10.0, 20.0], [30.0, 40.0]])
        return [L.MethodOutput(pts, np.array([0.25, 0.75]), 30.0, 40.0) for _ in paths]

    monkeypatch.setitem(L._METHODS, "fake", L._Method(fake, "test method"))
    assert "fake" in L.available_methods() and "ranges" in L.available_methods()
    assert main(["locate", seattle, "--method", "fake", "--top-k", "2", "--json"]) == 0
    r = _json(capsys)["results"][0]
    assert (r["lat"], r["lon"]) == (30.0, 40.0) and [t["prob"] for t in r["top_k"]] == [0.75, 0.25]
    with pytest.raises(ValueError, match="unknown locate method 'nosuch'; registered: agclip, fake, fused, ranges"):
        L.get_method("nosuch")


def test_methods_registered_by_path_load_on_first_use_only(monkeypatch):
    """Listing the methods (every `soundloc` command builds its --method choices) imports no torch model code; a
    method registered by "module:function" is imported when first asked for; a malformed path is refused."""
    import subprocess
    import sys

    code = ("import sys; from soundloc.locator import available_methods; m = available_methods(); "
            "print(sorted(m), 'torch' in sys.modules, 'soundloc.agclip' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['agclip', 'fused', 'ranges'] False False"
    from soundloc.agclip.locate_methods import locate_fused

    assert L.get_method("fused") is locate_fused
    monkeypatch.setattr(L, "_METHODS", dict(L._METHODS))
    L.register_method("textwrap-fill", "textwrap:fill", "a stand-in")
    assert L._METHODS["textwrap-fill"].fn == "textwrap:fill"  # not imported yet
    import textwrap

    assert L.get_method("textwrap-fill") is textwrap.fill
    with pytest.raises(ValueError, match="'textwrap.fill' is not a 'module:function' path"):
        L.register_method("bad", "textwrap.fill")


def _bad(tmp_path, seattle):
    txt = tmp_path / "notes.wav"
    txt.write_text("hello")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000 * 3), 48000)
    gold, pred = tmp_path / "gold.csv", tmp_path / "pred.csv"
    gold.write_text("audio_id,latitude,longitude\na,1,2\nb,3,4\n")
    pred.write_text("audio_id,latitude,longitude\na,1,2\nc,3,4\n")
    return [
        (["eval", str(pred), "--gold", str(gold)], f"{pred} against {gold}: audio ids do not match the gold set: "
         "1 gold ids without a prediction (e.g. ['b']), 1 predicted ids not in the gold set (e.g. ['c'])"),
        (["locate", str(tmp_path / "nope.mp3")], "nope.mp3: no such file"),
        (["eval", str(tmp_path), "--gold", str(gold)], f"{tmp_path}: a folder, not a file"),
        (["locate", str(txt)], "notes.wav: not a readable audio file"),
        (["locate", str(silent)], "silent.wav: silent"),
        (["locate", seattle, "--date", "2020-13-01"], "'2020-13-01' is not a date YYYY-MM-DD"),
        (["locate", seattle, "--method", "nosuch"], "invalid choice: 'nosuch'"),
        (["locate", seattle, "--top-k", "0"], "--top-k 0: must be >= 1"),
        (["locate", seattle, "--device", "gpu"], "argument --device: 'gpu'"),
        (["check", seattle, "--lat", "95", "--lon", "0"], "is not a latitude in [-90, 90]"),
        (["check", seattle, "--lat", "abc", "--lon", "0"], "argument --lat: invalid float value: 'abc'"),
        (["check", seattle, "--lat", "10"], "required: --lon"),
        (["check", seattle, "--lat", "10", "--lon", "1", "--hpd-level", "1.5"], "hpd_level 1.5 must lie in (0, 1)"),
        (["locate", seattle, "-o", str(tmp_path / "r.csv"), "--map", "m.html", "--json"],
         "--map --json: not made by a batch (-o)"),
        (["check", seattle, "--lat", "10", "--lon", "1", "-o", str(tmp_path / "f.csv")], "-o goes with --claims"),
        (["check", seattle, "--claims", str(gold), "-o", str(tmp_path / "f.csv")], "AUDIO: not used with --claims"),
        (["locate", seattle, "--min-conf", "2"], "--min-conf 2.0: must lie in [0, 1] (a BirdNET score)"),
        (["locate", seattle, "--radius-km", "-5"], "--radius-km -5.0: must be > 0"),
        (["soundscape", "--lat", "47", "--lon", "-122", "--map", str(tmp_path / "m.html")], "--map goes with --species"),
        (["soundscape", "--lat", "47", "--lon", "-122", "-o", str(tmp_path / "o.csv")], "-o goes with --sites"),
        (["soundscape", "--species", "Turdus merula", "--map-step", "0"], "--map-step 0.0: must be > 0 degrees"),
        (["check", str(tmp_path / "nope.wav"), "--lat", "1", "--lon", "1"], "nope.wav: no such file"),
    ]


def test_bad_input_is_one_line_exit_2(tmp_path, seattle, capsys):
    for argv, msg in _bad(tmp_path, seattle):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and err.count("\n") == 0, (argv, err)
        assert err.startswith(f"soundloc {argv[0]}: error: "), err


def test_help_has_examples(capsys):
    for cmd in ("locate", "check", "eval", "species-locate"):
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0 and f"soundloc {cmd} " in capsys.readouterr().out.split("examples:")[1]


@pytest.mark.parametrize("cmd", ["locate", "check", "eval", "species-locate", "soundscape"])
def test_help_fits_an_80_column_terminal(cmd, capsys, monkeypatch):
    """Every line of each subcommand's help but an example command fits in 80 columns (the description wraps)."""
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    long = [ln for ln in capsys.readouterr().out.splitlines() if len(ln) > 80 and not ln.startswith("  soundloc ")]
    assert not long, long


@pytest.fixture(scope="module")
def tiny_agclip(tmp_path_factory):
    """A random-weight AG-CLIP checkpoint (MobileNetV3-Small on 32 px inputs, GeoCLIP location space)."""
    import torch

    from soundloc.agclip.model import AGCLIPConfig, AGCLIPHead
    from soundloc.encoders import AudioEncoder, EncoderConfig
    from soundloc.models import GeoModel, save_model

    torch.manual_seed(0)
    enc = AudioEncoder(EncoderConfig("mobilenet_v3_small", input_size=32, dropout=0.0))
    return str(save_model(GeoModel(enc, AGCLIPHead(AGCLIPConfig(in_dim=enc.dim))), tmp_path_factory.mktemp("m") / "ag.pt"))


def test_locate_agclip_and_fused_methods(seattle, tiny_agclip, capsys, one_thread):
    assert {"ranges", "agclip", "fused"} <= set(L.available_methods())
    assert main(["locate", seattle, "--method", "agclip", "--model", tiny_agclip, "--gallery", "land2", "--json"]) == 0
    ag = _json(capsys)["results"][0]
    assert ag["method"] == "agclip" and ag["species"] == [] and -90 <= ag["lat"] <= 90
    assert ag["top_k"][0]["lat"] == ag["lat"] and "location prior weight 1" in ag["notes"][0]
    # fused = AG-CLIP logits + w log p_ranges: with w large the range expert decides, so it lands where ranges do
    # (argmax: the most probable cell is the same whether or not the range posterior is tempered for its regions)
    args = [seattle, "--date", "2020-03-15", "--gallery", "land2", "--json", "--decoder", "argmax"]
    assert main(["locate", *args]) == 0
    rg = _json(capsys)["results"][0]
    assert main(["locate", *args, "--method", "fused", "--model", tiny_agclip, "--fusion-weight", "50"]) == 0
    fu = _json(capsys)["results"][0]
    assert (fu["lat"], fu["lon"]) == (rg["lat"], rg["lon"]) and fu["species"][0]["scientific_name"] == "Junco hyemalis"
    locs = L.locate(seattle, "2020-03-15", "fused", opts=L.LocateOptions(gallery="land2", model=tiny_agclip,
                                                                            fusion_weight=0.5))
    assert locs[0].posterior.sum() == pytest.approx(1.0)


def test_agclip_method_needs_a_model(seattle, tmp_path, capsys):
    assert main(["locate", seattle, "--method", "agclip"]) == 2
    assert "--method agclip needs --model CHECKPOINT" in capsys.readouterr().err
    assert main(["locate", seattle, "--method", "fused", "--model", str(tmp_path / "nope.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err


def test_ctrl_c_is_one_line_exit_130(tmp_path, capsys, monkeypatch):
    """Ctrl-C in a batch: a line saying how to resume (its rows are journaled), exit 130, no traceback."""
    from soundloc import batch

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run_batch", interrupted)
    (tmp_path / "x.wav").write_text("")
    assert main(["locate", str(tmp_path), "-o", str(tmp_path / "r.csv")]) == 130
    assert capsys.readouterr().err.strip() == "soundloc locate: interrupted; rerun the same command to resume"


def test_an_internal_error_is_its_traceback_and_exit_3(tmp_path, capsys, monkeypatch):
    """An unexpected exception is a bug, not skipped inputs: traceback, one line saying so, exit 3 (not Python's 1)."""
    from soundloc import batch

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(batch, "run_batch", broken)
    (tmp_path / "x.wav").write_text("")
    assert main(["locate", str(tmp_path), "-o", str(tmp_path / "r.csv")]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
    assert err.strip().splitlines()[-1] == "soundloc locate: internal error (a bug; please report it with the traceback above)"
