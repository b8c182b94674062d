"""A check's name and its evidence agree: case labels describe their cases, and property
names state what holds on every case they may cite."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
from _case_tools import WITH_CASES, all_cases, arrays, bound_arguments  # tests/ on sys.path

from gclab.exercises import catalog, get

# --------------------------------------------------------------------------- names vs evidence
# A check's name and the evidence it reports must agree: the verdict says "<property>: fails on
# <case label>", so a property named for a subset of cases ("finite for logits of 1e4") must not
# cite a case outside it ("(2,6,3), logits ~1e3"), and a label must describe its case. Checked
# where the case carries the evidence: shapes and sizes in labels against the arrays and
# arguments, "logits ~1eK" against the logits the reference's softmax or attention pooling
# actually receives.
_TUPLE = re.compile(r"\((\d+(?:\s*,\s*\d+)+)\)")
_GRID = re.compile(r"\b(\d+)x(\d+)\b")
_NAMED = re.compile(r"(?<![\w'])(N'|N|Ci|C_i|C|P|B|H|W|ratio|r|s|k|n_units|use_scale|size|"
                    r"depth|kernel|h)(?:\s*=\s*|\s+)(True|False|\d+(?:\.\d+)?)(?![\w.])")
_LOGITS = re.compile(r"logits ~1e(\d+)")


def _evidence(ex, case):
    """{name: value} a label may state about ``case``, from its arguments, meta and arrays."""
    ev = {k: v for k, v in bound_arguments(ex, case).items()
          if isinstance(k, str) and isinstance(v, (bool, int, float))}
    aliases = {"channels": "C", "in_channels": "C", "reduction": "r", "height": "H",
               "width": "W"}
    ev.update({aliases[k]: v for k, v in list(ev.items()) if k in aliases})
    ev.update({("Ci" if k == "C_i" else k): v for k, v in case.meta.items()})
    arrays = [a for a in (*case.inputs, *case.args) if hasattr(a, "shape")]
    if arrays and len(arrays[0].shape) >= 2:
        ev.setdefault("B", arrays[0].shape[0])
    maps = [a for a in arrays if len(a.shape) == 4]
    if maps:
        ev.setdefault("C", maps[0].shape[1])
        ev.setdefault("H", maps[0].shape[2])
        ev.setdefault("W", maps[0].shape[3])
    if ex.kind == "module":
        ev["C"], ev["ratio"] = case.args[0], case.args[1]
    return ev


def _stated_tuples(ex, case):
    """The shapes of the case's arrays (also nested in dicts) and the tuples among its
    arguments (a list of (channels, units), consecutive ints such as a query's (row, col))."""
    found = {s for _, s in arrays((*case.inputs, *case.args, case.kwargs), "x")}
    found |= {s[-2:] for s in list(found) if len(s) >= 2}
    flat = [a for a in case.args if isinstance(a, int) and not isinstance(a, bool)]
    found |= {tuple(flat[i:i + n]) for n in (2, 3, 4) for i in range(len(flat) - n + 1)}
    for a in case.args:
        if isinstance(a, (list, tuple)):
            found |= {tuple(x) for x in a if isinstance(x, tuple)}
    return found


def _label_problems(ex, case):
    label, problems = case.label, []
    tuples = _stated_tuples(ex, case)
    for m in _TUPLE.finditer(label):
        t = tuple(int(v) for v in m.group(1).split(","))
        if t not in tuples:
            problems.append(f"{label!r} states {t}, which no array or argument of the case has")
    if "conv" not in label and " models" not in label:
        for m in _GRID.finditer(label):
            t = (int(m.group(1)), int(m.group(2)))
            if t not in tuples:
                problems.append(f"{label!r} states {t[0]}x{t[1]}, which the case does not have")
    ev = _evidence(ex, case)
    for m in _NAMED.finditer(label):
        name, said = m.group(1), m.group(2)
        name = "Ci" if name == "C_i" else name
        if name not in ev:
            continue  # nothing to check it against
        true = ev[name]
        ok = (str(true) == said if isinstance(true, bool)
              else math.isclose(float(said), float(true), rel_tol=0.01))
        if not ok:
            problems.append(f"{label!r} says {name} = {said}; the case has {true}")
    return problems


@pytest.mark.parametrize("exercise_id", WITH_CASES)
def test_case_labels_describe_their_cases(exercise_id):
    ex = get(exercise_id)
    problems = [p for case in all_cases(ex) for p in _label_problems(ex, case)]
    assert not problems, f"{exercise_id}:\n  " + "\n  ".join(problems)


class _LogitRecorder:
    """Records max |logits| reaching gclab's softmax, attention pooling and torch.softmax
    while the reference runs (rebinding the functions in every module that holds them)."""

    def __init__(self):
        import torch

        import gclab.numpy.ops as ops

        self.seen: list = []
        picks = [(ops.softmax_forward, 0), (ops.softmax, 0), (ops.attention_pool_forward, 1),
                 (torch.softmax, 0), (torch.nn.functional.softmax, 0)]
        self.wrapped = {id(f): (f, self._wrap(f, i)) for f, i in picks}
        self.saved = []

    def _wrap(self, fn, index):
        def recorded(*args, **kwargs):
            z = args[index]
            z = z.detach().numpy() if hasattr(z, "detach") else np.asarray(z)
            self.seen.append(float(np.max(np.abs(z))))
            return fn(*args, **kwargs)
        return recorded

    def __enter__(self):
        import sys

        import torch

        for mod in list(sys.modules.values()):
            name = getattr(mod, "__name__", "") or ""
            if not (name.startswith("gclab") or mod is torch or name == "torch.nn.functional"):
                continue
            for attr, value in list(vars(mod).items()):
                pair = self.wrapped.get(id(value))
                if pair is not None and value is pair[0]:
                    self.saved.append((mod, attr, value))
                    setattr(mod, attr, pair[1])
        return self

    def __exit__(self, *exc):
        for mod, attr, value in self.saved:
            setattr(mod, attr, value)


def _logit_claims(ex):
    """(label, claimed exponent K, the largest |logit| the reference's softmax saw or None)."""
    from gclab.exercises.trials import run_reference

    out = []
    for seed in ex.seeds:
        for i, case in enumerate(ex.cases(np.random.default_rng(seed))):
            m = _LOGITS.search(case.label)
            if not m:
                continue
            with _LogitRecorder() as rec, warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run_reference(ex, ex.reference, case, seed * 1000 + i)
            out.append((case.label, int(m.group(1)), max(rec.seen) if rec.seen else None))
    return out


LOGIT_CLAIMS = [e.id for e in catalog() if get(e.id).cases is not None
                and any(_LOGITS.search(c.label) for c in all_cases(get(e.id)))]


@pytest.mark.parametrize("exercise_id", LOGIT_CLAIMS)
def test_logits_in_a_label_are_the_logits_the_reference_sees(exercise_id):
    for label, k, seen in _logit_claims(get(exercise_id)):
        if seen is None:
            continue  # no softmax in this exercise's reference (the pairwise logits of dot_product)
        assert 10 ** (k - 0.5) <= seen < 10 ** (k + 1), (
            f"{exercise_id}: {label!r} claims logits ~1e{k}; the reference's softmax sees "
            f"{seen:.3g}")


_SUBSET = re.compile(r"\bfor (?:large|small|big|logits|inputs|an? )|\bof 1e\d", re.I)
_UP_TO = re.compile(r"up to ~1e(\d+)")


@pytest.mark.parametrize("exercise_id", [e.id for e in catalog() if get(e.id).properties])
def test_property_names_hold_on_every_case_they_can_cite(exercise_id):
    """A property runs on every case and its failure cites the first case where it fails: its
    name states what holds on all of them ("finite on every case (logits up to ~1e4)"), never
    a subset ("finite for logits of 1e4", which then cited a case with logits ~1e3)."""
    ex = get(exercise_id)
    for prop in ex.properties:
        assert not _SUBSET.search(prop.name), (
            f"{exercise_id}: the property {prop.name!r} names a subset of the cases, but it "
            "runs on (and cites) every case")
        m = _UP_TO.search(prop.name)
        if m:
            seen = [s for _, _, s in _logit_claims(ex) if s is not None]
            assert seen and 10 ** (int(m.group(1)) - 0.5) <= max(seen) < 10 ** (
                int(m.group(1)) + 1), (exercise_id, prop.name, seen)


def test_the_label_checks_catch_a_wrong_label():
    from gclab.exercises.registry import Case

    ex = get("nl.embedded_gaussian")
    th, ph = np.zeros((2, 5, 4)), np.zeros((2, 4, 6))
    good = Case(args=(th, ph), label="N=5, N'=6, Ci=4", meta={"C_i": 4, "N": 5, "N'": 6})
    assert _label_problems(ex, good) == []
    bad = Case(args=(th, ph), label="(2,6,3), N=6", meta={"C_i": 4, "N": 5, "N'": 6})
    assert len(_label_problems(ex, bad)) == 2
    assert _SUBSET.search("finite for logits of 1e4") and not _SUBSET.search(
        "finite on every case (logits up to ~1e4)")
