"""soundloc.data.download against a loopback HTTP server and a local mirror."""
import hashlib
import http.server
import shutil
import threading

import pytest

from soundloc.data import download as dl

NAME = "xcdc/xcdc_gold.csv"  # small registered file (about 15 KB)


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    mode = "ok"  # ok | corrupt | truncate | norange
    ranges: list = []

    def log_message(self, *a):
        pass

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()

    def do_GET(self):
        body, start = self.body, 0
        rng = self.headers.get("Range")
        type(self).ranges.append(rng)
        if self.mode == "corrupt":
            body = body[:100] + b"X" + body[101:]
        if rng and self.mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.mode == "truncate":
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.connection.close()  # promised more bytes than sent
            return
        self.wfile.write(payload)


@pytest.fixture
def server(mirror):
    _Handler.body = (mirror / NAME).read_bytes()
    _Handler.mode, _Handler.ranges = "ok", []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/{NAME}"
    httpd.shutdown()


def _sha(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_http_download_verifies_checksum(server, tmp_path, mirror):
    out = dl.fetch(NAME, url=server, dest=tmp_path, mirror=False, progressbar=False)
    assert _sha(out) == _sha(mirror / NAME)
    assert not list(tmp_path.rglob("*.part"))


def test_corrupted_download_leaves_no_file(server, tmp_path):
    _Handler.mode = "corrupt"
    with pytest.raises(dl.ChecksumError, match="checksum mismatch"):
        dl.fetch(NAME, url=server, dest=tmp_path, mirror=False, progressbar=False)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_truncated_download_resumes(server, tmp_path, mirror):
    big = "inatsounds/test.json.tar.gz"  # 7 MB, so the cut falls after many chunks
    _Handler.body = (mirror / big).read_bytes()
    _Handler.mode = "truncate"
    with pytest.raises(dl.DownloadError, match="run again to resume"):
        dl.fetch(big, url=server, dest=tmp_path, mirror=False, progressbar=False)
    assert not (tmp_path / big).exists()  # nothing half-written under the final name
    part = tmp_path / (big + ".part")
    half = part.stat().st_size
    assert 0 < half < len(_Handler.body)
    _Handler.mode = "ok"
    out = dl.fetch(big, url=server, dest=tmp_path, mirror=False, progressbar=False)
    assert _Handler.ranges[-1] == f"bytes={half}-"  # resumed, not restarted
    assert _sha(out) == _sha(mirror / big) and not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path, mirror):
    part = tmp_path / (NAME + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(_Handler.body[:50])
    _Handler.mode = "norange"
    out = dl.fetch(NAME, url=server, dest=tmp_path, mirror=False, progressbar=False)
    assert _sha(out) == _sha(mirror / NAME)


def test_mirror_copy_and_bad_mirror(tmp_path, mirror):
    out = dl.fetch(NAME, dest=tmp_path / "a", mirror=mirror)
    assert _sha(out) == _sha(mirror / NAME)
    bad = tmp_path / "badmirror"
    (bad / "xcdc").mkdir(parents=True)
    shutil.copy(mirror / NAME, bad / NAME)
    with open(bad / NAME, "ab") as f:
        f.write(b"\n")
    with pytest.raises(dl.ChecksumError):
        dl.fetch(NAME, dest=tmp_path / "b", mirror=bad)
    assert not (tmp_path / "b" / NAME).exists()
    with pytest.raises(dl.DownloadError, match="mirror file missing"):
        dl.fetch("xcdc/xcdc_recordings.csv", dest=tmp_path / "c", mirror=tmp_path / "empty")


def test_registry_covers_the_mirror(mirror):
    reg = dl.registry()
    on_disk = {p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file() and p.name != "README.md"}
    assert on_disk - {"audio/jura_2019-05-22/indices.csv"} <= set(reg)
    assert all(e.known_hash.split(":")[0] in ("md5", "sha256") for e in reg.values())
    with pytest.raises(KeyError, match="not in the download registry"):
        dl.fetch("nope.csv")
