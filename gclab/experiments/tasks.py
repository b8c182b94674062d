r"""How each task draws its images and labels: small tasks whose labels need information from
far away.

Every task draws on a wide 16 x 64 canvas (one channel, uint8):

``longrange``
    Two 10 x 10 glyphs (a 5x5 "plus" or "ring" drawn at twice the size), one in columns
    [0, 12), one in columns [52, 64), plus clutter: salt noise, short random strokes and a small
    distractor glyph (any of :data:`GLYPHS`) in the middle. Label 1 when the two *end* glyphs
    are the same glyph. (Saturates: every block that learns it gets 100 %.)
``paint`` (dense; real handwritten digits; difficulty = the key's side in pixels)
    A *key*: a handwritten digit (class 0 or 1, :data:`DIGIT_CLASSES`, from scikit-learn's
    bundled ``load_digits``, no download) of side ``difficulty`` (10 or 8 px) somewhere in
    columns [0, 12); two distractor digits of the same classes (10 x 10) in columns [12, 32);
    and in the right half (columns [32, 64), map cells (r, c) with c >= 8 of the 4 x 16 map)
    one 4 x 4 cell each, blank (probability :data:`PAINT_BLANK`) or holding a 3-pixel bar,
    horizontal or vertical. Label of every right-half cell: ``key XOR (bar is vertical)``
    (a blank cell's label is the key itself); the left-half cells are not scored
    (:data:`IGNORE`). Train and test use disjoint digit images.
``lookalike`` (dense; real handwritten digits that look alike; difficulty = key side)
    As ``paint`` with key (and distractor) digits of classes 1 and 8
    (:data:`LOOKALIKE_CLASSES`), the pair of scikit-learn's digits that is hardest to tell
    apart, so even a reader shown only the key errs on some held-out handwriting.
``twokeys`` (dense; query-dependent; difficulty = % of images whose two keys disagree)
    As ``paint``, but with two 8 x 8 keys, one in the top half of the rows and one in the
    bottom half (columns [0, 12)); a scored cell in the top two map rows needs the top key,
    one in the bottom two the bottom key. At difficulty 0 the keys always agree (one bit
    suffices), at 50 they are independent (each row must read its own key): a model that
    carries a single bit is capped at ``1 - difficulty / 200``.
``manykeys`` (dense; many independent bits; difficulty = markers, 4 x markers key bits)
    Map cells (r, m), m < markers, hold a key glyph each (ring = 0, plus = 1); every cell of
    map columns [4, 16) a marker glyph naming one of the key columns; a scored cell (map
    column >= :data:`MANYKEYS_FIRST_CELL`) is labelled ``key[r, marker]``.

``digitkeys`` (dense; four handwritten keys, ten classes; difficulty = the keys' side in px)
    Four handwritten digits of any class (0-9) in the 8 x 8 slots of columns [0, 16), two in the
    top half of the rows and two in the bottom half, each ``difficulty`` px wide and centred in
    its slot; every cell of map columns [4, 16) a marker (horizontal bar: the left key column,
    vertical bar: the right one). A scored cell (map column >= :data:`DIGITKEYS_FIRST_CELL`) in
    map row r is labelled with the **class** of the key in its own half (r // 2) and the column
    its marker names: ten classes, chance about 0.1. The scored cells together need all four
    digits (4 log2 10 = 13.3 bits), each cell one of them, read from held-out handwriting.
``digitgrid`` (dense; sixteen handwritten keys, ten classes; difficulty = key columns)
    Map cells (r, k), k < columns, each hold a handwritten digit of any class, 4 x 4 px (it
    fills the cell); every cell of map columns [4, 16) a marker glyph naming one of the key
    columns (:data:`MARKERS`); a scored cell (map column >= :data:`DIGITGRID_FIRST_CELL`) is
    labelled with the class of ``key[r, marker]``. At 4 columns the scored cells together need
    sixteen digits (53 bits), each cell one of them: a per-query map reads one, a single
    context must carry all sixteen.

Why the baseline must fail (every task). The backbone of :mod:`gclab.experiments.models` has a
theoretical receptive field of 41 pixels. ``longrange``: a feature that sees a pixel of both end
objects must span 42 columns, and "same or not" is an XOR that a sum of per-position terms
(global average pooling + linear) cannot decide; under cross-entropy the best such sum is the
constant 1/2. ``paint``: a scored cell's feature (map column >= 8, centre pixel >= 33.5) sees
pixels >= 13 only, the key lies in columns [0, 12): no scored cell sees the key, its label is
independent of everything it sees (the key bit is a fair coin), so the plain CNN is exactly at
chance, and a block that carries the key across the map is what can lift it. ``manykeys``,
``digitkeys`` and ``digitgrid``: a scored cell (map column >= 9) sees pixels >= 17, the keys
lie in columns [0, 16); the best the plain CNN can do is the label's most frequent value.

:func:`draw` is the one entry point; :mod:`gclab.experiments.data` seeds it per split and
stores the results.
"""

