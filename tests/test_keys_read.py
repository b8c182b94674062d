"""keys_read counts the keys a model gets right, from predictions and labels alone: checked
against predictions built from the keys each cell needs, read back from the pixels."""

import numpy as np
import pytest
import torch
from glyphs import marker_of

from gclab.experiments import data, tasks
from gclab.experiments.keys_read import keys_read

#: per task: (level, keys per image, slot of a cell from its row and marker)
TASKS = {"digitkeys": (6, 4, lambda r, m: 2 * (r // 2) + m),
         "digitgrid": (4, 16, lambda r, m: 4 * r + m)}


@pytest.fixture(params=list(TASKS))
def split(request, monkeypatch):
    """Task, labels of 40 noise-free images and the slot (key) each scored cell needs, its
    key column read from the marker's pixels."""
    task = request.param
    level, _, slot_of = TASKS[task]
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    x, y = data.make_split(task, "test", n=40, difficulty=level)
    slot = np.full(y.shape, -1)
    for i, r, c in zip(*np.nonzero(y != tasks.IGNORE)):
        slot[i, r, c] = slot_of(r, marker_of(x[i, 0, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4]))
    return task, torch.as_tensor(y), slot


def _reading(y: torch.Tensor, slot: np.ndarray, read: set) -> torch.Tensor:
    """Predictions right on the cells that need a key of ``read`` (slots 0-3), wrong on all
    the others."""
    pred = (y + 1 + torch.as_tensor(np.random.default_rng(0).integers(0, 9, y.shape))) % 10
    right = torch.as_tensor(np.isin(slot, sorted(read)))
    return torch.where(right, y, pred)


@pytest.mark.parametrize("read", [set(), {0}, {0, 3}, {1, 2, 3}, {0, 1, 2, 3}])
def test_counts_the_keys_read(split, read):
    task, y, slot = split
    assert keys_read(_reading(y, slot, read), y, task) == pytest.approx(len(read))


def test_every_key_read_counts_all_keys(split):
    task, y, slot = split
    every = set(range(TASKS[task][1]))
    assert keys_read(_reading(y, slot, every), y, task) == pytest.approx(len(every))


def test_a_key_half_right_counts_and_a_key_mostly_wrong_does_not(split):
    task, y, slot = split
    pred = _reading(y, slot, {0, 1})
    cells = np.argwhere(slot == 1)
    for i, r, c in cells[::3]:  # a third of key 1's cells wrong: still read
        pred[i, r, c] = (y[i, r, c] + 1) % 10
    assert keys_read(pred, y, task) == pytest.approx(2.0)
    for i, r, c in cells:  # all wrong: not read
        pred[i, r, c] = (y[i, r, c] + 1) % 10
    assert keys_read(pred, y, task) == pytest.approx(1.0)


def test_a_constant_answer_reads_about_one_key_in_ten(split):
    """Always answering class 3 is right on the groups whose key is a 3 (1 in 10)."""
    task, y, _ = split
    keys = TASKS[task][1]
    assert 0.0 < keys_read(torch.full_like(y, 3), y, task) < 0.25 * keys


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"\(2, 4, 16\) and \(2, 4, 15\)"):
        keys_read(torch.zeros(2, 4, 16, dtype=torch.long), torch.zeros(2, 4, 15, dtype=torch.long))
    with pytest.raises(ValueError, match="no unit of any image has 2 keys"):
        keys_read(torch.zeros(1, 4, 16, dtype=torch.long),
                  torch.full((1, 4, 16), tasks.IGNORE))
    with pytest.raises(ValueError, match="task must be one of"):
        keys_read(torch.zeros(1, 4, 16, dtype=torch.long),
                  torch.zeros(1, 4, 16, dtype=torch.long), "lookalike")
