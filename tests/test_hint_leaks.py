"""Hints, stubs and the markdown above an exercise teach; they never hand over the answer.

For every exercise with a solution region in a lesson source:

* the reference's key expressions (every call with arguments, every arithmetic or comparison,
  every comprehension of the solution region, parsed with ``ast`` and whitespace-normalised)
  must not appear verbatim in its three hints, in the learner copy's stub cell (its comments
  and docstrings) or in the markdown cell right above the solution cell;
* hints and stub text contain no code-like patterns (``np.``, ``torch.``, assignments,
  method calls such as ``.sum(``, ``**``, ``@``, keyword arguments, slices ...): level 3 is
  pseudo-code in words, not code that can be pasted.

The ladder (``docs/exercises.md``): 1 = the idea, 2 = the shapes and steps, 3 = pseudo-code in
words.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import tokenize
from typing import Dict, List, Tuple

import pytest

from gclab.course import copies as course
from gclab.course import solutions
from gclab.exercises import catalog, get

# code-like patterns a hint or a stub's words must not contain (name, regex)
CODE_PATTERNS: List[Tuple[str, re.Pattern]] = [
    (name, re.compile(rx, re.M))
    for name, rx in [
        ("a library call (np./torch./nn./F./math.)", r"\b(?:np|torch|nn|F|math|gnp|plt)\.\w"),
        ("a method call such as .sum(", r"\.[A-Za-z_]\w*\("),
        ("a power operator **", r"\*\*"),
        ("a matrix product @", r"@"),
        ("an augmented assignment", r"[+\-*/]=(?!=)"),
        ("a keyword argument", r"\b[a-z_]\w*=(?![=\s])"),
        ("a slice or None index", r"\[\s*:|:\s*\]|\bNone\]|\[\s*\.\.\."),
        ("a lambda or def", r"\blambda\b|\bdef\s+\w+\("),
        ("a string argument", r"\w\(\s*['\"]"),
    ]
]

_ASSIGN = re.compile(
    r"^\s*(?:then\s+)?([A-Za-z_]\w*(?:\[[^\]]*\])?(?:\s*,\s*[A-Za-z_]\w*)*)\s*=(?![=>])\s*(.*)$"
)
_WORDS = re.compile(r"\b[a-z]{2,} [a-z]{2,}\b")


def _code_assignment(text: str) -> str | None:
    """An assignment whose right-hand side is code, not words ('r = 1', 'q = row * W + c').

    ``mu = the mean of each sample`` is pseudo-code in words and allowed; ``P = int(C * r)``
    is not."""
    for segment in re.split(r"[\n;]|:\s", text):
        m = _ASSIGN.match(segment)
        if m and not _WORDS.search(m.group(2)):
            return segment.strip()
    return None


# lessons whose stub and markdown text are not checked (hints still are); none today
TEXT_EXEMPT: set = set()

# expressions shorter than this (after removing whitespace) are too generic to count
MIN_EXPR = 7
# ... except short arithmetic in level-3 hints and stubs (`(i + 1) is a multiple of k`)
MIN_SHORT = 3


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _key_expressions(code: str, short: bool = False) -> List[str]:
    """The non-trivial expressions of a solution region, normalised (no whitespace).

    ``short=True`` also keeps short arithmetic and comparisons (``i+1``, ``k-1``): level-3
    hints and stubs must not spell out even those; levels 1-2 may name them as ideas."""
    tree = ast.parse(textwrap.dedent(code))
    found = set()
    for node in ast.walk(tree):
        keep = (
            (isinstance(node, ast.Call) and (node.args or node.keywords))
            or isinstance(node, (ast.BinOp, ast.Compare, ast.BoolOp, ast.ListComp,
                                 ast.GeneratorExp, ast.DictComp, ast.Lambda))
            or (isinstance(node, ast.Subscript) and isinstance(node.slice, (ast.Slice, ast.Tuple)))
        )
        if keep:
            text = _norm(ast.unparse(node))
            arithmetic = isinstance(node, (ast.BinOp, ast.Compare, ast.BoolOp))
            if len(text) >= MIN_EXPR or (short and arithmetic and len(text) >= MIN_SHORT):
                found.add(text)
    return sorted(found)


class _Inline(ast.NodeTransformer):
    """Replace each name assigned once from an expression by that expression, so that
    ``h2 = h // 2; x.reshape(b, c, h2, 2, ...)`` reads ``x.reshape(b, c, h // 2, 2, ...)``."""

    def __init__(self, values):
        self.values = values

    def visit_Name(self, node):
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return self.values[node.id]
        return node


