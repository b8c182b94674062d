"""Answers handed in that match the published solutions, or each other, token for token.

Grading tests behaviour, not authorship; this module gives the instructor a flag to look at,
never a change of score. A submission's *answer cells* are its code cells that differ from
every cell of the lesson's learner copy (``notebooks/NN_*.ipynb``: what was handed out); two
cells match when their Python tokens are the same with comments, blank lines and indentation
left out (a copy survives renaming nothing, but survives reformatting and deleted comments).
Only cells of at least :data:`MIN_TOKENS` tokens count: a one-line answer can be written the
same way by two people independently.

* **Published solutions**: flagged when at least :data:`MIN_MATCHES` of the solution copy's
  answer cells (``notebooks/solutions/NN_*.ipynb``) and at least :data:`SHARE` of them appear
  in the submission.
* **Within a batch**: two submissions are flagged when they share at least
  :data:`MIN_MATCHES` answer cells and that is at least :data:`SHARE` of the smaller one's.

Independent work from the same learner copy shares the copy's cells (never counted), and
rarely a whole multi-line answer token for token; more than half of them is a copy.
"""

from __future__ import annotations

import hashlib
import io
import json
import tokenize
from pathlib import Path
from typing import Any, Dict, List, Set

from gclab import paths

__all__ = ["MIN_MATCHES", "MIN_TOKENS", "SHARE", "answer_cells", "flag_copies"]

ROOT = paths.ROOT  # a checkout: notebooks/ beside gclab/
MIN_TOKENS = 12
MIN_MATCHES = 2
SHARE = 0.5
_SKIP = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
         tokenize.ENCODING, tokenize.ENDMARKER}


def fingerprint(source: str) -> str | None:
    """A hash of the cell's tokens (comments and layout left out), or None when it has fewer
    than :data:`MIN_TOKENS` tokens or does not tokenize."""
    try:
        tokens = [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline)
                  if t.type not in _SKIP]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    if len(tokens) < MIN_TOKENS:
        return None
    return hashlib.sha256("\x00".join(tokens).encode("utf-8", "replace")).hexdigest()


def _notebook_cells(path: Path) -> List[str]:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                for c in nb["cells"] if c.get("cell_type") == "code"]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _prints(cells: List[str]) -> Set[str]:
    return {f for f in map(fingerprint, cells) if f}


def answer_cells(cells: List[str], handed_out: Set[str]) -> Set[str]:
    """Fingerprints of ``cells`` that are not cells of the learner copy."""
    return _prints(cells) - handed_out


def _published(lesson: str, root: Path) -> tuple:
    handed_out = _prints(_notebook_cells(root / "notebooks" / f"{lesson}.ipynb"))
    solution = _prints(_notebook_cells(root / "notebooks" / "solutions" / f"{lesson}.ipynb"))
    return handed_out, solution - handed_out


def flag_copies(results: List[Any], root: Path = ROOT) -> None:
    """Append to each graded submission's ``flags`` (``Grade.flags``) what its answers match:
    the published solutions, or another submission of the batch. Scores are not changed."""
    cache: Dict[str, tuple] = {}
    answers = []
    for g in results:
        lesson = getattr(g, "lesson", "")
        if lesson not in cache:
            cache[lesson] = _published(lesson, root)
        handed_out, solution = cache[lesson]
        mine = answer_cells(list(getattr(g, "cells", []) or []), handed_out)
        answers.append(mine)
        common = mine & solution
        if solution and len(common) >= MIN_MATCHES and len(common) >= SHARE * len(solution):
            g.flags.append(f"{len(common)} of the {len(solution)} answer cells of the published "
                           "solution copy appear in it token for token (a copy of the "
                           "solutions?)")
    for i, g in enumerate(results):
        same = []
        for j, other in enumerate(results):
            if i == j or getattr(g, "lesson", "") != getattr(other, "lesson", ""):
                continue
            common = answers[i] & answers[j]
            smaller = min(len(answers[i]), len(answers[j]))
            if len(common) >= MIN_MATCHES and len(common) >= SHARE * smaller:
                same.append(f"{other.student} ({len(common)})")
        if same:
            more = f" and {len(same) - 10} more" if len(same) > 10 else ""
            g.flags.append("answer cells token for token the same as those of "
                           + ", ".join(same[:10]) + more)
