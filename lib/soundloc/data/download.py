"""Checked downloads of the small real files: pooch fetch with resume, or copy from a mirror.

Every file in ``registry.csv`` has its official URL and checksum. ``fetch(name)`` returns
the verified local path under ``paths.raw_dir()``; with ``SOUNDLOC_MIRROR`` set it copies
the same file from that folder instead of the network, verifying the same checksum. The
final file appears only after the checksum matched (pooch writes to a temporary file and
renames it); an interrupted HTTP download leaves a ``.part`` file that the next call resumes
with an HTTP Range request; a checksum mismatch removes both and raises ``ChecksumError``.
"""
from __future__ import annotations

import csv
import logging
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pooch
import requests
from tqdm.auto import tqdm

from .. import paths

REGISTRY_CSV = Path(__file__).with_name("registry.csv")
log = logging.getLogger("soundloc.data")
pooch.get_logger().setLevel(logging.WARNING)  # we say where a file comes from ourselves
GROUPS = ("inat", "xcdc", "audio", "jura")  # the small files the book needs (fetch_all)
LARGE_GROUPS = ("inat-audio", "xcdc-audio")  # user-downloaded recordings (133 GB / XCDC tarball): on request only


class ChecksumError(ValueError):
    """A downloaded or mirrored file does not match its registered checksum."""


class DownloadError(OSError):
    """A file could not be fetched (network error, truncated transfer, missing mirror file)."""


@dataclass(frozen=True)
class Entry:
    name: str  # path relative to the raw data folder and to the mirror, e.g. "xcdc/xcdc_gold.csv"
    url: str  # official download address
    known_hash: str  # "md5:..." or "sha256:..." as pooch expects
    group: str  # one of GROUPS or LARGE_GROUPS, to fetch a family at once


@lru_cache(maxsize=1)
def registry() -> dict[str, Entry]:
    """All registered files by name."""
    with REGISTRY_CSV.open(newline="") as f:
        return {r["name"]: Entry(**r) for r in csv.DictReader(f)}


class ResumableHTTP:
    """pooch downloader that keeps a ``.part`` file and resumes it with an HTTP Range request."""

    def __init__(self, part: Path, progressbar: bool = True, timeout: float = 60.0, chunk: int = 1 << 16):
        self.part, self.progressbar, self.timeout, self.chunk = part, progressbar, timeout, chunk

    def __call__(self, url: str, output_file: str, pooch_obj=None, check_only: bool = False) -> bool | None:
        if check_only:
            try:
                return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
            except requests.RequestException:
                return False
        have = self.part.stat().st_size if self.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=self.timeout) as r:
                if r.status_code == 416:  # the part is already complete
                    pass
                else:
                    r.raise_for_status()
                    if have and r.status_code != 206:  # server ignored Range: start over
                        have = 0
                    total = int(r.headers.get("Content-Length", 0)) + have or None
                    with open(self.part, "ab" if have else "wb") as out, tqdm(
                        total=total, initial=have, unit="B", unit_scale=True,
                        desc=Path(self.part.name).stem, disable=not self.progressbar, leave=False,
                    ) as bar:
                        for block in r.iter_content(self.chunk):
                            out.write(block)
                            bar.update(len(block))
        except requests.RequestException as e:
            got = self.part.stat().st_size if self.part.exists() else 0
            raise DownloadError(f"{url}: transfer failed after {got} bytes ({e}); run again to resume from "
                                f"{self.part}, or, offline, set SOUNDLOC_MIRROR to a folder holding the official files") from e
        shutil.copyfile(self.part, output_file)
        return None


class MirrorCopy:
    """pooch downloader that copies the registered file from a local mirror folder."""

    def __init__(self, source: Path):
        self.source = source

    def __call__(self, url: str, output_file: str, pooch_obj=None, check_only: bool = False) -> bool | None:
        if check_only:
            return self.source.is_file()
        if not self.source.is_file():
            raise DownloadError(f"mirror file missing: {self.source} (SOUNDLOC_MIRROR)")
        shutil.copyfile(self.source, output_file)
        return None