from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

HEIGHT, WIDTH = 16, 64
#: side of the two keys of the ``twokeys`` task (the digits' native 8 x 8)
TWOKEYS_SIDE = 8
#: label value of positions that a dense task does not score (torch's ignore_index)
IGNORE = -100
#: digit classes of the paint task's key (the real handwritten digits of scikit-learn):
#: key 0 is a digit of the first class, key 1 of the second
DIGIT_CLASSES = (0, 1)
#: the key classes of the ``lookalike`` task: the pair of sklearn's digits that an RBF SVM on
#: the 8 x 8 images separates worst (docs/experiments.md): 1 and 8
LOOKALIKE_CLASSES = (1, 8)
#: side of the two end objects (10 x 10) and the columns they may occupy
OBJECT = 10
LEFT_COLUMNS, RIGHT_COLUMNS = (0, 12), (WIDTH - 12, WIDTH)
#: first scored map column of the paint task (map columns 8..15 = pixel columns 32..63)
PAINT_FIRST_CELL = 8
#: digits of any class drawn in columns [12, 32) of the paint task (seen, uninformative)
PAINT_DISTRACTORS = 2
#: probability that a scored cell of the paint task is blank (its label is then the key)
PAINT_BLANK = 0.5


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


def digit_pool(split: str, side: int = OBJECT) -> Dict[int, np.ndarray]:
    """sklearn's digits scaled to [0, 1] and resized to side x side (bilinear), split by index:
    test the odd images, val the even ones with index % 10 == 0, train the other even ones
    (three disjoint sets of handwriting)."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(np.stack([zoom(im / 16.0, side / 8, order=1) for im in d.images]), 0, 1)
    idx = np.arange(len(images))
    keep = {"train": (idx % 2 == 0) & (idx % 10 != 0), "val": idx % 10 == 0,
            "test": idx % 2 == 1}[split]
    return {c: images[keep & (d.target == c)] for c in range(10)}


def _paint(n: int, rng: np.random.Generator, split: str, side: int,
           classes: Tuple[int, int] = DIGIT_CLASSES) -> Tuple[np.ndarray, np.ndarray]:
    """The dense task: a handwritten key digit at the left end, a bar in every right-half cell.

    Label of map cell (r, c), c >= 8 (pixel columns [32, 64)): ``bar_is_vertical XOR key``,
    key = index of the left-end digit's class in ``classes``; cells c < 8 are not
    scored (:data:`IGNORE`). ``distractors`` digits of the same two classes sit in columns
    [12, 32), inside the right cells' receptive field but uninformative.
    """
    pool = digit_pool(split)
    small = digit_pool(split, side)
    key = _balanced_bits(rng, n)
    x, y = _blank_dense(n)
    for i in range(n):
        canvas = x[i]
        _paint_background(canvas, rng, pool, classes)
        _paste(canvas, _pick(rng, small, classes, int(key[i])),
               int(rng.integers(0, HEIGHT - side + 1)), int(rng.integers(0, 12 - side + 1)))
        y[i, :, PAINT_FIRST_CELL:] = _paint_bars(canvas, rng) ^ key[i]
    return x, y


def _balanced_bits(rng: np.random.Generator, n: int) -> np.ndarray:
    """n bits, exactly n // 2 of them 1, in a random order."""
    bits = np.zeros(n, dtype=np.int64)
    bits[: n // 2] = 1
    rng.shuffle(bits)
    return bits


def _blank_dense(n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Empty canvases (n, 16, 64) and dense labels (n, 4, 16), every cell IGNORE."""
    return (np.zeros((n, HEIGHT, WIDTH), dtype=np.float64),
            np.full((n, HEIGHT // 4, WIDTH // 4), IGNORE, dtype=np.int64))


def _pick(rng: np.random.Generator, pool: Dict[int, np.ndarray], classes: Tuple[int, int],
          which: int) -> np.ndarray:
    """A random image of class ``classes[which]`` from ``pool``."""
    imgs = pool[classes[which]]
    return imgs[int(rng.integers(0, len(imgs)))]


def _paint_background(canvas: np.ndarray, rng: np.random.Generator,
                      pool: Dict[int, np.ndarray], classes: Tuple[int, int]) -> None:
    """Salt noise and the PAINT_DISTRACTORS 10 x 10 digits of ``classes`` in columns [12, 32)."""
    _salt_and_strokes(canvas, rng, strokes=0)
    for _ in range(PAINT_DISTRACTORS):
        _paste(canvas, _pick(rng, pool, classes, int(rng.integers(0, 2))),
               int(rng.integers(0, HEIGHT - OBJECT + 1)), int(rng.integers(12, 23)))


def _paint_bars(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw the right half's cells in place: each blank (p = PAINT_BLANK) or one 3-pixel bar,
    horizontal or vertical; returns the local bit of each cell, (4, 8) int64: 1 = vertical."""
    # 0 blank, 1 horizontal bar, 2 vertical bar; the local bit is "vertical"
    marks = rng.choice(3, size=(HEIGHT // 4, PAINT_FIRST_CELL),
                       p=[PAINT_BLANK, (1 - PAINT_BLANK) / 2, (1 - PAINT_BLANK) / 2])
    for r in range(HEIGHT // 4):
        for c in range(PAINT_FIRST_CELL):
            a, b = int(rng.integers(0, 4)), int(rng.integers(0, 2))
            r0, c0 = 4 * r, 4 * (PAINT_FIRST_CELL + c)
            v = rng.uniform(0.7, 1.0)
            if marks[r, c] == 2:  # vertical bar of 3 pixels
                canvas[r0 + b : r0 + b + 3, c0 + a] = v
            elif marks[r, c] == 1:
                canvas[r0 + a, c0 + b : c0 + b + 3] = v
    return (marks == 2).astype(np.int64)


def _twokeys(n: int, rng: np.random.Generator, split: str, disagree: int
             ) -> Tuple[np.ndarray, np.ndarray]:
    """The query-dependent dense task: two key digits, one per half of the map's rows.

    A top key (pixel rows [0, 8)) and a bottom key (rows [8, 16)), handwritten digits of
    :data:`DIGIT_CLASSES` at their native 8 x 8, in columns [0, 12); the bottom key differs
    from the top one with probability ``disagree`` / 100 (the difficulty). Two distractor
    digits and the right half's bars as in :func:`_paint`. Label of a scored cell in map row
    r: ``bar_is_vertical XOR top key`` for r in {0, 1}, ``XOR bottom key`` for r in {2, 3}.
    """
    pool = digit_pool(split)
    keys_pool = digit_pool(split, TWOKEYS_SIDE)
    top = _balanced_bits(rng, n)
    bottom = top ^ (rng.random(n) < disagree / 100).astype(np.int64)
    x, y = _blank_dense(n)
    half = HEIGHT // 2
    for i in range(n):
        canvas = x[i]
        _paint_background(canvas, rng, pool, DIGIT_CLASSES)
        for key, r0 in ((top[i], 0), (bottom[i], half)):
            _paste(canvas, _pick(rng, keys_pool, DIGIT_CLASSES, int(key)), r0,
                   int(rng.integers(0, 12 - TWOKEYS_SIDE + 1)))
        bars = _paint_bars(canvas, rng)
        rows = HEIGHT // 8  # map rows per key
        y[i, :rows, PAINT_FIRST_CELL:] = bars[:rows] ^ top[i]
        y[i, rows:, PAINT_FIRST_CELL:] = bars[rows:] ^ bottom[i]
    return x, y


#: first scored map column of ``manykeys`` (pixels >= 36; the receptive field reaches >= 17)
MANYKEYS_FIRST_CELL = 9
#: the 3 x 3 key glyphs of ``manykeys`` (bit 0: a ring, bit 1: a plus) and its cell markers
KEY_GLYPHS = (np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], float),
              np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], float))
