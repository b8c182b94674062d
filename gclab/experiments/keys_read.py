r"""How many of an image's keys a trained model reads, from its predictions alone.

On the key tasks of :mod:`gclab.experiments.tasks` the map's rows fall into *units* that each
have their own keys: on ``digitkeys`` the two halves of the rows, two keys each; on
``digitgrid`` every row, four keys. Every scored cell of a unit is labelled with the class of
one of its unit's keys, so within a unit the scored cells fall into groups by their label, one
group per key, whenever the unit's keys differ and every key is asked for. A model that
carries a key across the map gets its group right; one that does not is at chance there
(about 0.1). So

.. math::

    \text{keys read} = \sum_{u} k \cdot
        \frac{\#\{\text{groups of unit } u \text{ with accuracy} \ge 1/2\}}
             {\#\{\text{groups of unit } u\}}

(k keys per unit, the groups of every image) counts the keys a model reads, 0 to 4 on
``digitkeys``, 0 to 16 on ``digitgrid``, without knowing which marker each cell holds. A
``digitkeys`` model at 0.30 accuracy that reads one key of four scores 1; one that reads two
scores 2.

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

from typing import Dict, Tuple

import torch
from torch import Tensor

from gclab.experiments.tasks import IGNORE

#: (units of rows, keys per unit) of each key task: ``digitkeys`` two halves of two keys,
#: ``digitgrid`` four rows of four keys (its stored level, 4 key columns)
LAYOUT: Dict[str, Tuple[int, int]] = {"digitkeys": (2, 2), "digitgrid": (4, 4)}


def keys_read(pred: Tensor, y: Tensor, task: str = "digitkeys") -> float:
    """Keys read per image (0 to units x keys), from predictions and labels (B, 4, 16).

    The cells of a unit (:data:`LAYOUT`) are grouped by label; a unit whose scored cells
    carry fewer labels than it has keys (two keys of one class, or a key no cell asks for)
    is skipped."""
    if task not in LAYOUT:
        raise ValueError(f"task must be one of {list(LAYOUT)}, got {task!r}")
    units, keys = LAYOUT[task]
    if pred.shape != y.shape or y.dim() != 3 or y.shape[1] % units:
        raise ValueError(f"pred and y must be (B, rows, cols) of one shape with rows a "
                         f"multiple of {units}, got {tuple(pred.shape)} and {tuple(y.shape)}")
    size = y.shape[1] // units
    read, groups = [0] * units, [0] * units
    for i in range(y.shape[0]):
        for u in range(units):
            yy, pp = y[i, u * size:(u + 1) * size], pred[i, u * size:(u + 1) * size]
            scored = yy != IGNORE
            labels = torch.unique(yy[scored])
            if len(labels) != keys:
                continue
            for v in labels:
                cells = scored & (yy == v)
                groups[u] += 1
                read[u] += int((pp[cells] == v).float().mean() >= 0.5)
    if min(groups) == 0:
        raise ValueError(f"no unit of any image has {keys} keys of different classes "
                         f"(groups per unit: {groups})")
    return sum(keys * r / g for r, g in zip(read, groups))
