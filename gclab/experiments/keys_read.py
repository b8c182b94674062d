r"""How many of an image's keys a trained model reads, from its predictions alone.

On ``digitkeys`` (:mod:`gclab.experiments.tasks`) every scored cell in a half of the rows is
labelled with the class of one of that half's two key digits, so within a half the scored
cells fall into two groups by their label, one group per key, whenever the two keys differ
(nine images in ten). A model that carries a key across the map gets its group right; one that
does not is at chance there (about 0.1). So

.. math::

    \text{keys read} = 4 \cdot \frac{\#\{\text{groups with accuracy} \ge 1/2\}}
                                    {\#\{\text{groups}\}}

counts the keys a model reads, 0 to 4, without knowing which marker each cell holds. A model
at 0.30 accuracy that reads one key of four scores 1; one that reads two scores 2.

Example::

    >>> import torch
    >>> y = torch.full((1, 4, 16), -100)
    >>> y[0, :2, 9:] = torch.tensor([3, 5] * 3 + [3])   # the top half: keys 3 and 5
    >>> y[0, 2:, 9:] = torch.tensor([7, 1] * 3 + [7])   # the bottom half: keys 7 and 1
    >>> pred = torch.where(y == 3, 3, 0)                  # reads key 3 only
    >>> keys_read(pred, y)
    1.0
"""

from __future__ import annotations

import torch
from torch import Tensor

from gclab.experiments.tasks import IGNORE

#: keys per image of ``digitkeys``: two halves of the rows, two keys each
KEYS = 4


def keys_read(pred: Tensor, y: Tensor) -> float:
    """Keys read per image (0 to :data:`KEYS`), from predictions and labels (B, 4, 16).

    The cells of a half (map rows 0-1 or 2-3) are grouped by label; a half whose scored
    cells carry fewer or more than two labels (its two keys of one class) is skipped."""
    if pred.shape != y.shape or y.dim() != 3 or y.shape[1] % 2:
        raise ValueError(f"pred and y must be (B, rows, cols) of one shape with an even "
                         f"number of rows, got {tuple(pred.shape)} and {tuple(y.shape)}")
    half = y.shape[1] // 2
    read = groups = 0
    for i in range(y.shape[0]):
        for h in range(2):
            yy, pp = y[i, h * half:(h + 1) * half], pred[i, h * half:(h + 1) * half]
            scored = yy != IGNORE
            labels = torch.unique(yy[scored])
            if len(labels) != 2:
                continue
            for v in labels:
                cells = scored & (yy == v)
                groups += 1
                read += int((pp[cells] == v).float().mean() >= 0.5)
    if groups == 0:
        raise ValueError("no half of any image has two keys of different classes")
    return KEYS * read / groups
