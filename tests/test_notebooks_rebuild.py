"""``gclab notebooks`` and ``gclab notebooks --check`` agree: the check reports every copy the
build would rewrite, and building twice (or on a clean clone) writes nothing. An executed
solution copy keeps the widget state its outputs refer to (``metadata.widgets``)."""

from __future__ import annotations

import json
import shutil

import pytest

from gclab.course.notebooks import build, check_copies
from gclab.paths import ROOT


@pytest.fixture
def clone(tmp_path):
    """The lesson sources and committed copies, as a clean clone has them."""
    for sub in ("notebooks/src", "notebooks/solutions"):
        shutil.copytree(ROOT / sub, tmp_path / sub)
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy2(nb, tmp_path / "notebooks" / nb.name)
    return tmp_path


def _rel(paths, root):
    return sorted(str(p.relative_to(root)) for p in paths)


def test_check_sees_everything_the_build_rewrites(clone):
    problems = check_copies(clone)
    written = build(clone, quiet=True)
    for path in _rel(written, clone):
        assert any(p.startswith(path) for p in problems), (
            f"gclab notebooks rewrote {path} while --check said nothing about it: {problems}")
    assert build(clone, quiet=True) == []  # a second build writes nothing
    assert not [p for p in check_copies(clone) if "stale" in p or "missing" in p]


def test_widget_state_survives_a_build(clone):
    with_widgets = [p for p in (clone / "notebooks" / "solutions").glob("*.ipynb")
                    if "widgets" in json.loads(p.read_text())["metadata"]]
    if not with_widgets:
        pytest.skip("no committed solution copy holds widget state")
    before = {p: p.read_text() for p in with_widgets}
    build(clone, quiet=True)
    for p, text in before.items():
        assert p.read_text() == text, f"the build rewrote {p.name}"


def test_check_reports_metadata_the_build_would_drop(clone):
    path = sorted((clone / "notebooks" / "solutions").glob("*.ipynb"))[0]
    nb = json.loads(path.read_text())
    nb["metadata"]["stray"] = {"added": "by hand"}
    path.write_text(json.dumps(nb, indent=1, sort_keys=True) + "\n")
    problems = check_copies(clone)
    assert any(path.name in p and "would rewrite" in p for p in problems), problems
    assert path in build(clone, quiet=True)
