"""Every figure of the lessons is legible at notebook width, and no curve hides another.

JupyterLab shows an inline figure as the PNG matplotlib's inline backend makes (100 dpi,
``bbox_inches="tight"``), scaled down to the output area's width when it is wider (about
800 px in a notebook next to the file browser). A text of ``s`` points then is
``s * 100 / 72 * min(1, 800 / png_width)`` pixels tall; each figure's smallest text must be
at least 8 px. The figures are made by the same calls the lessons make (``gclab.course.diagrams``,
``gclab.course.figures``) and, for lesson 7, by ``gclab.experiments.figures`` from the
committed results.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from gclab.course import diagrams, figures  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_WIDTH = 800  # px
MIN_TEXT_PX = 8.0


def smallest_text_px(fig):
    """(px, text): the smallest text that is drawn in ``fig``'s PNG, as shown at notebook
    width (every text the renderer draws is recorded: hidden ticks do not count)."""
    from matplotlib.backends.backend_agg import RendererAgg

    drawn = []
    original = RendererAgg.draw_text

    def record(self, gc, x, y, s, prop, *args, **kwargs):
        if str(s).strip():
            drawn.append((prop.get_size_in_points(), str(s)))
        return original(self, gc, x, y, s, prop, *args, **kwargs)

    RendererAgg.draw_text = record
    try:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    finally:
        RendererAgg.draw_text = original
    width = struct.unpack(">I", buf.getvalue()[16:20])[0]
    scale = min(1.0, NOTEBOOK_WIDTH / width)
    size, text = min(drawn)
    return size * 100 / 72 * scale, text, width


def _shown(draw):
    """The figure that ``draw()`` shows (through plt.show) or returns."""
    shown = []
    original = plt.show
    plt.show = lambda *a, **k: shown.append(plt.gcf())
    try:
        out = draw()
    finally:
        plt.show = original
    fig = out if isinstance(out, matplotlib.figure.Figure) else (shown[-1] if shown else None)
    assert fig is not None, "the call drew no figure"
    return fig


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def _flops(block, shape):
    from torch.utils.flop_counter import FlopCounterMode

    block = block.to("meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        block(torch.empty(*shape, device="meta"), return_attention=True)
    return counter.get_total_flops()


def _rf(kernels, strides):
    return 1 + sum(k - 1 for k in kernels)


ERFS = {d: np.random.default_rng(d).random((33, 33)) for d in (1, 2, 4, 8, 16)}
DEPTHS = np.array([1, 2, 4, 8, 16, 32])
FIGURES = {  # the calls the lessons make
    "01 diagrams.blocks(nl)": lambda: diagrams.blocks("nl"),
    "01 flattening_trap": lambda: diagrams.flattening_trap(3, 2, 3),
    "04 diagrams.blocks(nl, snl)": lambda: diagrams.blocks("nl", "snl"),
    "05 diagrams.blocks(snl, gc)": lambda: diagrams.blocks("snl", "gc"),
    "05 norm_axes": lambda: diagrams.norm_axes(4, 8),
    "06 diagrams.blocks(all four)": lambda: diagrams.blocks("nl", "snl", "gc", "se"),
    "00 erf_grid": lambda: figures.erf_grid(ERFS, 33, _rf),
    "00 erf_growth": lambda: figures.erf_growth(DEPTHS, DEPTHS * 1.0,
                                                       np.sqrt(DEPTHS) * 1.2),
    "00 erf_compare": lambda: figures.erf_compare(ERFS[4], ERFS[8]),
    "01 gaussian_attention_demo": lambda: figures.gaussian_attention_demo(12, 16),
    "02 plot_timings": lambda: figures.plot_timings(
        {4: (0.01, 0.001), 6: (0.05, 0.002), 8: (0.2, 0.003)}, 8),
    "04 nl_vs_snl_maps": lambda: figures.nl_vs_snl_maps(),
    "05 cost_curves": lambda: figures.cost_curves(_flops, _n_params,
                                                         sides=(7, 14, 28, 56)),
    "06 framework_table": figures.framework_table,
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_lesson_figure_text_is_legible_at_notebook_width(name):
    if "nl_vs_snl" in name:
        pytest.importorskip("sklearn")
    fig = _shown(FIGURES[name])
    try:
        px, text, width = smallest_text_px(fig)
    finally:
        plt.close("all")
    assert px >= MIN_TEXT_PX, (
        f"{name}: {text!r} is {px:.1f} px tall at {NOTEBOOK_WIDTH} px width "
        f"(PNG {width} px wide)")


RESULTS = ROOT / "data" / "results"


def _lesson7_figures():
    from gclab.experiments import comparisons
    from gclab.experiments import figures as results_figures

    rows = comparisons.read_csv(RESULTS / "ablation.csv")
    curves = comparisons.read_csv(RESULTS / "curves.csv")
    maps = json.loads((RESULTS / "attention_maps.json").read_text())
    return {"07 ablation": (results_figures.plot_table, rows),
            "07 curves": (results_figures.plot_curves, curves),
            "07 attention_blocks": (results_figures.plot_block_attention, maps)}


@pytest.mark.parametrize("name", ["07 ablation", "07 curves", "07 attention_blocks"])
def test_lesson7_figures_are_legible_at_notebook_width(name, tmp_path, monkeypatch):
    if not (RESULTS / "ablation.csv").exists():
        pytest.skip("no committed results")
    plot, data = _lesson7_figures()[name]
    saved = []
    monkeypatch.setattr(plt.Figure, "savefig",
                        lambda self, *a, **k: saved.append(self), raising=True)
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    plot(data, tmp_path / "figure.png")
    monkeypatch.undo()
    assert saved, "the report drew no figure"
    try:
        px, text, width = smallest_text_px(saved[-1])
    finally:
        plt.close("all")
    assert px >= MIN_TEXT_PX, (
        f"{name}: {text!r} is {px:.1f} px tall at {NOTEBOOK_WIDTH} px width "
        f"(PNG {width} px wide)")


def test_no_cost_curve_hides_another():
    """GC r16 and SE r16 cost almost the same: where two curves coincide they are drawn so
    that both show (a different line style and marker, the later one thinner)."""
    fig = _shown(FIGURES["05 cost_curves"])
    try:
        for ax in fig.axes:
            lines = [ln for ln in ax.get_lines() if ln.get_label() and
                     not ln.get_label().startswith("_")]
            for i, a in enumerate(lines):
                for b in lines[i + 1:]:
                    ya, yb = np.asarray(a.get_ydata(), float), np.asarray(b.get_ydata(), float)
                    if ya.shape != yb.shape or not np.allclose(ya, yb, rtol=0.15):
                        continue
                    assert a.get_linestyle() != b.get_linestyle(), (a.get_label(), b.get_label())
                    assert a.get_marker() != b.get_marker(), (a.get_label(), b.get_label())
                    assert b.get_linewidth() < a.get_linewidth(), (a.get_label(), b.get_label())
            assert ax.get_legend() is not None or any(a.get_legend() for a in fig.axes)
    finally:
        plt.close("all")


def _extent(text, fig):
    """A text's drawn box (with its frame) in its axes' data coordinates."""
    renderer = fig.canvas.get_renderer()
    patch = text.get_bbox_patch()
    ext = (patch or text).get_window_extent(renderer)
    if patch is None:
        ext = text.get_window_extent(renderer)
    (x0, y0), (x1, y1) = text.axes.transData.inverted().transform(
        [(ext.x0, ext.y0), (ext.x1, ext.y1)])
    return x0, y0, x1, y1


def _meets(seg, rect, margin=0.0) -> bool:
    """Whether a segment meets a rectangle (sampled finely; the rectangle shrunk by margin)."""
    (ax_, ay), (bx, by) = seg
    x0, y0, x1, y1 = rect[0] + margin, rect[1] + margin, rect[2] - margin, rect[3] - margin
    t = np.linspace(0, 1, 400)
    xs, ys = ax_ + t * (bx - ax_), ay + t * (by - ay)
    return bool(np.any((xs > x0) & (xs < x1) & (ys > y0) & (ys < y1)))


@pytest.mark.parametrize("block", ["nl", "snl", "gc", "se"])
def test_diagram_labels_sit_clear_of_other_arrows(block):
    """No arrow crosses a stage's name; a shape label touches no arrow but its own, and no two
    shape labels overlap (each reads as the shape of one arrow)."""
    fig = diagrams.blocks(block)
    try:
        fig.canvas.draw()
        ax = fig.axes[0]
        arrows = {a.get_gid()[len("arrow:"):]: (a.xyann, a.xy) for a in ax.texts
                  if (a.get_gid() or "").startswith("arrow:")}
        assert arrows, "no arrows found (their gid is arrow:<src>-><dst>)"
        names = [t for t in ax.texts if (t.get_gid() or "").startswith("stagename:")]
        assert len(names) == 3
        for t in names:
            box = _extent(t, fig)
            crossing = [k for k, seg in arrows.items() if _meets(seg, box)]
            assert not crossing, f"{block}: {t.get_text()!r} is crossed by {crossing}"
        shapes = {t.get_gid()[len("shape:"):]: _extent(t, fig) for t in ax.texts
                  if (t.get_gid() or "").startswith("shape:")}
        for key, box in shapes.items():
            others = [k for k, seg in arrows.items() if k != key and _meets(seg, box, 0.02)]
            assert not others, f"{block}: the shape of {key} sits on {others}"
        keys = list(shapes)
        for i, a in enumerate(keys):
            for b in keys[i + 1:]:
                p, q = shapes[a], shapes[b]
                overlap = p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]
                assert not overlap, f"{block}: the shapes of {a} and {b} overlap"
    finally:
        plt.close("all")
