"""gclab.course.diagrams: each block shows its three stages and shapes on the arrows;
deterministic."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from gclab.course import diagrams  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    plt.close(fig)
    return buf.getvalue()


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


@pytest.mark.parametrize("name", sorted(diagrams.BLOCKS))
def test_each_block_shows_the_three_stages_and_shapes(name):
    fig = diagrams.blocks(name)
    assert sorted(diagrams.stage_names(fig)) == sorted(diagrams.STAGES)
    texts = _texts(fig)
    for stage in diagrams.STAGES:  # each region is labelled with its stage
        assert stage in texts
    assert any("C×H×W" in t for t in texts)  # shapes ride on the arrows
    assert any("×1×1" in t or "HW×" in t for t in texts)
    assert len(_png(fig)) > 5000


def test_the_stages_have_one_colour_each_in_every_block():
    fig = diagrams.blocks()
    colours = {}
    for ax in fig.axes:
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if gid.startswith("stage:"):
                colours.setdefault(gid, set()).add(tuple(patch.get_facecolor()))
    assert len(colours) == 3 and all(len(c) == 1 for c in colours.values())
    plt.close(fig)


@pytest.mark.parametrize("draw", [lambda: diagrams.blocks("nl", "snl", "gc", "se"),
                                  diagrams.flattening_trap, diagrams.norm_axes])
def test_drawings_are_deterministic(draw):
    assert _png(draw()) == _png(draw())


def test_the_flattening_trap_shows_both_orders():
    fig = diagrams.flattening_trap(channels=3, height=2, width=3)
    texts = _texts(fig)
    assert sum(t.startswith("c") and "\np" in t for t in texts) == 3 * 6 * 3
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "transpose" in titles and "scrambled" in titles
    plt.close(fig)


def test_norm_axes_names_both_norms():
    fig = diagrams.norm_axes()
    titles = " ".join(ax.get_title() for ax in fig.axes)
    assert "BatchNorm" in titles and "LayerNorm" in titles
    plt.close(fig)
