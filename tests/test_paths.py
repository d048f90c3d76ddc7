"""soundloc.paths: where the real recordings are read from, with and without a mirror."""
from soundloc import paths


def test_real_audio_dir_is_the_mirror_or_the_download_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDLOC_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SOUNDLOC_MIRROR", raising=False)
    assert paths.real_audio_dir() == (tmp_path / "data" / "raw" / "audio").resolve()  # where fetch_all puts them
    (tmp_path / "mirror").mkdir()
    monkeypatch.setenv("SOUNDLOC_MIRROR", str(tmp_path / "mirror"))
    assert paths.real_audio_dir() == (tmp_path / "mirror" / "audio").resolve()
