"""Interop with mmcv and mmdet: their parameter names, their modules, their checkpoints.

keys         the (mmcv prefix, gclab prefix) tables and the blocks' load pre-hooks, so an mmcv
             state_dict loads into a gclab block with ``load_state_dict(strict=True)``
convert      ``from_mmcv(module)`` (the matching gclab block, weights copied) and
             ``mmcv_to_gclab_state_dict``
checkpoints  ``load_mmdet_gcnet`` / ``map_checkpoint_keys``: mmdet GCNet checkpoints into a
             model built with ``insert_blocks``
"""
