"""The species range-model interface: occurrence probability of each species at (lat, lon[, week]).

:class:`RangeModel` -- (N,) lat/lon degrees, week 1-48|None -> (N, S) probability -- with name matching
(synonyms, normalised names). ``week`` is 1-48 (BirdNET's 4 weeks a month); ``-1`` (:data:`YEAR_ROUND`)
means year-round.
"""
from __future__ import annotations

import abc
from typing import Sequence

import numpy as np

YEAR_ROUND = -1  # BirdNET's week value for "no season"


# ---------------------------------------------------------------- helpers
def normalize_name(name: str) -> str:
    """Scientific name -> matching key (case-folded, whitespace collapsed)."""
    return " ".join(str(name).split()).casefold()


def week_vector(week, n: int) -> np.ndarray:
    """week int 1-48 | (N,) ints 1-48 or -1 | None -> (N,) float32 with -1 = year-round."""
    if week is None:
        return np.full(n, YEAR_ROUND, np.float32)
    w = np.asarray(week)
    if w.ndim == 0:
        w = np.full(n, w)
    if w.shape != (n,):
        raise ValueError(f"week must be a scalar or shape ({n},), got {w.shape}")
    if not np.issubdtype(w.dtype, np.integer):
        if not np.all(np.isfinite(w)) or not np.all(w == np.round(w)):
            raise ValueError("week must hold whole numbers 1-48 (or -1 / None for year-round)")
    ok = ((w >= 1) & (w <= 48)) | (w == YEAR_ROUND)
    if not ok.all():
        raise ValueError(f"week must be 1-48 or -1 (year-round); got e.g. {w[~ok][0]!r}")
    return w.astype(np.float32)


def check_latlon(lat, lon) -> tuple[np.ndarray, np.ndarray]:
    """lat, lon array-likes -> two (N,) float32 arrays (validated)."""
    lat = np.atleast_1d(np.asarray(lat, np.float32))
    lon = np.atleast_1d(np.asarray(lon, np.float32))
    if lat.ndim != 1 or lat.shape != lon.shape:
        raise ValueError(f"lat and lon must be (N,) arrays of one length, got {lat.shape} and {lon.shape}")
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("lat/lon contain NaN or inf")
    if lat.size and np.abs(lat).max() > 90:
        raise ValueError(f"latitude outside [-90, 90]: {lat[np.abs(lat) > 90][0]} (lat/lon swapped?)")
    return lat, lon


# ---------------------------------------------------------------- interface
class RangeModel(abc.ABC):
    """Species occurrence model: (N,) lat/lon degrees, week 1-48|None -> (N, S) probability."""

    name: str = "range_model"
    species: list[str]

    @property
    def common_names(self) -> list[str]:
        """Common names in model order (the scientific names when the model has none)."""
        return self.__dict__.get("_common_names", self.species)

    @common_names.setter
    def common_names(self, names: list[str]) -> None:
        if len(names) != len(self.species):
            raise ValueError(f"{len(names)} common names for {len(self.species)} species")
        self.__dict__["_common_names"] = list(names)

    @abc.abstractmethod
    def prob(self, lat, lon, week=None, species_idx=None) -> np.ndarray:
        """(N,) lat/lon degrees, week 1-48|(N,)|None, species_idx (K,)|None -> (N, S|K) float32."""

    def match(self, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Scientific names -> ((K,) int64 indices of the known ones, in order; unknown names).

        Names registered with :meth:`add_synonyms` (e.g. by :mod:`soundloc.taxonomy`) resolve too.
        """
        if isinstance(names, str):
            names = [names]
        cached = self.__dict__.get("_lookup")
        if cached is None or cached[0] is not self.species or cached[1] != len(self.species):
            lookup: dict[str, int] = {}
            for i, s in enumerate(self.species):
                lookup.setdefault(normalize_name(s), i)
            self.__dict__["_lookup"] = cached = (self.species, len(self.species), lookup)
        lookup, syn = cached[2], self.__dict__.get("_synonyms", {})
        idx, unknown = [], []
        for n in names:
            key = normalize_name(n)
            i = lookup.get(key, syn.get(key))
            (unknown.append(n) if i is None else idx.append(i))
        return np.asarray(idx, np.int64), unknown

    def add_synonyms(self, mapping: dict[str, str]) -> None:
        """Register other names for covered species: {other scientific name: model species name}."""
        lookup = {normalize_name(s): i for i, s in enumerate(self.species)}
        syn = self.__dict__.setdefault("_synonyms", {})
        for other, ours in mapping.items():
            if normalize_name(ours) not in lookup:
                raise KeyError(f"synonym target {ours!r} is not a species of {self.name}")
            syn[normalize_name(other)] = lookup[normalize_name(ours)]
