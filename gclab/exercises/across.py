"""Across cases: one sentence on how the learner's outputs differ from the reference's over all
the cases of a check, from the per-case findings of :func:`gclab.exercises.diagnose.detect`.

A finding every failing case shares wins; then a pass/fail pattern over the cases (right only
where B = 1, on square maps, ...), named only when two passing and two failing cases differ in
that property alone; then a finding most failing cases share (a scaling only when its name, in
the cases' own quantities, fits those cases and no failing case shows another). A wrong cause is
worse than none: where the evidence is a coincidence of how the cases were drawn, nothing is
said.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Sequence, Tuple

from gclab.exercises.diagnose import detect
from gclab.exercises.observe import Observation

__all__ = ["explain"]

_NUMBER = re.compile(r"\d+(\.\d+)?(e[-+]?\d+)?")


# (sentence, predicate on a case's quantities, the quantities the property is about)
_PATTERNS: Tuple[Tuple[str, Any, Tuple[str, ...]], ...] = (
    ("right only where B = 1: the batch axis is mixed into the computation",
     lambda q: q.get("B") == 1, ("B",)),
    ("right only on square maps (H = W): H and W swapped somewhere (a reshape to (W, H), "
     "a transpose of the map)", lambda q: "H" in q and q.get("H") == q.get("W"),
     ("H", "W", "N", "N'")),
    ("right only on maps with odd H and W: a centre or a midpoint off by half a pixel on even "
     "sizes", lambda q: "H" in q and q["H"] % 2 == 1 and q["W"] % 2 == 1,
     ("H", "W", "N", "N'")),
    ("right only where C = 1: the channel axis is mixed up", lambda q: q.get("C") == 1,
     ("C", "C_i", "P")),
    ("right only where N' = N (no sub-sampling): the keys' count N' and the queries' count N "
     "are mixed up", lambda q: "N'" in q and q.get("N'") == q.get("N"), ("N'",)),
)


def _contrasted(good: Sequence[Observation], bad: Sequence[Observation], about: Tuple[str, ...],
                setting: str | None = None) -> bool:
    """At least two passing and two failing cases that pair up differing only in the property
    (in ``about`` quantities, or in the ``setting``): otherwise a pass/fail split along it may be
    a coincidence of how the cases were drawn, and a wrong cause is worse than none."""
    def rest(o: Observation) -> tuple:
        q = tuple(sorted((k, v) for k, v in o.quantities.items() if k not in about))
        st = tuple(sorted((k, repr(v)) for k, v in o.settings.items() if k != setting))
        return q, st

    paired_good = {i for i, g in enumerate(good) if any(rest(g) == rest(b) for b in bad)}
    paired_bad = {i for i, b in enumerate(bad) if any(rest(g) == rest(b) for g in good)}
    return len(paired_good) >= 2 and len(paired_bad) >= 2


def _pattern(obs: Sequence[Observation]) -> str | None:
    good = [o for o in obs if o.passed]
    bad = [o for o in obs if not o.passed]
    if len(good) < 2 or len(bad) < 2:
        return None
    for text, pred, about in _PATTERNS:
        try:
            if all(pred(o.quantities) for o in good) and not any(pred(o.quantities)
                                                                 for o in bad):
                if _contrasted(good, bad, about):
                    return text
        except Exception:  # noqa: BLE001
            continue
    for key in bad[0].settings:
        vals = {repr(o.settings.get(key)) for o in bad}
        if len(vals) == 1 and not any(repr(o.settings.get(key)) in vals for o in good) \
                and _contrasted(good, bad, (), key):
            return (f"wrong only where {key} = {vals.pop()} (right for the other settings): "
                    f"the code path for that {key} has the slip")
    return None


#: Findings a few cases can show by coincidence (equal values in a symmetric map, one constant
#: row): named only when every failing case shows them.
_ALL_CASES_ONLY = ("in the wrong places", "everywhere where the reference varies")


def _is_scaling(finding: str) -> bool:
    return any(w in finding for w in ("a factor ", "constant factor", "ddof", "times "))


def _named_alone(key: str, scalings: set, bad: Sequence[Observation],
                 per_case: Sequence[List[str]]) -> bool:
    """A scaling found on most failing cases counts only when it is named by the cases' own
    quantities (not a bare number) and no failing case shows a different scaling."""
    if "constant factor" in key or _NUMBER.sub("#", key) != key and "sqrt" not in key \
            and "/" not in key and "'" not in key and "_" not in key:
        return False
    for fs in per_case:
        keys = {_key(f) for f in fs}
        if key not in keys and keys & scalings:
            return False
    return True


def _key(finding: str) -> str:
    """Findings that differ only in their numbers (an error size, an offset) count as the same;
    a named factor is the finding itself ("a factor 2" on one case is not "a factor 3")."""
    if finding.startswith("a factor ") or ": a factor " in finding:
        return finding
    return _NUMBER.sub("#", finding)


def explain(observations: Sequence[Observation]) -> str | None:
    """One sentence on how the learner's outputs differ from the reference's over all cases, or
    None. A finding shared by every failing case wins; else a pass/fail pattern over the cases
    (right only for B = 1, on square maps, ...); else the worst case's own finding."""
    bad = [o for o in observations if not o.passed]
    if not bad:
        return None
    per_case = [detect(o) for o in bad]
    # the same finding with other numbers (an error size, an offset) counts as the same
    counts: Dict[str, int] = {}
    text: Dict[str, Tuple[float, str]] = {}
    for o, fs in zip(bad, per_case):
        for f in dict.fromkeys(fs):
            key = _key(f)
            counts[key] = counts.get(key, 0) + 1
            if key not in text or o.error > text[key][0]:
                text[key] = (o.error, f)  # quote the worst case's numbers
    best = max(counts, key=lambda f: counts[f], default=None)
    if best is not None and counts[best] == len(bad):
        return text[best][1]
    pattern = _pattern(observations)
    if pattern:
        return pattern
    # a finding most failing cases share, when it is not a number that other cases contradict
    # (a factor or a ddof that fits some cases only is a coincidence of their sizes)
    scalings = {f for f in counts if _is_scaling(f)}
    shared = [f for f in counts if 2 * counts[f] >= len(bad) and counts[f] >= 2
              and not any(w in f for w in _ALL_CASES_ONLY)
              and (f not in scalings or _named_alone(f, scalings, bad, per_case))]
    best = max(shared, key=lambda f: counts[f], default=None)
    if best is not None:
        return f"{text[best][1]} (on {counts[best]} of the {len(bad)} failing cases)"
    worst = max(range(len(bad)), key=lambda i: (bool(per_case[i]), bad[i].error))
    if per_case[worst] and len(bad) <= 2 and not (len(bad) == 2 and _is_scaling(
            per_case[worst][0])):  # one case's finding, when there are hardly others
        where = f" on {bad[worst].label}" if bad[worst].label else ""
        return f"{per_case[worst][0]}{where} (other cases differ otherwise)"
    return None