def fetch(name: str, *, url: str | None = None, dest: Path | None = None,
          mirror: Path | None | bool = None, progressbar: bool = True, known_hash: str | None = None) -> Path:
    """Return the verified local path of registered file ``name``, downloading it if needed.

    ``url`` overrides the official address (tests use a loopback server); ``mirror=None``
    reads ``SOUNDLOC_MIRROR``, ``False`` forces the network, a Path forces that mirror;
    ``known_hash`` overrides the registered checksum (tests serving a small stand-in file).
    """
    reg = registry()
    if name not in reg:
        raise KeyError(f"{name!r} is not in the download registry ({REGISTRY_CSV})")
    entry = reg[name]
    if known_hash is not None:
        entry = Entry(entry.name, entry.url, known_hash, entry.group)
    dest = Path(dest) if dest is not None else paths.raw_dir()
    target = dest / name
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    if mirror is None:
        mirror = paths.mirror_dir()
    downloader = MirrorCopy(Path(mirror) / name) if mirror else ResumableHTTP(part, progressbar)
    if not target.exists():
        log.info("fetching %s from %s", name, f"mirror {mirror}" if mirror else url or entry.url)
    try:
        out = pooch.retrieve(url or entry.url, known_hash=entry.known_hash, fname=target.name,
                             path=target.parent, downloader=downloader, progressbar=False)
    except ValueError as e:
        part.unlink(missing_ok=True)  # a corrupt part can never complete: start over next time
        raise ChecksumError(f"{name}: checksum mismatch against {entry.known_hash} "
                            f"({'mirror ' + str(mirror) if mirror else url or entry.url}); "
                            "the bad file was removed") from e
    part.unlink(missing_ok=True)
    return Path(out)


def fetch_group(group: str, **kw) -> list[Path]:
    """Fetch every registered file of a group (GROUPS, or LARGE_GROUPS: tens of GB, asked for by name)."""
    if group not in GROUPS + LARGE_GROUPS:
        raise ValueError(f"unknown group {group!r}; choose from {GROUPS + LARGE_GROUPS}")
    names = [n for n, e in registry().items() if e.group == group]
    return [fetch(n, **kw) for n in tqdm(names, desc=f"fetch {group}", disable=len(names) < 5)]


def fetch_all(**kw) -> dict[str, list[Path]]:
    """Fetch every small registered file (the real data the book needs; not LARGE_GROUPS)."""
    return {g: fetch_group(g, **kw) for g in GROUPS}


def extract(archive: str | Path, dest: str | Path | None = None, progress: bool = True) -> Path:
    """Unpack a .tar / .tar.gz once into ``dest`` (default: beside it, suffixes dropped) -> ``dest``.

    Atomic: members go to a hidden temporary folder that is renamed when complete, so an
    interrupted run never leaves a half-unpacked ``dest``; a rerun reuses a finished one. Members
    with absolute paths, ``..`` or links out of the folder are refused (tarfile's "data" filter).
    """
    archive = Path(archive)
    if dest is None:
        name = archive.name
        for suf in (".tar.gz", ".tgz", ".tar"):
            if name.endswith(suf):
                name = name[: -len(suf)]
                break
        dest = archive.with_name(name)
    dest = Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        with tarfile.open(archive) as tar:
            for m in tqdm(tar, desc=f"extract {archive.name}", unit=" files", disable=not progress, leave=False):
                try:
                    tar.extract(m, tmp, filter="data")
                except tarfile.FilterError as e:
                    raise DownloadError(f"{archive}: refusing unsafe member {m.name!r}: {e}") from e
        tmp.rename(dest)
    except tarfile.ReadError as e:
        raise DownloadError(f"{archive}: not a readable tar archive ({e})") from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
