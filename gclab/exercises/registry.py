"""The exercise registry: the author-side data classes, the catalogue and the hints.

The lessons' content modules (``gclab/exercises/lessons/nbNN_slug.py``) register their
exercises when they are imported, and they are imported on the first lookup (:func:`get`,
:func:`exercises`, :func:`catalog`, :func:`hint`), not when the engine is: code that only runs
learner calls (the sandbox of ``gclab grade``) never loads a lesson or torch. A content module
that fails to import makes every lookup fail loudly (a silently missing lesson would make its
checks disappear).
"""


import html
import importlib
import numbers
import pkgutil
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from gclab.exercises.verdict import ShownWhenMade

KINDS = ("function", "value", "module")
STATUSES = ("passed", "failed", "not implemented")

# --------------------------------------------------------------------------------------------
# Data classes of the author side
# --------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One input of a check.

    ``kind="function"``: ``args``/``kwargs`` are passed to the learner's function and the
    reference. ``kind="module"``: ``args``/``kwargs`` go to the constructor and ``inputs`` to
    ``forward``. ``label`` names the case in the verdict (e.g. ``"(2,5,7)"``). ``meta`` names
    numbers of the case a wrong factor may be (``{"C_i": 4, "N'": 6}``); the diagnosis names a
    learner's output that is off by one of them (``gclab.exercises.diagnose``).
    ``closed_form``, set on a case only a formula reaches (a derivation exercise's case too large
    to compute), says what cannot be done there ("at C = 1e9 no block can be built"): the
    learner's call on it runs apart (killed at the time limit, its memory capped) and a crash or
    time-out there is named as computing numerically instead of deriving.
    """

    args: Tuple[Any, ...] = ()
    kwargs: Dict[str, Any] = field(default_factory=dict)
    inputs: Tuple[Any, ...] = ()
    label: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)
    closed_form: str = ""


@dataclass
class Property:
    """A named property of the learner's output, checked on every case.

    ``fn(out, *args, **kwargs) -> bool`` for functions (the case's arguments), ``fn(out,
    *inputs)`` for modules, ``fn(value)`` for values. Returning a falsy value or raising fails it.
    """

    name: str
    fn: Callable[..., Any]


@dataclass
class Exercise:
    """One auto-checked exercise (see ``docs/exercises.md``).

    ``rtol`` is the tolerance on the CS231n relative error; ``atol`` an absolute floor below
    which two elements count as equal; ``seeds`` the seeds each ``cases(rng)`` is drawn with;
    ``time_limit`` the seconds allowed per learner call; ``randomize`` (modules only) gives the
    reference module random parameters (normal, std 0.3) before they are copied into the
    learner's, so a zero-initialised block cannot hide a mistake. ``structure`` (modules only):
    checks ``fn(module, *constructor_args) -> bool | (bool, why)`` on the learner's freshly
    built module, before any weights are loaded (its type, its parts, its initialisation).
    """

    id: str
    notebook: str
    title: str
    kind: str = "function"
    reference: Any = None
    cases: Callable[[np.random.Generator], Sequence[Case]] | None = None
    rtol: float = 1e-7
    atol: float = 1e-12
    mistakes: Dict[str, Any] = field(default_factory=dict)
    properties: Sequence[Property] = ()
    hints: Sequence[str] = ()
    time_limit: float = 5.0
    seeds: Sequence[int] = (0, 1)
    randomize: bool = True
    structure: Sequence[Property] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or "." not in self.id:
            raise ValueError(f"Exercise.id must look like '<topic>.<name>', got {self.id!r}")
        if self.kind not in KINDS:
            raise ValueError(f"Exercise {self.id}: kind must be one of {KINDS}, got {self.kind!r}")
        if not callable(self.reference):
            raise TypeError(
                f"Exercise {self.id}: reference must be callable, "
                f"got {type(self.reference).__name__}"
            )
        if self.kind != "value" and self.cases is None:
            raise ValueError(
                f"Exercise {self.id}: kind={self.kind!r} needs cases=lambda rng: [...]"
            )
        if not isinstance(self.mistakes, dict):
            raise TypeError(f"Exercise {self.id}: mistakes must be a dict name -> wrong variant")
        if not (self.rtol >= 0 and self.atol >= 0 and self.time_limit > 0):
            raise ValueError(
                f"Exercise {self.id}: need rtol >= 0, atol >= 0 and time_limit > 0, got "
                f"rtol={self.rtol!r}, atol={self.atol!r}, time_limit={self.time_limit!r}"
            )
        self.properties = tuple(self.properties)
        self.structure = tuple(self.structure)
        self.hints = tuple(self.hints)
        self.seeds = tuple(self.seeds)
        if not self.seeds:
            raise ValueError(f"Exercise {self.id}: seeds must not be empty")


_REGISTRY: Dict[str, Exercise] = {}
_CONTENT = re.compile(r"^nb\d\d_\w+$")
_LESSONS = "gclab.exercises.lessons"
_LOAD = threading.RLock()
_LOADED: List[bool] = []  # [True] once every content module has been imported


def content_modules() -> List[str]:
    """Names of the content modules (``gclab.exercises.lessons.nbNN_slug``), sorted."""
    lessons = importlib.import_module(_LESSONS)
    return sorted(
        f"{_LESSONS}.{m.name}"
        for m in pkgutil.iter_modules(lessons.__path__) if _CONTENT.match(m.name)
    )


def _load_lessons() -> None:
    """Import every content module, once (an import error propagates, on every lookup until
    the module imports)."""
    if _LOADED:
        return
    with _LOAD:
        if _LOADED:
            return
        for name in content_modules():
            importlib.import_module(name)
        _LOADED.append(True)


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to the catalog (re-registering the same id replaces it, so a content
    module can be reloaded). Returns the exercise."""
    if not isinstance(exercise, Exercise):
        raise TypeError(f"register() expects an Exercise, got {type(exercise).__name__}")
    _REGISTRY[exercise.id] = exercise
    return exercise