MARKERS = (np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], float),   # horizontal bar
           np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], float),   # vertical bar
           np.eye(3), np.eye(3)[::-1].copy())                    # the two diagonals


def _glyph_cell(canvas: np.ndarray, rng: np.random.Generator, glyph: np.ndarray, r: int,
                c: int) -> None:
    """Draw a 3 x 3 glyph inside map cell (r, c) (4 x 4 pixels) at a random offset."""
    a, b = int(rng.integers(0, 2)), int(rng.integers(0, 2))
    _paste(canvas, glyph * rng.uniform(0.7, 1.0), 4 * r + a, 4 * c + b)


def _manykeys(n: int, rng: np.random.Generator, markers: int) -> Tuple[np.ndarray, np.ndarray]:
    """The many-bits dense task: 4 x ``markers`` independent key bits at the left end.

    Map cells (r, m), m < ``markers`` (pixel columns [0, 4 * markers)), each hold a key glyph
    (ring = 0, plus = 1, fair coins). Every cell of map columns [4, 16) holds one of
    ``markers`` marker glyphs (bars in 2 or 4 orientations), chosen at random; salt noise
    everywhere. Label of a scored cell (r, c), c >= :data:`MANYKEYS_FIRST_CELL`: the key bit
    in the cell's own map row r and the column given by its marker, ``key[r, marker]``. So
    the scored cells together need all 4 x ``markers`` bits, each cell one of them.
    """
    def key(canvas: np.ndarray, value: int, r: int, k: int) -> None:
        _glyph_cell(canvas, rng, KEY_GLYPHS[value], r, k)

    return _key_grid(n, rng, markers, 2, MANYKEYS_FIRST_CELL, key)


