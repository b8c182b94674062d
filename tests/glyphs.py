"""Reading the tasks' glyphs back from their pixels (the independent truth of the label tests)."""

import numpy as np


def marker_of(cell: np.ndarray) -> int:
    """The key column a marker glyph names, from its ink (tasks.MARKERS): one row of ink is
    the horizontal bar (0), one column the vertical bar (1), then the two diagonals (2, 3)."""
    rows, cols = np.nonzero(cell)
    if len(set(rows)) == 1:
        return 0
    if len(set(cols)) == 1:
        return 1
    return 2 if np.array_equal(np.argsort(rows), np.argsort(cols)) else 3
