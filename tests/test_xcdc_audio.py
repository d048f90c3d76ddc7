"""XCDC audio: the release tarball fetched from a loopback server, unpacked safely, matched to the metadata."""
import functools
import hashlib
import http.server
import io
import threading

import numpy as np
import pytest
import soundfile as sf

from conftest import write_tarball

from soundloc.audio import load_audio
from soundloc.data import DataError, load_xcdc, xcdc_audio
from soundloc.data import download as dl

IDS = ["894098", "322459", "12345678"]  # two real XCDC ids and one that is not in the metadata


def _wav_bytes(seconds=1.0, sr=22050, f=2000.0):
    t = np.arange(int(seconds * sr)) / sr
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    arc = write_tarball(root / "xcdc.tar.gz", {f"xcdc/{i}.wav": _wav_bytes() for i in IDS} | {"xcdc/README.txt": b"hi"})
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/xcdc.tar.gz", hashlib.sha256(arc.read_bytes()).hexdigest()
    httpd.shutdown()


def test_release_tarball_fetched_unpacked_and_matched(served, tmp_path, mirror):
    url, sha = served
    dest = tmp_path / "raw"
    arc = dl.fetch("xcdc/xcdc.tar.gz", url=url, dest=dest, mirror=False, progressbar=False, known_hash=f"sha256:{sha}")
    meta = load_xcdc()
    df = xcdc_audio(arc, meta)
    assert sorted(df.audio_id) == sorted(IDS[:2])
    rep = df.attrs["skip_report"]
    assert rep.reasons["no audio file"] == len(meta) - 2 and rep.total == len(meta)
    row = df.set_index("audio_id").loc["894098"]
    assert (row.lat, row.lon) == (52.75, 0.462)
    assert load_audio(row.filepath).shape == (22050,)
    assert not [p for p in arc.parent.iterdir() if p.name.endswith(".part")]  # no temporary folder left
    assert xcdc_audio(arc, meta).filepath.tolist() == df.filepath.tolist()  # second call reuses the unpacked folder


def test_wrong_checksum_leaves_nothing(served, tmp_path):
    url, _ = served
    with pytest.raises(dl.ChecksumError, match="checksum mismatch"):
        dl.fetch("xcdc/xcdc.tar.gz", url=url, dest=tmp_path / "raw", mirror=False, progressbar=False)  # real hash
    assert [p for p in (tmp_path / "raw").rglob("*") if p.is_file()] == []


def test_unsafe_member_refused_and_nothing_unpacked(tmp_path):
    arc = write_tarball(tmp_path / "evil.tar.gz", {"../escape.wav": _wav_bytes()})
    with pytest.raises(dl.DownloadError, match="unsafe member '../escape.wav'"):
        dl.extract(arc, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape.wav").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["evil.tar.gz"]


def test_folder_without_matching_files_is_a_clear_error(tmp_path, mirror):
    (tmp_path / "a.wav").write_bytes(_wav_bytes())
    with pytest.raises(DataError, match="none of the 576 XCDC audio_ids has an audio file"):
        xcdc_audio(tmp_path)
    with pytest.raises(DataError, match="XCDC audio not found"):
        xcdc_audio(tmp_path / "missing.tar.gz")


def test_large_groups_are_not_fetched_by_default():
    reg = dl.registry()
    large = [n for n, e in reg.items() if e.group in dl.LARGE_GROUPS]
    assert {"inatsounds/train.tar.gz", "inatsounds/test.tar.gz", "xcdc/xcdc.tar.gz"} <= set(large)
    assert not set(dl.LARGE_GROUPS) & set(dl.GROUPS)