def _key_grid(n: int, rng: np.random.Generator, columns: int, classes: int, first: int,
              draw_key) -> Tuple[np.ndarray, np.ndarray]:
    """The layout ``manykeys`` and ``digitgrid`` share: a key of ``classes`` values in each map
    cell (r, k), k < ``columns`` (drawn by ``draw_key(canvas, value, r, k)``), a marker glyph
    naming a key column in every cell of map columns [4, 16), salt noise; a scored cell
    (r, c), c >= ``first``, is labelled ``keys[r, marker[r, c]]``."""
    rows, cols = HEIGHT // 4, WIDTH // 4
    x, y = _blank_dense(n)
    keys = rng.integers(0, classes, size=(n, rows, columns))
    marks = rng.integers(0, columns, size=(n, rows, cols))
    for i in range(n):
        canvas = x[i]
        _salt_and_strokes(canvas, rng, strokes=0)
        for r in range(rows):
            for k in range(columns):
                draw_key(canvas, int(keys[i, r, k]), r, k)
            for c in range(4, cols):
                _glyph_cell(canvas, rng, MARKERS[marks[i, r, c]], r, c)
        y[i, :, first:] = np.take_along_axis(keys[i], marks[i, :, first:], axis=1)
    return x, y


#: first scored map column of ``digitkeys`` (pixels >= 36; the receptive field reaches >= 17)
DIGITKEYS_FIRST_CELL = 9
#: side of a ``digitkeys`` key slot: 2 x 2 slots of 8 x 8 pixels fill columns [0, 16)
DIGITKEYS_SLOT = 8