def _inlined(tree: ast.AST) -> ast.AST:
    targets: Dict[str, List[ast.AST]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        if isinstance(target, ast.Name):
            targets.setdefault(target.id, []).append(value)
        elif (isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
              and len(target.elts) == len(value.elts)):  # h2, w2 = h // 2, w // 2
            for t, v in zip(target.elts, value.elts):
                if isinstance(t, ast.Name):
                    targets.setdefault(t.id, []).append(v)
    once = {k: v[0] for k, v in targets.items() if len(v) == 1}
    for _ in range(3):  # names defined from names defined earlier
        once = {k: _Inline({n: e for n, e in once.items() if n != k}).visit(
            ast.parse(ast.unparse(v), mode="eval").body) for k, v in once.items()}
    return _Inline(once).visit(ast.parse(ast.unparse(tree)))


def _step_expressions(code: str) -> List[str]:
    """What level 2 (shapes and steps) and level 3 must not spell out either: the solution's
    expressions with its intermediate names inlined (``2*(h//2)``, ``x.mean(axis=(1,2,3))``),
    its short arithmetic, and the argument lists of its calls (a reshape's target
    ``(b,c,h//2,2,w//2,2)``, the axes ``(1,2,3)``), lower-case and without whitespace."""
    tree = _inlined(ast.parse(textwrap.dedent(code)))
    found = set(_key_expressions(ast.unparse(tree), short=True))
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        groups = [node.args] if len(node.args) >= 3 else []
        groups += [v.elts for v in [*node.args, *(k.value for k in node.keywords)]
                   if isinstance(v, ast.Tuple) and len(v.elts) >= 2]
        for elts in groups:
            # a shape made of names, (b, c, 1, 1), is the exercise's statement; an argument
            # list with arithmetic in it, or axes (1, 2, 3), is a step of the solution
            axes = all(isinstance(e, ast.Constant) and isinstance(e.value, int) for e in elts)
            if not axes and not any(isinstance(e, ast.BinOp) for e in elts):
                continue
            found.add(_norm("(" + ",".join(ast.unparse(e) for e in elts) + ")"))
    return sorted(x.lower() for x in found)


def _words_of(code: str) -> str:
    """The comments and string literals (docstrings, messages) of a cell's code."""
    parts = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type == tokenize.COMMENT:
                parts.append(tok.string.lstrip("#"))
            elif tok.type == tokenize.STRING:
                parts.append(tok.string)
    except (tokenize.TokenError, IndentationError):
        parts.append(code)
    return "\n".join(parts)


def _stub_words(stub_cell: str) -> str:
    """The words of a learner stub cell, without the builder's own stub lines."""
    words = _words_of(stub_cell)
    return "\n".join(
        ln for ln in words.split("\n")
        if "YOUR CODE HERE" not in ln and not ln.strip().startswith(("'exercise ", '"exercise '))
    )


def _exercise_texts() -> Dict[str, Dict[str, object]]:
    """id -> {regions: [code], stub: words, markdown: text of the markdown cell above}."""
    out: Dict[str, Dict[str, object]] = {}
    for lesson in course.lessons():
        if lesson.name in TEXT_EXEMPT:
            continue
        text = lesson.source.read_text(encoding="utf-8")
        nb = course.read_source(text)
        codes = [c.source for c in nb.cells if c.cell_type == "code"]
        k = -1
        last_md = ""
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                last_md = cell.source
                continue
            if cell.cell_type != "code":
                continue
            k += 1
            lines = cell.source.split("\n")
            regions = solutions.regions(lines, lesson.name)
            if not regions:
                continue
            stub = solutions.stub_regions(codes, k, lesson.name)
            for begin, end in regions:
                ex_id, _ = solutions.exercise_for(codes, k, begin, end, lesson.name)
                entry = out.setdefault(ex_id, {"regions": [], "stub": "", "markdown": ""})
                entry["regions"].append("\n".join(lines[begin + 1:end]))
                entry["stub"] += "\n" + _stub_words(stub)
                entry["markdown"] += "\n" + last_md
    return out


TEXTS = _exercise_texts()
IDS = [e.id for e in catalog()]


def test_every_exercise_has_a_solution_region():
    missing = [i for i in IDS if i not in TEXTS and get(i).notebook not in TEXT_EXEMPT]
    assert not missing, f"no solution region found in the lesson sources for {missing}"


def _leaks(ex_id: str) -> List[str]:
    problems = []
    entry = TEXTS.get(ex_id)
    hints = list(get(ex_id).hints)
    if entry is not None:
        exprs = [x for code in entry["regions"] for x in _key_expressions(code)]
        strict = [x for code in entry["regions"] for x in _key_expressions(code, short=True)]
        places = {f"hint {i + 1}": h for i, h in enumerate(hints)}
        places["the stub's comments/docstring"] = entry["stub"]
        places["the markdown above the exercise"] = entry["markdown"]
        steps = [x for code in entry["regions"] for x in _step_expressions(code)]
        for where in ("hint 2", "hint 3", "the stub's comments/docstring"):
            flat = _norm(places.get(where, "")).lower()
            for expr in steps:
                if expr in flat and expr not in strict and expr not in exprs:
                    problems.append(f"{where} spells out a step of the solution {expr!r} "
                                    "(level 2 gives shapes and steps in words, not the "
                                    "expression)")
        for where, text in places.items():
            flat = _norm(text)
            short = where in ("hint 3", "the stub's comments/docstring")
            for expr in strict if short else exprs:
                if expr in flat:
                    problems.append(f"{where} contains the solution's expression {expr!r}")
    for i, h in enumerate(hints):
        bad = _code_assignment(h)
        if bad:
            problems.append(f"hint {i + 1} assigns code: {bad!r}")
        for name, rx in CODE_PATTERNS:
            m = rx.search(h)
            if m:
                near = h[max(0, m.start() - 25):m.end() + 25]
                problems.append(f"hint {i + 1} looks like code ({name}): ...{near!r}...")
    if entry is not None:
        bad = _code_assignment(entry["stub"])
        if bad:
            problems.append(f"the stub's words assign code: {bad!r}")
        for name, rx in CODE_PATTERNS:
            m = rx.search(entry["stub"])
            if m:
                near = entry["stub"][max(0, m.start() - 25):m.end() + 25]
                problems.append(f"the stub's words look like code ({name}): ...{near!r}...")
    return problems


@pytest.mark.parametrize("exercise_id", IDS)
def test_hints_and_stubs_do_not_leak_the_solution(exercise_id):
    problems = _leaks(exercise_id)
    assert not problems, f"{exercise_id}:\n  " + "\n  ".join(problems)


def test_the_detector_catches_a_pasted_solution():
    code = "    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))"
    exprs = _key_expressions(code)
    assert "np.abs(a-b)" in exprs
    assert any(e in _norm("num = np.abs(a - b)") for e in exprs)
    assert any(rx.search("inner = sum of dout * p; g.sum(axis=-1)") for _, rx in CODE_PATTERNS)
    assert _code_assignment("r = 1; jump = 1") and _code_assignment("x: q = row * W + col")
    assert not _code_assignment("mu = the mean of each sample over the last three axes")
    assert not any(rx.search("the mean over the last axis, divided by its length")
                   for _, rx in CODE_PATTERNS)


OLD_LEAKS = [  # (solution region, a hint or stub text that once gave it away)
    ("    return [i for i in range(n_units) if (i + 1) % k == 0]",
     "keep index i when (i + 1) is a multiple of k\nfor i in 0 .. n_units - 1"),
    ("    return math.ceil((size - 1) / (kernel - 1))",
     "L = ceil((size - 1) / (kernel - 1))   (math.ceil)"),
    ("    return p * (dout - (dout * p).sum(axis=-1, keepdims=True))",
     "inner = sum of dout * p over the last axis, keepdims\nreturn p * (dout - inner)"),
    ("    return dout @ b.transpose(0, 2, 1), a.transpose(0, 2, 1) @ dout",
     "da = dout @ (b with its last two axes swapped)"),
]


@pytest.mark.parametrize("code,text", OLD_LEAKS)
def test_the_detector_flags_the_old_leaks(code, text):
    exprs = _key_expressions(code, short=True)
    pasted = any(e in _norm(text) for e in exprs)
    looks_like_code = _code_assignment(text) or any(rx.search(text) for _, rx in CODE_PATTERNS)
    assert pasted or looks_like_code


OLD_STEP_LEAKS = [  # (solution region, a level-2 hint that once gave it away)
    ("    b, c, h, w = x.shape\n    h2, w2 = h // 2, w // 2\n"
     "    return x[:, :, : 2 * h2, : 2 * w2].reshape(b, c, h2, 2, w2, 2).max(axis=(3, 5))",
     "Crop x to an even size (2 * (H // 2), 2 * (W // 2)), then view it as (B, C, H//2, 2, "
     "W//2, 2): axes 3 and 5 index the position inside a window."),
    ("    mu = t.mean(axis=(1, 2, 3), keepdims=True)\n"
     "    var = t.var(axis=(1, 2, 3), keepdims=True)\n"
     "    return gamma * (t - mu) / np.sqrt(var + 1e-5) + beta",
     "t (B, P, 1, 1) -> mean and variance over axes (1, 2, 3), keeping them -> (B, 1, 1, 1)"),
]


@pytest.mark.parametrize("code,text", OLD_STEP_LEAKS)
def test_level_two_may_not_spell_out_a_step(code, text):
    """The intermediate names inlined and the call arguments compared, the old level-2 hints
    are caught although no expression of the solution appears in them verbatim."""
    assert not any(e in _norm(text) for e in _key_expressions(code))
    assert any(e in _norm(text).lower() for e in _step_expressions(code))


def test_a_shape_made_of_names_is_not_a_step():
    code = "    return x.reshape(b, c, 1, 1)"
    assert not any(e in _norm("shape (B, C, 1, 1)").lower() for e in _step_expressions(code))


# a layer given as its channels, "C -> P", "W_v maps C to C", "from C to 1"
_LAYER = re.compile(r"\b(?:C|P|1|C_i|Ci|C/\d+|C/r)\s*(?:->|to)\s*(?:C|P|1|C_i|Ci|C/\d+|C/r)\b"
                    r"(?!\s*\w*\s*(?:times|positions))")
DERIVATIONS = [e.id for e in catalog() if get(e.id).title.lower().startswith("derive")]


@pytest.mark.parametrize("exercise_id", DERIVATIONS)
def test_a_derivation_s_first_two_hints_do_not_list_its_layers(exercise_id):
    """Where counting is the derivation (snl.param_count, se.param_count), the layers with
    their channels are what the learner works out: levels 1 and 2 may name the steps, not list
    two or more layers as "C -> P" (level 3 walks through them)."""
    for level, text in enumerate(get(exercise_id).hints[:2], start=1):
        layers = _LAYER.findall(text)
        assert len(layers) < 2, f"{exercise_id}: hint {level} lists the layers {layers}"


def test_the_layer_list_detector_catches_the_old_hints():
    old = ("Input: C (an int); output: one int. The block has two convs, W_k (C -> 1) and W_v "
           "(C -> C), both with a bias; nothing else (the softmax has no parameters).")
    assert len(_LAYER.findall(old)) == 2
    assert len(_LAYER.findall("The two convs map C -> P and P -> C, each with a bias")) == 2
    assert not _LAYER.findall("p (..., N) -> J (..., N, N), an outer product")
