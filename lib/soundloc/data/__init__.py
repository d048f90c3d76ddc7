"""Data layer: checked downloads, loaders in the official formats, validation."""
from .download import ChecksumError, DownloadError, fetch, fetch_all, fetch_group, registry
from .gold import load_gold, read_locations, write_predictions
from .inat import load_inat, parse_coco
from .sim import SimConfig, build_simsounds, load_simsounds, splice, true_species
from .validate import DataError, SkipReport
from .xcdc import load_xcdc, xcdc_audio

__all__ = ["ChecksumError", "DownloadError", "fetch", "fetch_all", "fetch_group", "registry", "load_gold",
           "read_locations", "write_predictions", "load_inat", "parse_coco", "DataError", "SkipReport", "load_xcdc", "xcdc_audio",
           "SimConfig", "build_simsounds", "load_simsounds", "splice", "true_species"]
