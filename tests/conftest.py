import os
from pathlib import Path

import pytest
import torch

MIRROR = Path(os.environ.get("SOUNDLOC_MIRROR", Path(__file__).resolve().parents[2] / "shared" / "data"))
os.environ.setdefault("SOUNDLOC_MIRROR", str(MIRROR))
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel test workers (make test: pytest-xdist) share the cores: one OpenMP thread per worker and per
    # notebook kernel it starts (inherited), else their spin-waiting threads slow each other several-fold.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# Order for two pytest-xdist workers (make test: --dist worksteal, which first hands each worker one contiguous half
# of this list, then lets an idle worker steal the second half of the other's queue). The first half opens with
# chapter 04, which builds the SimSounds world and the chapter-01 backbone every SimSounds chapter needs, then the two
# heaviest SimSounds chapters (03, 10) on the same worker, so none of them waits on the world's file lock. The second
# half opens with the real-data chapters (the other worker runs them while the world is being built) and ends with the
# lighter SimSounds chapters (05, 01, 07, 09, 06), which it reaches long after the world exists; the unit tests, many
# and short, fill both halves and are what work stealing moves to balance the two workers at the end.
SIM_FIRST = ("tests/notebooks/test_chapter_04_aggregation.py::test_04_aggregation",
             "tests/notebooks/test_chapter_03_agclip.py::test_03_agclip",
             "tests/notebooks/test_chapter_10_sphere_flow.py::test_10_sphere_flow")
REAL_FIRST = ("tests/notebooks/test_chapter_02_species_oracles.py::test_02_species_oracles",
              "tests/notebooks/test_chapter_12_trust.py::test_12_trust",
              "tests/notebooks/test_chapter_03_agclip.py::test_03_agclip_on_inat",
              "tests/notebooks/test_chapter_01_baselines.py::test_01_baselines_on_inat",
              "tests/notebooks/test_chapter_08_real_audio.py::test_08_real_audio",
              "tests/notebooks/test_chapter_11_teaching.py::test_11_teaching",
              "tests/notebooks/test_chapter_00_data.py::test_00_data")
SIM_LAST = ("tests/notebooks/test_chapter_05_xcdc.py::test_05_xcdc",
            "tests/notebooks/test_chapter_01_baselines.py::test_01_baselines",
            "tests/notebooks/test_chapter_07_geoforensics.py::test_07_geoforensics",
            "tests/notebooks/test_chapter_09_soundscape.py::test_09_soundscape",
            "tests/notebooks/test_chapter_06_affinities.py::test_06_affinities")


def pytest_collection_modifyitems(config, items):
    by_id = {it.nodeid: it for it in items}
    first, real, last = ([by_id[n] for n in ids if n in by_id] for ids in (SIM_FIRST, REAL_FIRST, SIM_LAST))
    placed = set(SIM_FIRST) | set(REAL_FIRST) | set(SIM_LAST)
    rest = [it for it in items if it.nodeid not in placed]  # file order kept
    h = max(0, len(items) // 2 - len(first))
    items[:] = first + rest[:h] + real + rest[h:] + last


@pytest.fixture(scope="session")
def mirror() -> Path:
    if not MIRROR.is_dir():
        pytest.skip(f"no data mirror at {MIRROR} (set SOUNDLOC_MIRROR)")
    return MIRROR


@pytest.fixture
def figures_tmp(tmp_path, monkeypatch):
    """Send figures/tables of the code under test to a temporary folder."""
    out = tmp_path / "figures"
    monkeypatch.setenv("SOUNDLOC_FIGURES", str(out))
    return out


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: on 2 shared busy cores, 2 intra-op threads are 5-50x slower (OpenMP contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


XCDC_IDS, XCDC_BAD = ["894098", "322459", "561706"], "814146"  # real XCDC audio_ids (UK, Arizona, California); one bad


@pytest.fixture(scope="session")
def xcdc_release_tar(mirror, tmp_path_factory) -> Path:
    """A small xcdc.tar.gz in the release's layout: xcdc/<audio_id>.wav for three real XCDC ids (9 s slices of the
    real Seattle soundscape) and one file that is not audio (XCDC_BAD)."""
    import io

    import soundfile as sf

    from soundloc.audio import load_audio

    wave = load_audio(mirror / "audio" / "XC563936_soundscape.mp3", sr=48000)
    members = {}
    for k, i in enumerate(XCDC_IDS):
        buf = io.BytesIO()
        sf.write(buf, wave[k * 9 * 48000:(k + 1) * 9 * 48000], 48000, format="WAV", subtype="PCM_16")
        members[f"xcdc/{i}.wav"] = buf.getvalue()
    members[f"xcdc/{XCDC_BAD}.wav"] = b"RIFF not really a wave file" * 10
    return write_tarball(tmp_path_factory.mktemp("xcdc") / "xcdc.tar.gz", members)


def write_tarball(path: Path, members: dict) -> Path:
    """Write {member name: bytes} into a .tar.gz at ``path`` -> ``path``."""
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def inat_root(tmp_path_factory) -> Path:
    """A small iNatSounds-layout folder (chapters 01 and 03 with ``DATA="inat"``), built once per session.

    It lives here, not in a tests/notebooks/conftest.py: a second module named ``conftest`` would shadow this one
    for the tests that import its helpers (``from conftest import ...``)."""
    from inat_fixture import SIZES, write_split  # tests/notebooks/, on sys.path once a notebook test asks for this

    from soundloc.data.sim import SimConfig, build_simsounds

    world = build_simsounds(SimConfig.small(0), progress=False)
    root = tmp_path_factory.mktemp("inatsounds")
    for split, n in SIZES.items():
        write_split(world, root, split, n, missing=1 if split == "test" else 0)
        os.symlink(world / split, root / split)
    return root
