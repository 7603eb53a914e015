"""Label-carried evidence (DESIGN section 4c): a label reaches everything that belongs with it.

Plain numpy / OpenCV / numba, no Ray, no torch: :mod:`.geodesic` (geodesic distance on a
cost map) and :mod:`.evidence` (colour models of the labelled regions, the strength each
label carries to every pixel, and its NIG summation into the posterior).
"""

from .evidence import (
    CarryParams,
    Evidence,
    box_reach,
    carried_evidence,
    carry_labels,
    carry_passes,
    features,
    lab_image,
    labelled_mask,
    released_band,
)
from .geodesic import geodesic_distance

__all__ = [
    "CarryParams",
    "Evidence",
    "box_reach",
    "carried_evidence",
    "carry_labels",
    "carry_passes",
    "features",
    "geodesic_distance",
    "lab_image",
    "labelled_mask",
    "released_band",
]