def unregister(exercise_id: str) -> Exercise | None:
    """Remove the exercise with this id from the catalog (tests register throw-away ones);
    returns it, or None when there was none."""
    return _REGISTRY.pop(exercise_id, None)


def get(exercise_id: str) -> Exercise:
    """The registered :class:`Exercise` with this id (``KeyError`` naming close ids if none)."""
    _load_lessons()
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(exercise_id), list(_REGISTRY), n=3)
        extra = f"; did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no exercise with id {exercise_id!r}{extra}") from None


class CatalogEntry(NamedTuple):
    id: str
    notebook: str
    title: str


class Catalog(list):
    """A list of :class:`CatalogEntry` that displays as a table in Jupyter."""

    def __str__(self) -> str:
        return "\n".join(f"{e.id:<28} {e.notebook:<26} {e.title}" for e in self)

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td><code>{html.escape(e.id)}</code></td><td>{html.escape(e.notebook)}</td>"
            f"<td>{html.escape(e.title)}</td></tr>"
            for e in self
        )
        return (
            '<table class="gclab-catalog"><thead><tr><th>id</th><th>notebook</th><th>title</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )


def exercises(notebook: str | None = None) -> List[Exercise]:
    """Every registered :class:`Exercise` in order of registration; ``notebook`` keeps one
    lesson's."""
    _load_lessons()
    return [e for e in _REGISTRY.values() if notebook is None or e.notebook == notebook]


def catalog(notebook: str | None = None) -> Catalog:
    """Every registered exercise as ``(id, notebook, title)``, sorted by notebook then order of
    registration; ``notebook="00_receptive_fields"`` keeps one lesson's."""
    _load_lessons()
    entries = [
        CatalogEntry(e.id, e.notebook, e.title)
        for e in _REGISTRY.values()
        if notebook is None or e.notebook == notebook
    ]
    order = {k: i for i, k in enumerate(_REGISTRY)}
    entries.sort(key=lambda e: (e.notebook, order[e.id]))
    return Catalog(entries)


class Hint(ShownWhenMade, str):
    """A hint (a ``str``) that renders as a small box in Jupyter, shown when ``hint()`` is
    called, wherever the call stands in the cell (two hints in one cell show both)."""

    def _repr_html_(self) -> str:
        return (
            '<div class="gclab-hint" style="border-left:4px solid #2b6cb0;padding:4px 10px;'
            f'background:#ebf4ff;white-space:pre-wrap">{html.escape(str(self))}</div>'
        )


_HINT_LEVELS = {1: "concept", 2: "shapes", 3: "pseudo-code"}


def hint(exercise_id: str, level: int = 1) -> Hint:
    """Hint ``level`` (1 = concept, 2 = shapes, 3 = pseudo-code) for an exercise."""
    ex = get(exercise_id)
    if isinstance(level, bool) or not isinstance(level, numbers.Integral) or level not in (1, 2, 3):
        raise ValueError(f"hint level must be 1, 2 or 3, got {level!r}")
    if len(ex.hints) < level:
        shown = Hint(f"[{ex.id}] no level-{level} hint for this exercise yet")
    else:
        shown = Hint(f"[{ex.id}] hint {level} ({_HINT_LEVELS[int(level)]}): {ex.hints[level - 1]}")
    shown.show_now()
    return shown
