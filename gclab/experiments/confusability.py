"""How hard is each pair of scikit-learn's handwritten digits to tell apart?

The ``lookalike`` task's key classes come from this table, computed from the data alone: an
RBF SVM (``SVC(C=10)``) trained on the 8 x 8 images of the train half of ``load_digits``
(even indices, the split of :func:`gclab.experiments.tasks.digit_pool`) and scored on the
test half, for every pair of classes; then, for the chosen pair, the same with the tasks' 3 %
salt noise at the key sides of the task. Deterministic (seeded); about 10 s::

    python -m gclab.experiments.confusability
"""

from __future__ import annotations

import itertools
import sys
from typing import Dict, List, Sequence, Tuple

import numpy as np

from gclab.experiments.tasks import LOOKALIKE_CLASSES, digit_pool


def _svm_accuracy(train: Dict[int, np.ndarray], test: Dict[int, np.ndarray],
                  pair: Tuple[int, int], salt: float = 0.0, n: Tuple[int, int] = (4000, 2000),
                  seed: int = 0) -> float:
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)

    def sample(pool: Dict[int, np.ndarray], count: int):
        if salt == 0.0:  # every image once
            xs = np.concatenate([pool[c] for c in pair])
            ys = np.concatenate([np.full(len(pool[c]), k) for k, c in enumerate(pair)])
            return xs.reshape(len(xs), -1), ys
        ys = np.arange(count) % 2
        xs = []
        for k in ys:
            imgs = pool[pair[k]]
            im = imgs[int(rng.integers(0, len(imgs)))].copy()
            s = rng.random(im.shape) < salt
            im[s] = np.maximum(im[s], rng.uniform(0.3, 1.0, size=int(s.sum())))
            xs.append(im.ravel())
        return np.array(xs), ys

    xa, ya = sample(train, n[0])
    xb, yb = sample(test, n[1])
    return float(SVC(C=10).fit(xa, ya).score(xb, yb))


def pair_table(side: int = 8) -> List[Tuple[float, int, int]]:
    """(held-out accuracy, a, b) for every pair of classes, hardest first."""
    train, test = digit_pool("train", side), digit_pool("test", side)
    return sorted((_svm_accuracy(train, test, (a, b)), a, b)
                  for a, b in itertools.combinations(range(10), 2))


def key_reading(pair: Tuple[int, int] = LOOKALIKE_CLASSES, sides: Sequence[int] = (10, 8, 6),
                salt: float = 0.03) -> Dict[int, float]:
    """Held-out accuracy of the SVM on the key alone (its exact position given), salt added."""
    return {s: _svm_accuracy(digit_pool("train", s), digit_pool("test", s), pair, salt)
            for s in sides}


def main() -> int:
    table = pair_table()
    print("hardest pairs at 8 x 8 (RBF SVM, held-out accuracy):")
    for acc, a, b in table[:6]:
        print(f"  {a} vs {b}: {acc:.3f}")
    easy = {(a, b): acc for acc, a, b in table}
    print(f"  (paint's key, 0 vs 1: {easy[(0, 1)]:.3f})")
    print(f"key {LOOKALIKE_CLASSES[0]} vs {LOOKALIKE_CLASSES[1]} with 3 % salt, by side:")
    for s, acc in key_reading().items():
        print(f"  side {s}: {acc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