def _digitkeys(n: int, rng: np.random.Generator, split: str, side: int
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The many-digits dense task: four handwritten key digits, one label class per digit.

    Key (h, k), h = half of the rows, k = key column, is a digit of a uniformly drawn class
    (0-9) from ``split``'s handwriting, ``side`` x ``side`` px, centred in the slot at pixel
    rows [8h, 8h + 8) and columns [8k, 8k + 8). Every cell of map columns [4, 16) holds a
    marker: a horizontal bar names key column 0, a vertical bar key column 1. Label of a
    scored cell (r, c), c >= :data:`DIGITKEYS_FIRST_CELL`: ``keys[r // 2, marker[r, c]]``.
    """
    pool = digit_pool(split, side)
    rows, cols, halves = HEIGHT // 4, WIDTH // 4, HEIGHT // DIGITKEYS_SLOT
    pad = (DIGITKEYS_SLOT - side) // 2
    x, y = _blank_dense(n)
    keys = rng.integers(0, 10, size=(n, halves, 2))
    marks = rng.integers(0, 2, size=(n, rows, cols))
    for i in range(n):
        canvas = x[i]
        _salt_and_strokes(canvas, rng, strokes=0)
        for h in range(halves):
            for k in range(2):
                imgs = pool[int(keys[i, h, k])]
                _paste(canvas, imgs[int(rng.integers(0, len(imgs)))],
                       DIGITKEYS_SLOT * h + pad, DIGITKEYS_SLOT * k + pad)
        for r in range(rows):
            for c in range(4, cols):
                _glyph_cell(canvas, rng, MARKERS[marks[i, r, c]], r, c)
        half = np.arange(rows)[:, None] * halves // rows
        y[i, :, DIGITKEYS_FIRST_CELL:] = keys[i][half, marks[i, :, DIGITKEYS_FIRST_CELL:]]
    return x, y


#: first scored map column of ``digitgrid`` (pixels >= 36; the receptive field reaches >= 17)
DIGITGRID_FIRST_CELL = 9
#: side of a ``digitgrid`` key: a handwritten digit filling one 4 x 4 map cell
DIGITGRID_SIDE = 4


def _digitgrid(n: int, rng: np.random.Generator, split: str, columns: int
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The many-digits grid: 4 x ``columns`` handwritten 4-px keys, one label class per key.

    Map cell (r, k), k < ``columns`` (pixel columns [0, 4 * columns)), holds a handwritten
    digit of a uniformly drawn class (0-9) from ``split``'s handwriting, resized to 4 x 4 px so
    that it fills the cell. Every cell of map columns [4, 16) holds one of ``columns`` marker
    glyphs (:data:`MARKERS`), naming a key column; salt noise everywhere. Label of a scored
    cell (r, c), c >= :data:`DIGITGRID_FIRST_CELL`: the class of ``keys[r, marker[r, c]]``.
    The scored cells together need all 4 x ``columns`` digits (53 bits at 4 columns).
    """
    pool = digit_pool(split, DIGITGRID_SIDE)

    def key(canvas: np.ndarray, value: int, r: int, k: int) -> None:
        _paste(canvas, pool[value][int(rng.integers(0, len(pool[value])))], 4 * r, 4 * k)

    return _key_grid(n, rng, columns, 10, DIGITGRID_FIRST_CELL, key)


def draw(task: str, n: int, rng: np.random.Generator, split: str, difficulty: int | None
         ) -> Tuple[np.ndarray, np.ndarray]:
    """n images (n, 16, 64) float in [0, 1] and their labels of ``task`` at ``difficulty``,
    drawn from ``rng``; ``split`` picks the handwriting of the digit tasks
    (:func:`digit_pool`)."""
    if task == "longrange":
        return _longrange(n, rng)
    if task == "twokeys":
        return _twokeys(n, rng, split, int(difficulty))
    if task == "manykeys":
        return _manykeys(n, rng, int(difficulty))
    if task == "digitkeys":
        return _digitkeys(n, rng, split, int(difficulty))
    if task == "digitgrid":
        return _digitgrid(n, rng, split, int(difficulty))
    if task in ("paint", "lookalike"):
        return _paint(n, rng, split, int(difficulty),
                      DIGIT_CLASSES if task == "paint" else LOOKALIKE_CLASSES)
    raise ValueError(f"no generator for task {task!r}")
