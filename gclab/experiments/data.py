r"""The tasks' splits: seeded per split, stored under ``data/`` with their checksums.

The tasks themselves (what an image shows, how it is labelled, why the baseline is at chance)
are drawn by :mod:`gclab.experiments.tasks`. Here every split is a pure function of
``(task, split, seed, difficulty)``: train, val and test use separate random streams (and, on
the digit tasks, disjoint handwriting). The copies under ``data/`` are regenerated, and their
checksums checked, by::

    python -m gclab.experiments.data --write   # data/<task>[_d<level>]/*.npy.gz + SHA256SUMS
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

from gclab import paths
from gclab.experiments.tasks import draw

TASKS = ("longrange", "paint", "twokeys", "lookalike", "manykeys", "digitkeys",
         "digitgrid")
#: ``val`` is the validation split that early stopping reads: on the digit tasks it is drawn
#: from handwriting that neither train nor test uses (:func:`gclab.experiments.tasks.digit_pool`)
SPLITS = ("train", "val", "test")
#: number of examples per split stored under data/ (the new tasks: :data:`TASK_SIZES`)
SIZES = {"train": 12800, "val": 1024, "test": 1024}
#: per-task sizes where they differ from SIZES (one run of the new tasks sees 200 x 32 images)
TASK_SIZES = {t: {"train": 6400, "val": 512, "test": 512}
              for t in ("paint", "twokeys", "lookalike", "manykeys", "digitkeys", "digitgrid")}
#: the difficulty levels of each task (the knob; ``None``: the task has one level)
DIFFICULTIES = {"longrange": (None,), "paint": (10, 8), "twokeys": (0, 50),
                "lookalike": (10, 8), "manykeys": (2,), "digitkeys": (6,),
                "digitgrid": (4,)}
#: the seed of each split (train and test never share a generator stream)
SPLIT_SEEDS = {"train": 1, "test": 2, "val": 3}
DATA_DIR = paths.DATA
SUMS_FILE = "SHA256SUMS"


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")


def _check_difficulty(task: str, difficulty):
    levels = DIFFICULTIES[task]
    if difficulty is None:
        difficulty = levels[-1]
    # the other levels one may ask for (a range per task)
    custom = {"paint": (4, 12), "lookalike": (4, 12), "twokeys": (0, 50),
              "manykeys": (1, 4), "digitkeys": (4, 8),
              "digitgrid": (1, 4)}.get(task)
    if difficulty not in levels and not (
            custom and isinstance(difficulty, int) and not isinstance(difficulty, bool)
            and custom[0] <= difficulty <= custom[1]):
        raise ValueError(f"difficulty of {task!r} must be one of {list(levels)}, "
                         f"got {difficulty!r}")
    return difficulty


def task_dir(task: str, difficulty=None) -> str:
    """Folder of one (task, difficulty) under data/: ``longrange``, ``paint_d2``..."""
    return task if difficulty is None else f"{task}_d{difficulty}"


def make_split(
    task: str, split: str, n: int | None = None, seed: int | None = None,
    difficulty: int | None = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Generate one split: images (n, 1, 16, 64) uint8 and labels.

    Labels: (n,) int64 in {0, 1} for ``longrange``; (n, 4, 16) int64 for the dense tasks
    (one label per cell of the 4 x 16 map): {0, 1, IGNORE}, on ``digitkeys`` {0..9, IGNORE}.
    Deterministic: the same ``(task, split, n, seed, difficulty)`` always gives the same arrays.
    ``n`` defaults to the stored size, ``seed`` to :data:`SPLIT_SEEDS` [split],
    ``difficulty`` to the task's hardest level in :data:`DIFFICULTIES`.
    """
    _check_task(task)
    _check_split(split)
    difficulty = _check_difficulty(task, difficulty)
    n = TASK_SIZES.get(task, SIZES)[split] if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    seed = SPLIT_SEEDS[split] if seed is None else seed
    # one stream per (task, seed[, difficulty]): the task name is hashed into the seed sequence
    key = [int(seed), TASKS.index(task)] + ([] if task == "longrange" else [int(difficulty)])
    x, y = draw(task, int(n), np.random.default_rng(key), split, difficulty)
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
        for level in DIFFICULTIES[task]:
            folder = task_dir(task, level)
            for split in splits:
                x, y = make_split(task, split, difficulty=level)
                out[f"{folder}/{split}_x.npy"] = _npy_bytes(x)
                out[f"{folder}/{split}_y.npy"] = _npy_bytes(y)
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


def load(task: str, split: str, data_dir: Path = DATA_DIR, difficulty: int | None = None
         ) -> Tuple[np.ndarray, np.ndarray]:
    """The stored split (images (n, 1, 16, 64) uint8, labels), generated if absent."""
    _check_task(task)
    _check_split(split)
    difficulty = _check_difficulty(task, difficulty)
    folder = Path(data_dir) / task_dir(task, difficulty)
    px, py = folder / f"{split}_x.npy.gz", folder / f"{split}_y.npy.gz"
    if px.exists() and py.exists():
        return (np.load(io.BytesIO(_read(px)), allow_pickle=False),
                np.load(io.BytesIO(_read(py)), allow_pickle=False))
    return make_split(task, split, difficulty=difficulty)


def to_tensors(images: np.ndarray, labels: np.ndarray):
    """uint8 images -> float32 tensor in [0, 1] (B, 1, H, W); labels -> int64 tensor
    ((B,) or, for a dense task, (B, h, w) with :data:`IGNORE` where nothing is scored)."""
    import torch

    return (torch.from_numpy(images.astype(np.float32) / 255.0),
            torch.from_numpy(labels.astype(np.int64)))


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
