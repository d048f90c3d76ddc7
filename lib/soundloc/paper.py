"""The main paper's reference numbers (Chasmai et al. 2025, arXiv 2505.18726), shown beside ours.

Each row: median error (km) and accuracy (%) at city / region / country / continent. These are
the paper's published values, never our results: tables put them in columns named "paper".
"""
from __future__ import annotations

import pandas as pd


COLS = ("median_km", "city_%", "region_%", "country_%", "continent_%")

TABLE1 = {  # iNatSounds test set
    "Naive (random train location)": (7475, 0.1, 1.1, 6.6, 22.8),
    "Oracle: full checklist": (15, 64.0, 97.8, 99.9, 100.0),
    "Oracle: 50% corrupted": (54, 32.8, 83.3, 98.8, 100.0),
    "Oracle: keep random 10": (325, 10.0, 37.6, 76.6, 98.3),
    "Regression (Euclidean/MSE)": (1884, 0.1, 2.9, 23.4, 57.9),
    "Regression (Haversine)": (1602, 0.1, 4.2, 27.7, 61.8),
    "Classification res 0": (1323, 0.0, 1.2, 22.6, 68.7),
    "Classification res 2": (1326, 0.3, 16.3, 36.5, 64.1),
    "Classification hierarchical 0-1-2": (1117, 0.3, 16.6, 40.0, 68.7),
    "Ranges: annotated species": (1263, 0.3, 10.8, 35.7, 72.3),
    "Ranges: predicted species top-1": (1664, 0.2, 8.2, 28.7, 62.5),
    "Ranges: predicted species all": (1113, 0.3, 9.3, 37.7, 72.7),
    "AG-CLIP": (1082, 6.4, 17.2, 41.0, 71.2),
}
TABLE_A2 = {  # XCDC (Table 3 left with std in Table A2)
    "Naive (random train location)": (9915, 0.0, 0.1, 0.5, 3.6),
    "Ranges: true species": (449, 0.5, 25.8, 68.8, 99.0),
    "Ranges: predicted species all": (1097, 0.1, 2.5, 27.6, 80.0),
    "Classification hierarchical": (1116, 0.0, 5.3, 31.7, 69.7),
    "AG-CLIP": (1112, 0.2, 4.3, 26.3, 71.9),
    "AG-CLIP (XCDC gallery)": (912, 5.9, 11.6, 36.6, 73.8),
}
TABLE4 = {  # AG-CLIP with spatiotemporal grouping, iNatSounds test
    "No grouping": (1082, 6.4, 17.2, 41.0, 71.2),
    "H3 res 5": (520, 13.2, 30.4, 62.1, 88.2),
    "H3 res 6": (651, 10.8, 25.9, 55.6, 84.0),
    "H3 res 6 + month": (802, 8.5, 21.2, 48.2, 78.3),
    "H3 res 6 + week": (890, 7.9, 19.9, 45.8, 76.5),
}
TABLE_A1 = {  # AG-CLIP gallery ablation (no median reported): city, region, country, continent
    "Uniform 1 deg (65K)": (None, 1.3, 15.0, 38.6, 69.2),
    "Uniform 0.5 deg (260K)": (None, 2.9, 15.8, 38.9, 69.5),
    "Land 1 deg (20K)": (None, 1.6, 15.4, 38.6, 69.6),
    "Train (137K)": (None, 6.6, 17.4, 41.0, 70.3),
    "Train neighbours (43K)": (None, 3.1, 16.1, 39.3, 69.9),
    "Validation (45K)": (None, 6.7, 17.6, 41.1, 70.6),
    "XCDC (576)": (None, 0.7, 7.4, 28.7, 65.7),
}

TABLE2 = {  # AG-CLIP ablations, iNatSounds test (Table 2): only the columns the paper reports
    # (a) audio encoders: region, continent
    "Audio: Wav2CLIP (VGG, frozen)": (None, None, 3.8, None, 30.3),
    "Audio: CLAP (LAION, frozen)": (None, None, 5.1, None, 34.6),
    "Audio: MobileNetV3 (ImageNet, fine-tuned)": (None, None, 14.4, None, 64.9),
    "Audio: MobileNetV3 (iNat, fine-tuned)": (None, None, 17.2, None, 71.2),
    # (b) location encoders: city, region, continent
    "Location: SatCLIP": (None, 1.4, 14.7, None, 63.2),
    "Location: SINR": (None, 2.2, 17.1, None, 68.6),
    "Location: GeoCLIP": (None, 6.4, 17.0, None, 68.5),
    "Location: GeoCLIP + checklist": (None, 6.4, 17.2, None, 71.2),
    # (c) variable length (pooling over windows): region, continent
    "Pooling: Average": (None, None, 17.2, None, 71.2),
    "Pooling: Max Pool": (None, None, 16.5, None, 68.6),
    "Pooling: Cluster": (None, None, 15.5, None, 67.9),
    "Pooling: Transformer": (None, None, 16.8, None, 71.5),
}


def paper_frame(table: dict) -> pd.DataFrame:
    """A paper table as a DataFrame (method + COLS), values exactly as published."""
    return pd.DataFrame([{"method": k, **dict(zip(COLS, v))} for k, v in table.items()])


def beside_paper(ours: pd.DataFrame, table: dict, mapping: dict[str, str]) -> pd.DataFrame:
    """Add "paper: <col>" columns to ``ours`` for rows whose method maps to a paper row.

    ``mapping``: our method name -> paper row name; rows without a paper number get blanks.
    """
    out = ours.copy()
    for c in COLS:
        out[f"paper {c}"] = [table[mapping[m]][COLS.index(c)] if m in mapping else None for m in out["method"]]
    return out
