"""keys_read counts the keys a model gets right, from predictions and labels alone."""

import numpy as np
import pytest
import torch

from gclab.experiments import data, tasks
from gclab.experiments.keys_read import keys_read


@pytest.fixture(scope="module")
def split():
    """Labels of 40 digitkeys images (10 classes, IGNORE outside the scored cells)."""
    _, y = data.make_split("digitkeys", "test", n=40, difficulty=6)
    return torch.as_tensor(y)


def _reading(y: torch.Tensor, read: set, rng: np.random.Generator) -> torch.Tensor:
    """Predictions right on the cells of the keys in ``read`` ((half, key-of-half) by label
    order), wrong elsewhere."""
    pred = (y + 1 + torch.as_tensor(rng.integers(0, 9, size=y.shape))) % 10
    for i in range(y.shape[0]):
        for h in range(2):
            yy = y[i, 2 * h: 2 * h + 2]
            labels = torch.unique(yy[yy != tasks.IGNORE]).tolist()
            for j, v in enumerate(labels[:2]):
                if (h, j) in read:
                    cells = yy == v
                    pred[i, 2 * h: 2 * h + 2][cells] = v
    return pred


@pytest.mark.parametrize("read", [set(), {(0, 0)}, {(0, 0), (1, 1)},
                                  {(0, 0), (0, 1), (1, 0)}, {(0, 0), (0, 1), (1, 0), (1, 1)}])
def test_counts_the_keys_read(split, read):
    pred = _reading(split, read, np.random.default_rng(0))
    assert keys_read(pred, split) == pytest.approx(len(read))


def test_a_constant_answer_reads_about_one_key_in_ten(split):
    """Always answering class 3 is right on the groups whose key is a 3 (1 in 10)."""
    v = keys_read(torch.full_like(split, 3), split)
    assert 0.0 < v < 1.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(2, 4, 16\) and \(2, 4, 15\)"):
        keys_read(torch.zeros(2, 4, 16, dtype=torch.long), torch.zeros(2, 4, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="no half"):
        keys_read(torch.zeros(1, 4, 16, dtype=torch.long),
                  torch.full((1, 4, 16), tasks.IGNORE))
