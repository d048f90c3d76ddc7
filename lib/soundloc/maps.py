"""World maps: H3 hexbins and gallery posteriors as PNG (matplotlib) and interactive folium HTML."""
from __future__ import annotations

from pathlib import Path

import h3
import numpy as np
import pandas as pd

from .sphere import h3_cells, land_mask, uniform_grid
from .io import atomic_path


def hexbin(lat, lon, res: int, values=None, agg: str = "count") -> pd.DataFrame:
    """(N,) lat/lon degrees [+ (N,) values] -> DataFrame(cell, n, value) per H3 cell at ``res``."""
    df = pd.DataFrame({"cell": h3_cells(lat, lon, res)})
    df["v"] = 1.0 if values is None else np.asarray(values, float)
    g = df.groupby("cell")["v"]
    out = pd.DataFrame({"n": g.size(), "value": g.size() if agg == "count" else g.agg(agg)}).reset_index()
    return out.sort_values("n", ascending=False, ignore_index=True)


def _ring(cell: str) -> np.ndarray:
    """H3 cell -> (K, 2) lon/lat boundary, longitudes made continuous across the antimeridian."""
    b = np.array(h3.cell_to_boundary(cell))[:, ::-1]
    if np.ptp(b[:, 0]) > 180:
        b[:, 0] = np.where(b[:, 0] < 0, b[:, 0] + 360, b[:, 0])
    return b


def land_background(ax, step: float = 0.5, color=(0.88, 0.88, 0.86)):
    """Draw land (global-land-mask) as a flat background on a lon/lat axis."""
    m = land_mask(uniform_grid(step)).reshape(int(180 / step), int(360 / step))
    rgba = np.zeros(m.shape + (4,))
    rgba[m] = (*color, 1.0)
    ax.imshow(rgba, extent=(-180, 180, -90, 90), origin="lower", interpolation="nearest", zorder=0)
    ax.set_xlim(-180, 180), ax.set_ylim(-90, 90)
    ax.set_xlabel("longitude"), ax.set_ylabel("latitude")


def plot_hexbin(cells: pd.DataFrame, column: str = "value", title: str = "", ax=None, log: bool = False,
                cmap: str = "viridis", label: str | None = None):
    """Hexbin DataFrame (cell, column) -> matplotlib axis with coloured H3 polygons over land."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import LogNorm, Normalize

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 5.5))
    land_background(ax)
    rings = [_ring(c) for c in cells["cell"]]
    polys = rings + [r - [360, 0] for r in rings if r[:, 0].max() > 180]  # wrapped copies
    vals = np.asarray(cells[column], float)
    vals = np.concatenate([vals, [v for r, v in zip(rings, vals) if r[:, 0].max() > 180]])
    norm = LogNorm(max(vals.min(), 1e-9), vals.max()) if log else Normalize(vals.min(), vals.max())
    pc = PolyCollection(polys, array=vals, cmap=cmap, norm=norm, edgecolors="none", zorder=1)
    ax.add_collection(pc)
    ax.figure.colorbar(pc, ax=ax, shrink=0.7, label=label or column)
    ax.set_title(title)
    return ax


def _color_scale(vals, log, cmap):
    import branca.colormap as bcm

    v = np.log10(np.maximum(vals, 1e-9)) if log else np.asarray(vals, float)
    scale = getattr(bcm.linear, cmap).scale(float(v.min()), float(v.max()) + 1e-12)
    return v, scale


def folium_hexbin(cells: pd.DataFrame, column: str = "value", title: str = "", log: bool = False,
                  cmap: str = "viridis", m=None, name: str | None = None):
    """Hexbin DataFrame -> folium.Map (or a layer added to ``m``) with a tooltip per cell."""
    import folium

    m = m or folium.Map(location=(20, 0), zoom_start=2, tiles="OpenStreetMap", world_copy_jump=True)
    v, scale = _color_scale(cells[column].to_numpy(float), log, cmap)
    feats = [{"type": "Feature", "properties": {"cell": c, column: float(x), "color": scale(val)},
              "geometry": {"type": "Polygon", "coordinates": [_ring(c).tolist() + [_ring(c)[0].tolist()]]}}
             for c, x, val in zip(cells["cell"], cells[column], v)]
    folium.GeoJson({"type": "FeatureCollection", "features": feats}, name=name or title,
                   style_function=lambda f: {"fillColor": f["properties"]["color"], "color": None, "fillOpacity": 0.7, "weight": 0},
                   tooltip=folium.GeoJsonTooltip(fields=["cell", column])).add_to(m)
    scale.caption = f"{title} ({'log10 ' if log else ''}{column})"
    scale.add_to(m)
    _title(m, title)
    return m


def folium_posterior(points: np.ndarray, prob: np.ndarray, title: str, true=None, pred=None, top: int = 3000, m=None):
    """Gallery posterior (N, 2) lat/lon + (N,) probability -> folium.Map with the true/predicted points."""
    import folium

    m = m or folium.Map(location=(20, 0), zoom_start=2, tiles="OpenStreetMap", world_copy_jump=True)
    idx = np.argsort(prob)[::-1][:top]
    p = prob[idx] / prob[idx].max()
    layer = folium.FeatureGroup(name="posterior")
    for (la, lo), w in zip(points[idx], p):
        folium.CircleMarker((float(la), float(lo)), radius=3, stroke=False, fill=True, fill_color="#d7301f",
                            fill_opacity=float(0.1 + 0.8 * w)).add_to(layer)
    layer.add_to(m)
    if true is not None:
        folium.Marker(tuple(map(float, true)), tooltip="true location", icon=folium.Icon(color="green")).add_to(m)
    if pred is not None:
        folium.Marker(tuple(map(float, pred)), tooltip="prediction", icon=folium.Icon(color="red", icon="remove")).add_to(m)
    _title(m, title)
    return m


def folium_layers(points: np.ndarray, layers: dict, title: str, colors=("#2b8cbe", "#d7301f", "#31a354"),
                  top: int = 3000):
    """(N, 2) lat/lon + {layer name: (N,) values >= 0} -> folium.Map, one toggled layer per map (LayerControl)."""
    import folium

    m = folium.Map(location=(20, 0), zoom_start=2, tiles="OpenStreetMap", world_copy_jump=True)
    for k, (name, v) in enumerate(layers.items()):
        v = np.asarray(v, float)
        idx = np.argsort(v)[::-1][:top]
        w = v[idx] / max(v[idx].max(), 1e-12)
        layer = folium.FeatureGroup(name=name, show=k == 0)
        for (la, lo), x in zip(points[idx], w):
            folium.CircleMarker((float(la), float(lo)), radius=3, stroke=False, fill=True,
                                fill_color=colors[k % len(colors)], fill_opacity=float(0.05 + 0.8 * x)).add_to(layer)
        layer.add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    _title(m, title)
    return m


def _title(m, title: str):
    from branca.element import Element

    if title:
        m.get_root().html.add_child(Element(
            f'<div style="position:fixed;top:8px;left:50px;z-index:9999;background:white;padding:4px 8px;'
            f'font:14px sans-serif;border-radius:4px">{title}</div>'))


def save_map(m, path: str | Path) -> Path:
    """Write a folium map to HTML atomically."""
    with atomic_path(path) as tmp:
        m.save(str(tmp))
    return Path(path)


def save_fig(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write a matplotlib figure to PNG atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)
