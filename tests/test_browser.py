"""The folium maps open in a real browser (issue 6 item 7): headless Chromium renders maps written by
soundloc.maps and we check the map's contents in the rendered DOM -- Leaflet container, panes, the tile
layer's tiles, the drawn vector layers with their colours and places, legend and title -- not bytes
(folium's element ids are random).

Offline by design: the CDN addresses of Leaflet and d3 v3 are pointed at local copies (Debian packages
libjs-leaflet and libjs-d3, or a folder given by SOUNDLOC_JS_DIR) and every other host name is made to
fail at once, so the test behaves the same with or without network. Tile images then fail to load, but
Leaflet still creates their <img> elements in the tile pane, which is what we check.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from soundloc import maps

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _chromium() -> str | None:
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _local_js() -> dict[str, Path] | None:
    """Local Leaflet (js, css) and d3 v3 files, or None."""
    root = Path(os.environ.get("SOUNDLOC_JS_DIR", "/usr/share/javascript"))
    files = {"leaflet.js": root / "leaflet" / "leaflet.js", "leaflet.css": root / "leaflet" / "leaflet.css",
             "d3": root / "d3" / "d3.min.js"}
    return files if all(p.is_file() for p in files.values()) else None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=(
    "no Chromium binary (looked for " + ", ".join(CHROMIUM_NAMES) + " and $CHROMIUM); "
    "install it with `apt-get install chromium` (.ci/run does when it can)"))


class _DOM(HTMLParser):
    """Flat list of elements (tag, attrs dict, class set) and the page's text."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict, set]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.elements.append((tag, a, set(a.get("class", "").split())))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        if data.strip():
            self.text.append(data.strip())

    def find(self, tag: str | None = None, cls: str | None = None, **attrs) -> list[dict]:
        return [a for t, a, c in self.elements if (tag is None or t == tag) and (cls is None or cls in c)
                and all(a.get(k) == v for k, v in attrs.items())]


def _render(html_path: Path, tmp_path: Path) -> tuple[_DOM, str]:
    """Open the saved map in headless Chromium -> (rendered DOM, console log)."""
    js = _local_js()
    if js is None:
        pytest.skip("no local Leaflet / d3 v3 to render offline: apt-get install libjs-leaflet libjs-d3 "
                    "(or set SOUNDLOC_JS_DIR to a folder with leaflet/leaflet.js, leaflet/leaflet.css, d3/d3.min.js)")
    html = html_path.read_text()
    subs = [(r"https://[^\"']*/leaflet@[\d.]+/dist/leaflet\.js", js["leaflet.js"], 1),
            (r"https://[^\"']*/leaflet@[\d.]+/dist/leaflet\.css", js["leaflet.css"], 1),
            (r"https://[^\"']*/d3/3\.[\d.]+/d3\.min\.js", js["d3"], int("d3." in html))]  # colour legends only
    for pattern, local, want in subs:
        html, n = re.subn(pattern, local.as_uri(), html)
        assert n == want, f"{html_path.name}: {n} references match {pattern} (folium changed its CDN URLs?)"
    page = tmp_path / ("local_" + html_path.name)
    page.write_text(html)
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", "--window-size=1400,900",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0 and "<html" in r.stdout, f"chromium failed ({r.returncode}): {r.stderr[-2000:]}"
    console = "\n".join(ln for ln in r.stderr.splitlines() if ":CONSOLE" in ln)
    return _DOM(r.stdout), console


def _check_leaflet_map(dom: _DOM, console: str, title: str):
    assert "Uncaught" not in console, console  # the map script ran to the end
    m = dom.find("div", "folium-map")
    assert len(m) == 1 and "leaflet-container" in m[0]["class"], "Leaflet did not initialise the map"
    for pane in ("map", "tile", "overlay", "marker", "tooltip"):
        assert len(dom.find("div", f"leaflet-{pane}-pane")) == 1, f"no leaflet-{pane}-pane"
    assert len(dom.find("div", "leaflet-layer")) == 1  # the OpenStreetMap tile layer
    tiles = dom.find("img", "leaflet-tile")
    assert tiles and all(re.fullmatch(r"https://tile\.openstreetmap\.org/2/\d/\d\.png", t["src"]) for t in tiles)
    assert len({t["src"] for t in tiles}) >= 8  # zoom 2 over a 1400 px window: two rows of 4 at least
    assert "OpenStreetMap" in " ".join(dom.text)  # attribution control
    assert dom.find("a", "leaflet-control-zoom-in")
    assert title in dom.text


def _path_x(d: str) -> float:
    """Mean x of an SVG path's vertices ("M792 203L793 197...z")."""
    xy = np.array(re.findall(r"[ML](-?[\d.]+) (-?[\d.]+)", d), float)
    return float(xy[:, 0].mean())


def test_hexbin_map_renders_in_chromium(tmp_path):
    # one point per city except Tokyo (two points in one cell): counts 1, 2, 3, 4 west to east
    places = {"Seattle": (47.6, -122.3, 1), "Paris": (48.86, 2.35, 2), "Tokyo": (35.68, 139.7, 3),
              "Sydney": (-33.87, 151.2, 4)}
    lat = np.concatenate([[la] * n for la, _, n in places.values()])
    lon = np.concatenate([[lo] * n for _, lo, n in places.values()])
    cells = maps.hexbin(lat, lon, res=2)
    assert sorted(cells.n) == [1, 2, 3, 4]
    title = "Recordings per H3 cell (browser test)"
    path = maps.save_map(maps.folium_hexbin(cells, "n", title=title), tmp_path / "00_hexbin.html")
    dom, console = _render(path, tmp_path)
    _check_leaflet_map(dom, console, title)

    # the vector layer: one closed hexagon per cell, coloured by count (viridis: lowest purple, highest yellow)
    paths = dom.find("path", "leaflet-interactive")
    assert len(paths) == len(cells)
    assert all(re.fullmatch(r"M[\d. -]+(L[\d. -]+){5}z", p["d"]) for p in paths), [p["d"] for p in paths]
    fills = [p["fill"] for p in sorted(paths, key=lambda p: _path_x(p["d"]))]  # west to east on screen
    assert len(set(fills)) == 4 and fills[0] == "#440154ff" and fills[-1] == "#fde725ff"
    assert {p["fill-opacity"] for p in paths} == {"0.7"}
    # legend drawn by d3 in a Leaflet control, with its caption
    assert dom.find("svg", id="legend") and dom.find("div", "legend")
    assert f"{title} (n)" in dom.text
    assert len(dom.find("rect")) >= 100  # the colour bar's steps


def test_posterior_map_renders_in_chromium(tmp_path):
    rng = np.random.default_rng(0)
    pts = np.column_stack([rng.uniform(-50, 60, 40), rng.uniform(-120, 140, 40)])
    prob = rng.dirichlet(np.ones(40))
    title = "Posterior (browser test)"
    path = maps.save_map(maps.folium_posterior(pts, prob, title, top=25), tmp_path / "posterior.html")
    dom, console = _render(path, tmp_path)
    _check_leaflet_map(dom, console, title)
    circles = dom.find("path", "leaflet-interactive")
    assert len(circles) == 25  # the 25 most probable gallery points
    assert {c["fill"] for c in circles} == {"#d7301f"}
    opac = Counter(round(float(c["fill-opacity"]), 6) for c in circles)
    assert max(opac) == pytest.approx(0.9) and opac[max(opac)] == 1  # only the best point is fully weighted
    assert all(0.1 <= o <= 0.9 for o in opac)
