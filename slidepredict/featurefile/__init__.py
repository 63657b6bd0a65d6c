"""The per-slide h5 contract (docs/formats.md): one module owns writing, reading, paths and compatibility.

- :mod:`.h5`: atomic writes, completeness checks, locks, leftovers of killed runs
- :mod:`.layout`: file paths, dataset names and the attributes tiling and extraction write
- :mod:`.read`: reading ours, CLAM/TRIDENT (``features``) and STAMP (``feats``) files
- :mod:`.spec`: :class:`FeatureSpec` and every check that features belong together or fit a model
"""

from __future__ import annotations

from slidepredict.featurefile.h5 import (
    COMPLETE_ATTR,
    LOCK_SUFFIX,
    TMP_SUFFIX,
    clean_partials,
    is_complete,
    plain_attrs,
    read_attrs,
    slide_lock,
    write_h5_atomic,
    write_once,
)
from slidepredict.featurefile.layout import (
    COORDS,
    COORDS_DATASETS,
    COORDS_SUBDIR,
    FEATURE_DATASETS,
    FEATURE_KEYS,
    FEATURES,
    STAMP_FEATURES,
    STAMP_FILE_STEM,
    TILE_ATTRS,
    clam_coords_attrs,
    coords_attrs,
    coords_digest,
    default_coords_dir,
    feature_attrs,
    index_feature_files,
    slide_h5_path,
)
from slidepredict.featurefile.read import (
    FeatureBag,
    feature_dataset,
    load_coords,
    open_h5,
    positions_um,
    probe_feature_file,
    read_bag_rows,
    read_features,
)
from slidepredict.featurefile.spec import (
    COMPARED,
    TUNED_ATTR,
    UNKNOWN,
    FeatureSpec,
    SlideFeatures,
    check_model_features,
    common_spec,
    is_known,
)

__all__ = [
    "COMPARED", "COMPLETE_ATTR", "COORDS", "COORDS_DATASETS", "COORDS_SUBDIR", "FEATURES", "FEATURE_DATASETS",
    "FEATURE_KEYS", "LOCK_SUFFIX", "STAMP_FEATURES", "STAMP_FILE_STEM", "TILE_ATTRS", "TMP_SUFFIX", "TUNED_ATTR", "UNKNOWN",
    "FeatureBag", "FeatureSpec", "SlideFeatures", "check_model_features", "clam_coords_attrs", "clean_partials",
    "common_spec", "coords_attrs", "coords_digest", "default_coords_dir", "feature_attrs", "feature_dataset",
    "index_feature_files", "is_complete", "is_known", "load_coords", "open_h5", "plain_attrs", "positions_um",
    "probe_feature_file", "read_attrs", "read_bag_rows", "read_features", "slide_h5_path", "slide_lock",
    "write_h5_atomic", "write_once",
]
