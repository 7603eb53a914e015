"""Matting networks with the NIG head, the refiner, a registry and checkpoints.

from dugray.models import create_model, create_refiner
net = create_model("unet")   # or "modnet_lite", "modnet", "u2netp", "u2netp_guided"
gamma, nu, alpha, beta = net(image, user_map)
refiner = create_refiner("hrnet_lite")
refined = refiner(coarse_patches, image_patches)
"""

from .checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .default import load_default
from .layers import num_parameters
from .loading import load_model, load_networks, refiner_uri_for, resolve_device
from .modnet import MODNet
from .modnet_lite import MODNetLite
from .nig_head import NIGHead
from .refiner import HRNetLiteRefiner
from .registry import (
    available_models,
    available_refiners,
    create_model,
    create_refiner,
    register_model,
    register_refiner,
)
from .u2netp import U2NetpGuided, U2NetpMatting

# Importing the model modules registers them.
from .unet import UNetMatting

__all__ = [
    "available_models",
    "available_refiners",
    "create_model",
    "create_refiner",
    "register_model",
    "register_refiner",
    "num_parameters",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "CheckpointError",
    "NIGHead",
    "load_default",
    "load_model",
    "load_networks",
    "refiner_uri_for",
    "resolve_device",
    "UNetMatting",
    "MODNetLite",
    "MODNet",
    "HRNetLiteRefiner",
    "U2NetpGuided",
    "U2NetpMatting",
]
