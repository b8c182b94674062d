"""PyTorch blocks of gclab: Non-local, Simplified NL, GC and SE, and the framework pieces."""

from .framework import (
    AttentionPooling,
    AveragePooling,
    Bottleneck,
    GlobalContextFramework,
    fusion,
)
from .gc_block import GCBlock
from .insert import InsertedBlock, InsertionSummary, insert_blocks
from .mmcv.checkpoints import LoadReport, load_mmdet_gcnet, map_checkpoint_keys
from .mmcv.convert import from_mmcv, mmcv_to_gclab_state_dict
from .non_local import NonLocal1d, NonLocal2d, NonLocal3d
from .se_block import SEBlock
from .snl_block import SimplifiedNonLocal2d

__all__ = [
    "AttentionPooling",
    "AveragePooling",
    "Bottleneck",
    "GCBlock",
    "GlobalContextFramework",
    "InsertedBlock",
    "InsertionSummary",
    "LoadReport",
    "NonLocal1d",
    "NonLocal2d",
    "NonLocal3d",
    "SEBlock",
    "SimplifiedNonLocal2d",
    "from_mmcv",
    "fusion",
    "insert_blocks",
    "load_mmdet_gcnet",
    "map_checkpoint_keys",
    "mmcv_to_gclab_state_dict",
]
