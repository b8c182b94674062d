"""gclab: global-context attention built from scratch.

Sub-packages
------------
gclab.nn      PyTorch blocks: NonLocal1d/2d/3d, SimplifiedNonLocal2d, GCBlock, SEBlock,
              and the pieces of the three-step framework they share
              (context modelling -> transform -> fusion).
gclab.numpy   The same blocks written from scratch in NumPy, with forward/backward pairs.
"""

__version__ = "0.1.0"
