"""The two tasks: determinism, balance, geometry, and the stored copies' checksums."""

import numpy as np
import pytest

from gclab.experiments import data


@pytest.mark.parametrize("task", data.TASKS)
def test_deterministic_and_balanced(task):
    x1, y1 = data.make_split(task, "test", n=64, seed=3)
    x2, y2 = data.make_split(task, "test", n=64, seed=3)
    x3, _ = data.make_split(task, "test", n=64, seed=4)
    assert x1.shape == (64, 1, data.HEIGHT, data.WIDTH) and x1.dtype == np.uint8
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert y1.sum() == 32  # exactly half "same"


def test_train_and_test_differ_and_digits_do_not_share_images():
    xtr, _ = data.make_split("digits", "train", n=32)
    xte, _ = data.make_split("digits", "test", n=32)
    assert not np.array_equal(xtr, xte)
    tr, te = data._digit_pool("train"), data._digit_pool("test")
    a = {im.tobytes() for c in data.DIGIT_CLASSES for im in tr[c]}
    b = {im.tobytes() for c in data.DIGIT_CLASSES for im in te[c]}
    assert not a & b


@pytest.mark.parametrize("task", data.TASKS)
def test_end_objects_decide_the_label(task, monkeypatch):
    """Without clutter the only ink is the two end objects, in their columns; the label says
    whether they are the same (checked by comparing the objects' pixels for glyphs)."""
    monkeypatch.setattr(data, "_salt_and_strokes", lambda *a, **k: None)
    orig_paste = data._paste
    pasted = []

    def spy(canvas, patch, r, c):
        pasted.append((patch.copy(), c))
        orig_paste(canvas, patch, r, c)

    monkeypatch.setattr(data, "_paste", spy)
    x, y = data.make_split(task, "test", n=40, seed=9)
    # per image: distractor first, then the left and the right object
    for i in range(40):
        (_, cd), (a, ca), (b, cb) = pasted[3 * i : 3 * i + 3]
        assert data.LEFT_COLUMNS[0] <= ca and ca + a.shape[1] <= data.LEFT_COLUMNS[1]
        assert data.RIGHT_COLUMNS[0] <= cb and cb + b.shape[1] <= data.RIGHT_COLUMNS[1]
        assert data.LEFT_COLUMNS[1] < cd and cd + 6 <= data.RIGHT_COLUMNS[0]
        if task == "longrange":
            assert y[i] == int(np.array_equal(a, b))
    assert 0 < y.mean() < 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="task must be one of"):
        data.make_split("cifar", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        data.make_split("longrange", "val")
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
    assert total <= 20 * 2**20, f"data/ holds {total / 2**20:.1f} MB > 20 MB"
    x, y = data.load("longrange", "test")
    x2, y2 = data.make_split("longrange", "test")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_write_and_check_round_trip(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SIZES", {"train": 8, "test": 4})
    paths = data.write(tmp_path)
    assert (tmp_path / "SHA256SUMS").exists() and len(paths) == 9
    assert data.check(tmp_path) == []
    first = (tmp_path / "digits" / "test_x.npy.gz").read_bytes()
    data.write(tmp_path)  # byte-identical when written again (gzip mtime=0)
    assert (tmp_path / "digits" / "test_x.npy.gz").read_bytes() == first
    (tmp_path / "longrange" / "test_y.npy.gz").write_bytes(b"corrupt")
    assert any("test_y" in p for p in data.check(tmp_path))


@pytest.mark.slow
def test_full_checksums_including_train_splits():
    if not (data.DATA_DIR / data.SUMS_FILE).exists():
        pytest.skip(
            "data/SHA256SUMS not generated yet: run `python -m gclab.experiments.data --write`"
        )
    assert data.check() == []
