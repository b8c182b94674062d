"""The tasks: determinism, balance, geometry, and the stored copies' checksums."""

import numpy as np
import pytest
import torch
from glyphs import marker_of

from gclab.experiments import data, tasks
from gclab.experiments.models import SmallResNet


@pytest.mark.parametrize("task", data.TASKS)
def test_deterministic_and_balanced(task):
    x1, y1 = data.make_split(task, "test", n=64, seed=3)
    x2, y2 = data.make_split(task, "test", n=64, seed=3)
    x3, _ = data.make_split(task, "test", n=64, seed=4)
    assert x1.shape == (64, 1, tasks.HEIGHT, tasks.WIDTH) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    if task == "longrange":
        assert y1.sum() == 32  # exactly half "same"
    else:
        first = {"manykeys": tasks.MANYKEYS_FIRST_CELL, "digitkeys": tasks.DIGITKEYS_FIRST_CELL,
                 "digitgrid": tasks.DIGITGRID_FIRST_CELL}.get(task, tasks.PAINT_FIRST_CELL)
        assert y1.shape == (64, tasks.HEIGHT // 4, tasks.WIDTH // 4)
        assert (y1[:, :, :first] == tasks.IGNORE).all()
        scored = y1[:, :, first:]
        if task in ("digitkeys", "digitgrid"):  # ten classes, none much more frequent
            counts = np.bincount(scored.ravel(), minlength=10)
            assert len(counts) == 10 and counts.min() > 0 and counts.max() < 0.2 * scored.size
        else:
            assert set(np.unique(scored)) == {0, 1} and 0.4 < scored.mean() < 0.6


def test_difficulty_levels_differ_and_are_checked():
    small, _ = data.make_split("paint", "test", n=16, difficulty=6)
    big, _ = data.make_split("paint", "test", n=16, difficulty=10)
    assert not np.array_equal(small, big)
    with pytest.raises(ValueError, match="difficulty"):
        data.make_split("paint", "test", n=4, difficulty=20)
    with pytest.raises(ValueError, match="difficulty"):
        data.make_split("longrange", "test", n=4, difficulty=3)
    with pytest.raises(ValueError, match="difficulty"):
        data.make_split("twokeys", "test", n=4, difficulty=51)
    with pytest.raises(ValueError, match="difficulty"):
        data.make_split("lookalike", "test", n=4, difficulty=True)
    a, _ = data.make_split("lookalike", "test", n=16, difficulty=8)
    b, _ = data.make_split("paint", "test", n=16, difficulty=8)
    assert not np.array_equal(a, b)


def test_train_val_and_test_differ_and_digits_do_not_share_images():
    """Three disjoint sets of handwriting: early stopping reads digits no run trained on."""
    xtr, _ = data.make_split("paint", "train", n=32)
    xva, _ = data.make_split("paint", "val", n=32)
    xte, _ = data.make_split("paint", "test", n=32)
    assert not np.array_equal(xtr, xte) and not np.array_equal(xtr, xva)
    pools = {s: tasks.digit_pool(s) for s in data.SPLITS}
    seen = {s: {im.tobytes() for c in range(10) for im in pools[s][c]} for s in data.SPLITS}
    assert not seen["train"] & seen["test"] and not seen["train"] & seen["val"]
    assert not seen["val"] & seen["test"]
    assert all(len(seen[s]) > 150 for s in data.SPLITS)


def test_manykeys_label_is_the_key_of_the_cells_row_and_marker(monkeypatch):
    """Without noise, read the key glyphs and the markers back from the pixels and rebuild
    every scored label: key[row, marker]."""
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    x, y = data.make_split("manykeys", "test", n=8, difficulty=2)
    ink = x[:, 0] > 0
    for i in range(8):
        for r in range(4):
            keys = []
            for m in range(2):
                cell = ink[i, 4 * r : 4 * r + 4, 4 * m : 4 * m + 4]
                keys.append(int(cell.sum() == 5))  # plus: 5 pixels, ring: 8
            for c in range(tasks.MANYKEYS_FIRST_CELL, 16):
                marker = marker_of(ink[i, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4])
                assert marker in (0, 1)  # two key columns: the horizontal and vertical bar
                assert y[i, r, c] == keys[marker], (i, r, c)


@pytest.mark.parametrize("task, first", [("manykeys", tasks.MANYKEYS_FIRST_CELL),
                                         ("digitkeys", tasks.DIGITKEYS_FIRST_CELL),
                                         ("digitgrid", tasks.DIGITGRID_FIRST_CELL)])
def test_no_scored_cell_of_the_many_keys_baseline_sees_a_key(task, first):
    from gclab.experiments.plan import build_model

    x = torch.rand(2, 1, tasks.HEIGHT, tasks.WIDTH, requires_grad=True)
    model = build_model("baseline", task).eval()
    out = model(x)[:, :, :, first:].sum()
    (grad,) = torch.autograd.grad(out, x)
    assert not bool((grad[..., :16] != 0).any()) and bool((grad[..., 16:] != 0).any())


def test_digitkeys_label_is_the_class_of_the_key_of_the_cells_half_and_marker(monkeypatch):
    """Without noise, find each key digit among the handwriting pool by its pixels, read the
    markers back from the pixels, and rebuild every scored label: class of keys[r // 2, m]."""
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    side = 6
    x, y = data.make_split("digitkeys", "test", n=6, difficulty=side)
    pool = tasks.digit_pool("test", side)
    lookup = {np.round(im * 255).astype(np.uint8).tobytes(): c
              for c in range(10) for im in pool[c]}
    pad = (tasks.DIGITKEYS_SLOT - side) // 2
    for i in range(6):
        keys = [[lookup[x[i, 0, 8 * h + pad: 8 * h + pad + side,
                            8 * k + pad: 8 * k + pad + side].tobytes()]
                 for k in range(2)] for h in range(2)]
        for r in range(4):
            for c in range(tasks.DIGITKEYS_FIRST_CELL, 16):
                marker = marker_of(x[i, 0, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4])
                assert marker in (0, 1)  # two key columns: the horizontal and vertical bar
                assert y[i, r, c] == keys[r // 2][marker], (i, r, c)


def test_digitgrid_label_is_the_class_of_the_key_of_the_cells_row_and_marker(monkeypatch):
    """Without noise, find each of the sixteen 4-px key digits among the handwriting pool by
    its pixels, read the four kinds of marker back from the pixels, and rebuild every scored
    label: class of keys[r, marker]; every marker kind and every class occurs."""
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    x, y = data.make_split("digitgrid", "test", n=6, difficulty=4)
    side = tasks.DIGITGRID_SIDE
    pool = tasks.digit_pool("test", side)
    lookup = {}
    for c in range(10):
        for im in pool[c]:
            lookup.setdefault(np.round(im * 255).astype(np.uint8).tobytes(), set()).add(c)
    seen_markers, seen_classes = set(), set()
    for i in range(6):
        keys = [[lookup[x[i, 0, 4 * r: 4 * r + side, 4 * k: 4 * k + side].tobytes()]
                 for k in range(4)] for r in range(4)]
        for r in range(4):
            for c in range(tasks.DIGITGRID_FIRST_CELL, 16):
                m = marker_of(x[i, 0, 4 * r: 4 * r + 4, 4 * c: 4 * c + 4])
                assert int(y[i, r, c]) in keys[r][m], (i, r, c)
                seen_markers.add(m)
                seen_classes.add(int(y[i, r, c]))
    assert seen_markers == {0, 1, 2, 3} and seen_classes == set(range(10))


def test_longrange_end_objects_decide_the_label(monkeypatch):
    """Without clutter the only ink is the two end objects, in their columns; the label says
    whether they are the same (checked by comparing the objects' pixels)."""
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    orig_paste = tasks._paste
    pasted = []

    def spy(canvas, patch, r, c):
        pasted.append((patch.copy(), c))
        orig_paste(canvas, patch, r, c)

    monkeypatch.setattr(tasks, "_paste", spy)
    x, y = data.make_split("longrange", "test", n=40, seed=9)
    # per image: distractor first, then the left and the right object
    for i in range(40):
        (_, cd), (a, ca), (b, cb) = pasted[3 * i : 3 * i + 3]
        assert tasks.LEFT_COLUMNS[0] <= ca and ca + a.shape[1] <= tasks.LEFT_COLUMNS[1]
        assert tasks.RIGHT_COLUMNS[0] <= cb and cb + b.shape[1] <= tasks.RIGHT_COLUMNS[1]
        assert tasks.LEFT_COLUMNS[1] < cd and cd + 6 <= tasks.RIGHT_COLUMNS[0]
        assert y[i] == int(np.array_equal(a, b))
    assert 0 < y.mean() < 1


def _bar_bits(x, i):
    """Every scored cell's bar read from the pixels: (4, 8) array, 1 = vertical."""
    bits = np.zeros((4, 16 - tasks.PAINT_FIRST_CELL), dtype=np.int64)
    for r in range(4):
        for cc in range(tasks.PAINT_FIRST_CELL, 16):
            cell = x[i, 0, 4 * r : 4 * r + 4, 4 * cc : 4 * cc + 4] > 0
            rows, cols = np.nonzero(cell)
            assert len(rows) in (0, 3)
            bits[r, cc - tasks.PAINT_FIRST_CELL] = len(rows) == 3 and len(set(cols)) == 1
    return bits


@pytest.mark.parametrize("task,side", [("paint", s) for s in data.DIFFICULTIES["paint"]]
                         + [("lookalike", s) for s in data.DIFFICULTIES["lookalike"]])
def test_paint_label_is_key_xor_vertical_bar(task, side, monkeypatch):
    """Read the key's class from the pasted digit and every cell's bar from the pixels (no salt
    noise): the label is key XOR (bar is vertical), blank cells carry the key. ``lookalike``
    is the same with the keys (and distractors) drawn from classes 1 and 8."""
    classes = tasks.DIGIT_CLASSES if task == "paint" else tasks.LOOKALIKE_CLASSES
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    orig_paste = tasks._paste
    pasted = []

    def spy(canvas, patch, r, c):
        pasted.append((patch.copy(), c))
        orig_paste(canvas, patch, r, c)

    monkeypatch.setattr(tasks, "_paste", spy)
    x, y = data.make_split(task, "test", n=12, seed=5, difficulty=side)
    pool, big = tasks.digit_pool("test", side), tasks.digit_pool("test")
    per = tasks.PAINT_DISTRACTORS + 1
    for i in range(12):
        for patch, _ in pasted[per * i : per * i + per - 1]:  # distractors: the same classes
            assert any(np.array_equal(patch, im) for cls in classes for im in big[cls])
        key_patch, c = pasted[per * i + per - 1]
        assert key_patch.shape == (side, side) and c + side <= 12
        key = [k for k, cls in enumerate(classes)
               if any(np.array_equal(key_patch, im) for im in pool[cls])]
        assert len(key) == 1
        assert np.array_equal(y[i, :, tasks.PAINT_FIRST_CELL :], key[0] ^ _bar_bits(x, i))


@pytest.mark.parametrize("disagree", data.DIFFICULTIES["twokeys"])
def test_twokeys_rows_read_their_own_key(disagree, monkeypatch):
    """Two 8 x 8 keys in columns [0, 12), one in pixel rows [0, 8), one in [8, 16); map rows
    0-1 are labelled with the top key, rows 2-3 with the bottom one; the keys differ in about
    ``disagree`` % of the images (exactly never at 0)."""
    monkeypatch.setattr(tasks, "_salt_and_strokes", lambda *a, **k: None)
    orig_paste = tasks._paste
    pasted = []

    def spy(canvas, patch, r, c):
        pasted.append((patch.copy(), r, c))
        orig_paste(canvas, patch, r, c)

    monkeypatch.setattr(tasks, "_paste", spy)
    n = 200
    x, y = data.make_split("twokeys", "test", n=n, seed=7, difficulty=disagree)
    pool = tasks.digit_pool("test", tasks.TWOKEYS_SIDE)
    per = tasks.PAINT_DISTRACTORS + 2
    differ = 0
    for i in range(n):
        keys = []
        for patch, r, c in pasted[per * i + per - 2 : per * i + per]:
            assert patch.shape == (8, 8) and c + 8 <= 12 and r in (0, 8)
            keys.append([k for k, cls in enumerate(tasks.DIGIT_CLASSES)
                         if any(np.array_equal(patch, im) for im in pool[cls])][0])
        if i < 20:  # reading the bars is slow; 20 images check the labels
            bits = _bar_bits(x, i)
            assert np.array_equal(y[i, :2, tasks.PAINT_FIRST_CELL :], bits[:2] ^ keys[0])
            assert np.array_equal(y[i, 2:, tasks.PAINT_FIRST_CELL :], bits[2:] ^ keys[1])
        differ += keys[0] != keys[1]
    assert abs(differ / n - disagree / 100) < 0.1 and (differ == 0) == (disagree == 0)


def test_no_scored_cell_of_the_baseline_sees_a_key():
    """Autograd: the plain dense CNN's logits on the scored cells do not depend on any pixel of
    columns [0, 12) (where the keys of paint, lookalike and twokeys lie); with a GC block they
    do."""
    # a fixed draw: on about 1 in 13 random draws (seeds 24, 25, 28 of 0-39) LayerNorm's affine
    # and the ReLU after it zero all 4 channels of GC's bottleneck, and the block sees nothing
    torch.manual_seed(0)
    x = torch.rand(2, 1, tasks.HEIGHT, tasks.WIDTH, requires_grad=True)
    for block, sees in ((None, False), ("gc", True)):
        model = SmallResNet(block=block, dense=True).eval()
        if block:
            for p in model.inserted[0][1].parameters():
                torch.nn.init.normal_(p, std=0.3)
        out = model(x)[:, :, :, tasks.PAINT_FIRST_CELL :].sum()
        (grad,) = torch.autograd.grad(out, x)
        assert bool((grad[..., :12] != 0).any()) == sees


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        data.make_split("cifar", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        data.make_split("longrange", "valid")
    with pytest.raises(ValueError, match="n must be"):
        data.make_split("longrange", "train", n=1)


def test_stored_files_match_checksums_and_regenerated_data():
    """data/SHA256SUMS == checksums of freshly generated arrays == the stored .npy.gz files."""
    sums = data.DATA_DIR / data.SUMS_FILE
    if not sums.exists():
        pytest.skip(
            "data/SHA256SUMS not generated yet: run `python -m gclab.experiments.data --write`"
        )
    assert data.check(splits=("test",)) == []  # the train splits: test_full_checksums
    total = sum(p.stat().st_size for p in data.DATA_DIR.rglob("*") if p.is_file())
    # twelve stored task levels of 1.6-3.1 MB each, the results and the bench: 25 MB today
    assert total <= 28 * 2**20, f"data/ holds {total / 2**20:.1f} MB > 28 MB"
    x, y = data.load("longrange", "test")
    x2, y2 = data.make_split("longrange", "test")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_write_and_check_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SIZES", {"train": 8, "val": 4, "test": 4})
    monkeypatch.setattr(data, "TASK_SIZES", {t: {"train": 8, "val": 4, "test": 4}
                                             for t in data.TASKS})
    paths = data.write(tmp_path)
    folders = sum(len(data.DIFFICULTIES[t]) for t in data.TASKS)
    assert (tmp_path / "SHA256SUMS").exists() and len(paths) == 2 * len(data.SPLITS) * folders + 1
    assert data.check(tmp_path) == []
    first = (tmp_path / "paint_d8" / "test_x.npy.gz").read_bytes()
    data.write(tmp_path)  # byte-identical when written again (gzip mtime=0)
    assert (tmp_path / "paint_d8" / "test_x.npy.gz").read_bytes() == first
    (tmp_path / "longrange" / "test_y.npy.gz").write_bytes(b"corrupt")
    assert any("test_y" in p for p in data.check(tmp_path))


@pytest.mark.slow
def test_full_checksums_including_train_splits():
    if not (data.DATA_DIR / data.SUMS_FILE).exists():
        pytest.skip(
            "data/SHA256SUMS not generated yet: run `python -m gclab.experiments.data --write`"
        )
    assert data.check() == []
