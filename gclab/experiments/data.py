r"""Two small image tasks whose label needs long-range information (issue 4).

Both tasks draw on a wide 16 x 64 canvas (one channel, uint8). Two objects sit at the two
*ends* of the strip, and the label says whether they are the same:

``longrange``
    Two 10 x 10 glyphs (a 5x5 "plus" or "ring" drawn at twice the size), one in columns
    [0, 12), one in columns [52, 64), plus clutter: salt noise, short random strokes and a small
    distractor glyph (any of :data:`GLYPHS`) in the middle. Label 1 when the two *end* glyphs
    are the same glyph.
``digits``
    Two handwritten digits (classes :data:`DIGIT_CLASSES`) from scikit-learn's bundled
    ``load_digits`` (no download), resized to 10 x 10, at the same two ends, plus salt noise,
    a stroke and a slice of another digit in the middle. Label 1 when the two end digits are
    the same class. Train and test canvases use disjoint digit images.

Why a wide strip: any feature that sees a pixel of both end objects must span at least 42
columns, while the backbone of :mod:`gclab.experiments.models` has a theoretical receptive field
of 41 pixels, so **no feature of the plain CNN sees both objects**. Its head is global average
pooling + a linear layer, so its logit is a sum of per-position terms, each a function of one
object at most: :math:`F(a) + G(b) + \text{clutter terms}`. "Same or not" is an XNOR of the two
objects. No such sum decides it (at best it is right on 3 of the 4 combinations, e.g. "same
iff both are plus"), and under the cross-entropy loss the best such sum is the constant 1/2:
flipping one object flips the label, so the loss is symmetric under ``logit -> -logit`` and
convex in the head. The baseline therefore stays near chance (50 %), and a block that mixes
information across the whole map (NL, SNL, GC, SE) is what can lift it.
The 16 x 64 strip costs what a 32 x 32 image costs.

Every split is a pure function of ``(task, split, seed)``. The copies under ``data/`` are
regenerated, and their checksums checked, by::

    python -m gclab.experiments.data --write   # data/<task>/{train,test}_{x,y}.npy.gz + SHA256SUMS
    python -m gclab.experiments.data --check   # regenerates in memory, compares with SHA256SUMS

Example::

    >>> x, y = make_split("longrange", "train", n=4, seed=0)
    >>> x.shape, x.dtype, int(y.sum())
    ((4, 1, 16, 64), dtype('uint8'), 2)
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

TASKS = ("longrange", "digits")
SPLITS = ("train", "test")
HEIGHT, WIDTH = 16, 64
#: number of examples per split stored under data/
SIZES = {"train": 12800, "test": 1024}
#: the seed of each split (train and test never share a generator stream)
SPLIT_SEEDS = {"train": 1, "test": 2}
DATA_DIR = Path(__file__).resolve().parents[2] / "data"
SUMS_FILE = "SHA256SUMS"
#: digit classes used by the digits task (two classes keep one run within the CPU budget)
DIGIT_CLASSES = (4, 7)
#: side of the two end objects (10 x 10) and the columns they may occupy
OBJECT = 10
LEFT_COLUMNS, RIGHT_COLUMNS = (0, 12), (WIDTH - 12, WIDTH)

_G = {
    "plus": ["..#..", "..#..", "#####", "..#..", "..#.."],
    "cross": ["#...#", ".#.#.", "..#..", ".#.#.", "#...#"],
    "ring": ["#####", "#...#", "#...#", "#...#", "#####"],
    "tee": ["#####", "..#..", "..#..", "..#..", "..#.."],
}
#: the 5x5 glyphs of the long-range task, {name: float array (5, 5) of 0/1}
GLYPHS: Dict[str, np.ndarray] = {
    k: np.array([[c == "#" for c in row] for row in v], dtype=np.float64) for k, v in _G.items()
}
#: the two glyphs that the end objects are drawn from (any glyph can be a distractor)
END_GLYPHS = ("plus", "ring")
_GLYPH_LIST = list(GLYPHS.values())
_END_LIST = [GLYPHS[k] for k in END_GLYPHS]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def _salt_and_strokes(canvas: np.ndarray, rng: np.random.Generator, strokes: int) -> None:
    """Add salt noise (3 % of pixels) and ``strokes`` short lines, in place."""
    salt = rng.random(canvas.shape) < 0.03
    canvas[salt] = np.maximum(canvas[salt], rng.uniform(0.3, 1.0, size=int(salt.sum())))
    for _ in range(strokes):
        r, c = int(rng.integers(0, HEIGHT)), int(rng.integers(12, WIDTH - 16))
        length = int(rng.integers(3, 6))
        if rng.random() < 0.5:
            canvas[r, c : c + length] = np.maximum(canvas[r, c : c + length], 0.7)
        else:
            canvas[r : r + length, c] = np.maximum(canvas[r : r + length, c], 0.7)


def _paste(canvas: np.ndarray, patch: np.ndarray, r: int, c: int) -> None:
    h, w = patch.shape
    canvas[r : r + h, c : c + w] = np.maximum(canvas[r : r + h, c : c + w], patch)


def _pair_labels(rng: np.random.Generator, n: int, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Balanced labels and (left, right) class indices out of k with P(same) = 1/2."""
    y = np.zeros(n, dtype=np.int64)
    y[: n // 2] = 1
    rng.shuffle(y)
    left = rng.integers(0, k, size=n)
    other = (left + rng.integers(1, k, size=n)) % k  # uniform over the k-1 other classes
    right = np.where(y == 1, left, other)
    return left, right


def _longrange(n: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    left, right = _pair_labels(rng, n, len(_END_LIST))
    k = len(_GLYPH_LIST)
    x = np.zeros((n, HEIGHT, WIDTH), dtype=np.float64)
    for i in range(n):
        canvas = x[i]
        _salt_and_strokes(canvas, rng, strokes=3)
        # a small distractor glyph in the middle, away from both ends
        _paste(canvas, _GLYPH_LIST[int(rng.integers(0, k))],
               int(rng.integers(0, HEIGHT - 4)), int(rng.integers(20, WIDTH - 25)))
        _paste_end_objects(canvas, rng, _big(_END_LIST[left[i]]), _big(_END_LIST[right[i]]))
    y = (left == right).astype(np.int64)
    return x, y


def _big(glyph: np.ndarray) -> np.ndarray:
    """A 5x5 glyph drawn at twice the size (10 x 10)."""
    return np.kron(glyph, np.ones((2, 2)))


def _paste_end_objects(canvas: np.ndarray, rng: np.random.Generator, a: np.ndarray,
                       b: np.ndarray) -> None:
    """Paste two OBJECT x OBJECT patches at the two ends: columns [0, 12) and [52, 64)."""
    for patch, c0 in ((a, 0), (b, WIDTH - OBJECT - 2)):
        _paste(canvas, patch, int(rng.integers(0, HEIGHT - OBJECT + 1)),
               c0 + int(rng.integers(0, 3)))


def _digit_pool(split: str) -> Dict[int, np.ndarray]:
    """sklearn's digits scaled to [0, 1] and resized to 10 x 10 (bilinear), split by index
    parity (train even, test odd)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.stack([zoom(im / 16.0, OBJECT / 8, order=1) for im in d.images]), 0, 1)
    keep = np.arange(len(images)) % 2 == (0 if split == "train" else 1)
    return {c: images[keep & (d.target == c)] for c in range(10)}


def _digits(n: int, rng: np.random.Generator, split: str) -> Tuple[np.ndarray, np.ndarray]:
    pool = _digit_pool(split)
    classes = DIGIT_CLASSES
    left, right = _pair_labels(rng, n, len(classes))
    others = [c for c in range(10) if c not in classes]
    x = np.zeros((n, HEIGHT, WIDTH), dtype=np.float64)

    def pick(c: int) -> np.ndarray:
        imgs = pool[c]
        return imgs[int(rng.integers(0, len(imgs)))]

    for i in range(n):
        canvas = x[i]
        _salt_and_strokes(canvas, rng, strokes=1)
        frag = pick(others[int(rng.integers(0, len(others)))])[:, 2:8]  # a slice of a digit
        _paste(canvas, frag, int(rng.integers(0, HEIGHT - OBJECT + 1)),
               int(rng.integers(20, WIDTH - 26)))
        _paste_end_objects(canvas, rng, pick(classes[left[i]]), pick(classes[right[i]]))
    y = (left == right).astype(np.int64)
    return x, y


def make_split(
    task: str, split: str, n: int | None = None, seed: int | None = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Generate one split: images (n, 1, 16, 64) uint8 and labels (n,) int64 in {0, 1}.

    Deterministic: the same ``(task, split, n, seed)`` always gives the same arrays.
    ``n`` defaults to :data:`SIZES` [split], ``seed`` to :data:`SPLIT_SEEDS` [split].
    Half of the labels are 1 ("the two end objects are the same").
    """
    _check_task(task)
    _check_split(split)
    n = SIZES[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    seed = SPLIT_SEEDS[split] if seed is None else seed
    # one stream per (task, seed): the task name is hashed into the seed sequence
    rng = np.random.default_rng([int(seed), TASKS.index(task)])
    if task == "longrange":
        x, y = _longrange(int(n), rng)
    else:
        x, y = _digits(int(n), rng, split)
    images = np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)[:, None]
    return images, y


def _npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _arrays(tasks: Sequence[str] = TASKS, splits: Sequence[str] = SPLITS) -> Dict[str, bytes]:
    """{relative path under data/ (without .gz): .npy bytes} of the stored arrays."""
    out = {}
    for task in tasks:
        for split in splits:
            x, y = make_split(task, split)
            out[f"{task}/{split}_x.npy"] = _npy_bytes(x)
            out[f"{task}/{split}_y.npy"] = _npy_bytes(y)
    return out


def sha256sums(files: Dict[str, bytes]) -> str:
    """The text of a ``sha256sum``-style file for ``files`` ({path: bytes})."""
    return "".join(f"{hashlib.sha256(b).hexdigest()}  {p}\n" for p, b in sorted(files.items()))


def write(data_dir: Path = DATA_DIR) -> List[Path]:
    """Regenerate data/<task>/*.npy.gz and data/SHA256SUMS; returns the written paths.

    SHA256SUMS lists the checksums of the *uncompressed* .npy contents (so they do not depend
    on the zlib build); ``gzip`` runs with ``mtime=0`` so the .gz files are reproducible too.
    """
    arrays = _arrays()
    written = []
    for rel, b in arrays.items():
        p = Path(data_dir) / (rel + ".gz")
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                                compresslevel=9, filename="") as gz:
            gz.write(b)
        written.append(p)
    sums = Path(data_dir) / SUMS_FILE
    sums.write_text(sha256sums(arrays))
    return written + [sums]


def _read(path: Path) -> bytes:
    with gzip.open(path, "rb") as f:
        return f.read()


def check(data_dir: Path = DATA_DIR, splits: Sequence[str] = SPLITS) -> List[str]:
    """Compare data/SHA256SUMS with regenerated data and with the stored files.

    ``splits`` limits the regeneration (the train splits take ~15 s of CPU). Returns a list of
    problems (empty when everything matches)."""
    sums = Path(data_dir) / SUMS_FILE
    if not sums.exists():
        return [f"{sums} is missing; run `python -m gclab.experiments.data --write`"]
    listed = {}
    for line in sums.read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    problems = []
    fresh = _arrays(splits=splits)
    if not set(fresh) <= set(listed):
        problems.append(f"data/SHA256SUMS lacks {sorted(set(fresh) - set(listed))}")
    for rel, b in fresh.items():
        if listed.get(rel) != hashlib.sha256(b).hexdigest():
            problems.append(f"regenerated {rel} does not match data/SHA256SUMS")
    for rel, digest in listed.items():
        p = Path(data_dir) / (rel + ".gz")
        try:
            ok = hashlib.sha256(_read(p)).hexdigest() == digest
        except (OSError, EOFError):  # missing, or not a gzip file
            ok = False
        if not ok:
            problems.append(f"{p} is missing or does not match its checksum")
    return problems


def load(task: str, split: str, data_dir: Path = DATA_DIR) -> Tuple[np.ndarray, np.ndarray]:
    """The stored split (images (n, 1, 16, 64) uint8, labels (n,)), generated if absent."""
    _check_task(task)
    _check_split(split)
    px = Path(data_dir) / task / f"{split}_x.npy.gz"
    py = Path(data_dir) / task / f"{split}_y.npy.gz"
    if px.exists() and py.exists():
        return (np.load(io.BytesIO(_read(px)), allow_pickle=False),
                np.load(io.BytesIO(_read(py)), allow_pickle=False))
    return make_split(task, split)


def to_tensors(images: np.ndarray, labels: np.ndarray):
    """uint8 images -> float32 tensor in [0, 1] (B, 1, H, W); labels -> int64 tensor (B,)."""
    import torch

    return torch.from_numpy(images.astype(np.float32) / 255.0), torch.from_numpy(labels)


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m gclab.experiments.data", description=__doc__.split("\n")[0]
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="regenerate data/ and its checksums")
    g.add_argument("--check", action="store_true", help="check data/ against regenerated data")
    p.add_argument("--dir", type=Path, default=DATA_DIR)
    args = p.parse_args(argv)
    if args.write:
        for path in write(args.dir):
            print(f"wrote {path}")
        return 0
    problems = check(args.dir)
    for msg in problems:
        print(msg, file=sys.stderr)
    print("data OK" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
