"""AG-CLIP (paper section 4, A.5-A.7): contrastive audio -> location-embedding retrieval, by concern.

- :mod:`.model` -- :class:`AGCLIPHead` (location and checklist decoders, InfoNCE + checklist BCE loss), its
  location encoders (GeoCLIP frozen, Fourier, SINR) and :class:`AGCLIPConfig`.
- :mod:`.retrieval` -- chunked top-k over a gallery, softmax posteriors, the ``argmax`` / ``mass_within`` decoders.
- :mod:`.pooling` -- window features pooled per recording (average, max, k-means, transformer pooler).
- :mod:`.galleries` -- Table A1's galleries, cell areas, grid rows, a vMF location prior.
- :mod:`.fusion` -- product of experts with the species-range posterior, credible sets (calibration).
- :mod:`.experiment` -- chapter 03's experiment (:func:`run_agclip`, one function per table; :func:`main_model` for later chapters) and chapter 01's classifier decoded alike.
- :mod:`.locate_methods` -- ``soundloc locate --method agclip|fused`` (registered by path in ``soundloc.locator``).

The names below are re-exported so ``from soundloc import agclip; agclip.decode(...)`` keeps working.
"""
from __future__ import annotations

from .experiment import (DECODER_NAMES, FUSION_ROWS, AGCLIPResult, AGCLIPRunConfig, checklist_targets,
                         hierarchical_baseline, hierarchical_gallery_log_posterior, km_errors, main_entry, main_model,
                         run_agclip, split_recording_features)
from .fusion import credible_sets, fuse
from .galleries import (GALLERIES, GALLERY_ROWS, GRID_STEP, PAPER_GALLERY, SUBGRID_OF, build_gallery,
                        gallery_log_area, gallery_posterior, grid_maps, grid_rows, nearest_point, vmf_log_prior)
from .locate_methods import agclip_logits, recording_features
from .model import (LOCATION_ENCODERS, AGCLIPConfig, AGCLIPHead, FourierLocationEncoder, MaskDropout,
                    SINRLocationEncoder, bce_with_logits, load_location_encoder, mlp)
from .pooling import (POOLINGS, TransformerPooler, kmeans_largest, pool_windows, split_features, train_pooler,
                      window_features)
from .retrieval import DECODERS, decode, decode_log_posterior, log_posterior, topk_chunked

__all__ = [
    "AGCLIPConfig", "AGCLIPHead", "FourierLocationEncoder", "SINRLocationEncoder", "MaskDropout", "mlp",
    "bce_with_logits", "load_location_encoder", "LOCATION_ENCODERS",
    "topk_chunked", "log_posterior", "DECODERS", "decode", "decode_log_posterior",
    "POOLINGS", "kmeans_largest", "TransformerPooler", "window_features", "pool_windows", "train_pooler",
    "split_features",
    "GALLERIES", "build_gallery", "grid_maps", "SUBGRID_OF", "GRID_STEP", "gallery_log_area", "grid_rows", "nearest_point",
    "GALLERY_ROWS", "PAPER_GALLERY", "gallery_posterior", "vmf_log_prior",
    "fuse", "credible_sets",
    "AGCLIPRunConfig", "AGCLIPResult", "checklist_targets", "km_errors", "DECODER_NAMES", "FUSION_ROWS", "run_agclip",
    "main_model",
    "hierarchical_baseline",
    "hierarchical_gallery_log_posterior", "main_entry", "split_recording_features",
    "recording_features", "agclip_logits",
]
