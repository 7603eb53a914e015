"""Matting data: synthetic generator, dataset layouts, parquet manifests, augmentations.

Plain numpy / OpenCV / pyarrow; Ray builds on these (``dugray.pipeline``), never the
other way round.
"""

from dugray.data.augment import (
    AugmentConfig,
    augment_sample,
    composite,
    random_blur,
    random_crop,
    random_flip,
    random_shadow,
    random_sharpen,
)
from dugray.data.io import load_example, read_mask, read_rgb, write_png
from dugray.data.layouts import LAYOUTS, LayoutError, detect_layouts, read_layout
from dugray.data.manifest import SCHEMA, build_manifest, load_or_build, read_manifest, summary
from dugray.data.photos import available_photos
from dugray.data.synthetic import SynthConfig, generate_sample, render_alpha, write_dataset
from dugray.data.trimap import make_trimap

__all__ = [
    "AugmentConfig",
    "augment_sample",
    "composite",
    "random_blur",
    "random_crop",
    "random_flip",
    "random_shadow",
    "random_sharpen",
    "load_example",
    "read_mask",
    "read_rgb",
    "write_png",
    "LAYOUTS",
    "LayoutError",
    "detect_layouts",
    "read_layout",
    "SCHEMA",
    "build_manifest",
    "load_or_build",
    "read_manifest",
    "summary",
    "available_photos",
    "SynthConfig",
    "generate_sample",
    "render_alpha",
    "write_dataset",
    "make_trimap",
]
