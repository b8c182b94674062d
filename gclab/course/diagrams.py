"""Block diagrams of NL, SNL, GC and SE in one visual language, and two teaching pictures.

Every block is drawn the way the GCNet paper draws it (its figure 4): the input ``x`` at the
top, one box per operation, the tensor shape on every arrow (``C×H×W``, ``HW×1``, ``C×1×1``),
and the three steps of the framework shaded the same way in every block -- **context
modelling** (blue), **transform** (orange), **fusion** (green)::

    from gclab.course import diagrams
    diagrams.blocks("nl", "snl", "gc", "se")   # one panel per block, side by side
    diagrams.flattening_trap()                 # lesson 1: reshape without transpose
    diagrams.norm_axes()                       # lesson 5: LayerNorm vs BatchNorm axes

Each function returns a matplotlib ``Figure``; drawing is deterministic (no randomness, fixed
sizes). The stage regions carry a ``gid`` of ``"stage:<name>"`` so tests can find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

__all__ = ["BLOCKS", "STAGES", "STAGE_COLOURS", "blocks", "draw_block", "flattening_trap",
           "norm_axes", "stage_names"]

STAGES = ("context modelling", "transform", "fusion")
STAGE_COLOURS = {"context modelling": "#dbe9f6", "transform": "#fde2c4", "fusion": "#d9f0d3"}
STAGE_EDGES = {"context modelling": "#4a7fb5", "transform": "#d9822b", "fusion": "#4f9a45"}


@dataclass(frozen=True)
class _Node:
    x: float
    y: float
    text: str
    stage: str | None = None  # None: the input / output, outside the three stages
    round: bool = False  # circle-ish operator (⊕, ⊗)


@dataclass(frozen=True)
class _Block:
    title: str
    nodes: Dict[str, _Node]
    edges: Tuple[tuple, ...]  # (from, to, shape label[, where along the arrow, 0..1])
    residual: Tuple[str, str] | None = None  # (from, to) drawn as a side arc


def _nl() -> _Block:
    n = {
        "x": _Node(0.0, 0.0, "x"),
        "theta": _Node(-1.4, -1.4, "θ: 1×1", "context modelling"),
        "phi": _Node(0.0, -1.4, "φ: 1×1", "context modelling"),
        "g": _Node(1.4, -1.4, "g: 1×1", "context modelling"),
        "att": _Node(-0.7, -2.6, "θᵀφ, softmax", "context modelling"),
        "agg": _Node(0.4, -3.7, "weighted sum", "context modelling"),
        "wz": _Node(0.4, -5.3, "W_z: 1×1 conv", "transform"),
        "add": _Node(0.4, -6.9, "+", "fusion", True),
        "z": _Node(0.4, -8.0, "z"),
    }
    e = (("x", "theta", "C×H×W"), ("x", "phi", ""), ("x", "g", ""),
         ("theta", "att", "HW×C/2", 0.35), ("phi", "att", "C/2×HW", 0.65),
         ("att", "agg", "HW×HW"), ("g", "agg", "HW×C/2"), ("agg", "wz", "C/2×H×W"),
         ("wz", "add", "C×H×W"),
         ("add", "z", "C×H×W"))
    return _Block("Non-local (NL)", n, e, ("x", "add"))


def _snl_like(title: str, transform: Sequence[Tuple[str, str]], fusion: str = "+",
              pool: str = "attention") -> _Block:
    """SNL, GC and SE: one context vector per image, a transform on it, broadcast fusion."""
    n: Dict[str, _Node] = {"x": _Node(0.0, 0.0, "x")}
    e: List[Tuple[str, str, str]] = []
    if pool == "attention":
        n["wk"] = _Node(-1.0, -1.4, "W_k: 1×1 conv", "context modelling")
        n["sm"] = _Node(-1.0, -2.5, "softmax", "context modelling")
        n["pool"] = _Node(0.2, -3.6, "weighted sum", "context modelling")
        e += [("x", "wk", "C×H×W"), ("wk", "sm", "1×H×W"), ("sm", "pool", "HW×1"),
              ("x", "pool", "C×HW")]
        y = -3.6
    else:
        n["pool"] = _Node(0.2, -1.9, "global average pool", "context modelling")
        e += [("x", "pool", "C×H×W")]
        y = -1.9
    prev = "pool"
    for i, (text, _shape) in enumerate(transform):
        y -= 1.6 if i == 0 else 1.0  # a wider gap between two stages
        key = f"t{i}"
        n[key] = _Node(0.2, y, text, "transform")
        e.append((prev, key, _prev_shape(transform, i)))
        prev = key
    y -= 1.6
    n["fuse"] = _Node(0.2, y, fusion, "fusion", True)
    e.append((prev, "fuse", transform[-1][1]))
    n["z"] = _Node(0.2, y - 1.1, "z")
    e.append(("fuse", "z", "C×H×W"))
    return _Block(title, n, tuple(e), ("x", "fuse"))


def _prev_shape(transform: Sequence[Tuple[str, str]], i: int) -> str:
    """The shape on the arrow INTO transform step i: the output shape of step i - 1 (or the
    context's, C×1×1, for the first)."""
    return "C×1×1" if i == 0 else transform[i - 1][1]


def _snl() -> _Block:
    return _snl_like("Simplified NL (SNL)", [("W_v: 1×1 conv", "C×1×1")])


def _gc() -> _Block:
    return _snl_like("Global Context (GC)", [
        ("1×1 conv C→C/r", "C/r×1×1"), ("LayerNorm, ReLU", "C/r×1×1"),
        ("1×1 conv C/r→C", "C×1×1")])


def _se() -> _Block:
    return _snl_like("Squeeze-Excitation (SE)", [
        ("1×1 conv C→C/r, ReLU", "C/r×1×1"), ("1×1 conv C/r→C", "C×1×1"),
        ("sigmoid", "C×1×1")], fusion="×", pool="average")


BLOCKS = {"nl": _nl, "snl": _snl, "gc": _gc, "se": _se}


def stage_names(fig) -> List[str]:
    """The stage names of every shaded region in ``fig`` (from the regions' ``gid``)."""
    names = []
    for ax in fig.axes:
        for patch in ax.patches:
            gid = patch.get_gid() or ""
            if gid.startswith("stage:"):
                names.append(gid[len("stage:"):])
    return names


def draw_block(name: str, ax) -> None:
    """Draw block ``name`` ('nl', 'snl', 'gc', 'se') into the matplotlib axes ``ax``."""
    block = BLOCKS[name.lower()]()
    nodes = block.nodes
    xs = [nd.x for nd in nodes.values()]
    ys = [nd.y for nd in nodes.values()]
    ax.set_xlim(min(xs) - 1.0, max(xs) + 2.1)
    ax.set_ylim(min(ys) - 0.45, max(ys) + 0.45)
    ax.set_title(block.title, fontsize=11)
    ax.axis("off")
    # the nodes first, so that their drawn sizes can be measured
    texts = {}
    for key, nd in nodes.items():
        if nd.stage is None:
            texts[key] = ax.text(nd.x, nd.y, f"{nd.text}   C×H×W", ha="center", va="center",
                                 fontsize=10, weight="bold", zorder=5)
        elif nd.round:
            texts[key] = ax.text(nd.x, nd.y, nd.text, ha="center", va="center", fontsize=12,
                                 zorder=5, bbox=dict(boxstyle="circle,pad=0.12", fc="white",
                                                     ec="#333333"))
        else:
            texts[key] = ax.text(nd.x, nd.y, nd.text, ha="center", va="center", fontsize=8.5,
                                 zorder=5, bbox=dict(boxstyle="round,pad=0.3", fc="white",
                                                     ec="#333333", lw=0.8))
    renderer = ax.figure.canvas.get_renderer()
    inv = ax.transData.inverted()
    box = {}
    for key, t in texts.items():
        ext = t.get_window_extent(renderer)  # the text itself; its frame adds about 0.08
        (x0, y0), (x1, y1) = inv.transform([(ext.x0, ext.y0), (ext.x1, ext.y1)])
        pad = 0.0 if nodes[key].stage is None else 0.08
        box[key] = (x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    segments = _arrow_segments(block, box)
    _draw_stages(ax, block, box, segments, renderer, inv)
    # the arrows, with the shape of the tensor they carry
    for edge in block.edges:
        src, dst, label = edge[:3]
        frac = edge[3] if len(edge) > 3 else 0.5
        start, end = segments[(src, dst)]
        arrow = ax.annotate("", end, start, arrowprops=dict(arrowstyle="-|>", lw=1.0,
                                                            color="#333333", shrinkA=0,
                                                            shrinkB=0), zorder=2)
        arrow.set_gid(f"arrow:{src}->{dst}")
        if label:
            mx = start[0] + frac * (end[0] - start[0])
            my = start[1] + frac * (end[1] - start[1])
            left = _label_on_left(block, src, dst)
            text = ax.text(mx - 0.07 if left else mx + 0.07, my, label, fontsize=7.5,
                           ha="right" if left else "left", va="center", color="#222222",
                           zorder=4, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none",
                                               alpha=0.85))
            text.set_gid(f"shape:{src}->{dst}")
    if block.residual:
        src, dst = block.residual
        a, b = nodes[src], nodes[dst]
        side = max(bx[2] for bx in box.values()) + 0.25
        ax.plot([box[src][2], side, side, box[dst][2] + 0.25], [a.y, a.y, b.y, b.y], ls="--",
                lw=1.0, color="#777777", zorder=1)
        ax.annotate("", (box[dst][2], b.y), (box[dst][2] + 0.25, b.y),
                    arrowprops=dict(arrowstyle="-|>", lw=1.0, color="#777777", shrinkA=0,
                                    shrinkB=0), zorder=2)
        ax.text(side + 0.05, (a.y + b.y) / 2, "x  (C×H×W), the residual", rotation=90,
                fontsize=7.5, ha="left", va="center", color="#555555")


def _arrow_segments(block: _Block, box: Dict[str, tuple]) -> Dict[tuple, tuple]:
    """(src, dst) -> ((x, y) start, (x, y) end) of every arrow, from the bottom of the source's
    box to the top of the destination's."""
    nodes = block.nodes
    return {(e[0], e[1]): ((nodes[e[0]].x, box[e[0]][1]), (nodes[e[1]].x, box[e[1]][3]))
            for e in block.edges}


def _label_on_left(block: _Block, src: str, dst: str) -> bool:
    """Which side of its arrow a shape label goes: the outer side of a fan. Arrows into the
    same node (or out of the same node) are ordered by their other end's x; the leftmost gets
    its label on the left, the rightmost on the right, so no label sits between two arrows
    where it would read as the other arrow's. A lone arrow: on the side it leans to."""
    nodes = block.nodes
    for shared, other in ((1, 0), (0, 1)):
        fan = [e for e in block.edges if e[shared] == (src, dst)[shared]]
        if len(fan) > 1:
            xs = sorted(nodes[e[other]].x for e in fan)
            mine = nodes[(src, dst)[other]].x
            if mine == xs[0] and xs[0] < xs[-1]:
                return True
            if mine == xs[-1]:
                return False
    return nodes[dst].x < nodes[src].x - 0.05


def _crosses(seg: tuple, rect: tuple) -> bool:
    """Whether the segment ((x0, y0), (x1, y1)) meets the rectangle (x0, y0, x1, y1)."""
    (ax_, ay), (bx, by) = seg
    rx0, ry0, rx1, ry1 = rect
    t0, t1 = 0.0, 1.0
    for p, q in ((-(bx - ax_), ax_ - rx0), (bx - ax_, rx1 - ax_),
                 (-(by - ay), ay - ry0), (by - ay, ry1 - ay)):
        if p == 0:
            if q < 0:
                return False
        else:
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return False
    return True


def _draw_stages(ax, block: _Block, box, segments, renderer, inv) -> None:
    """The shaded stage regions (behind everything), each with its name in a corner that no
    arrow and no box crosses (the region grows on the left when every corner is taken)."""
    from matplotlib.patches import FancyBboxPatch

    lines = list(segments.values())
    for stage in STAGES:
        members = [box[k] for k, nd in block.nodes.items() if nd.stage == stage]
        if not members:
            continue
        x0 = min(b[0] for b in members) - 0.12
        x1 = max(b[2] for b in members) + 0.12
        y0 = min(b[1] for b in members) - 0.14
        y1 = max(b[3] for b in members) + 0.14
        if x1 - x0 < 1.5:
            mid = (x0 + x1) / 2
            x0, x1 = mid - 0.75, mid + 0.75
        name = ax.text(0, 0, stage, ha="left", va="bottom", fontsize=8, style="italic",
                       weight="bold", color=STAGE_EDGES[stage], zorder=1)
        ext = name.get_window_extent(renderer)
        (ex0, ey0), (ex1, ey1) = inv.transform([(ext.x0, ext.y0), (ext.x1, ext.y1)])
        w, h = ex1 - ex0, ey1 - ey0
        others = [b for k, b in box.items() if block.nodes[k].stage != stage]
        x0, y0, y1, lx, ly = _stage_label_place(x0, x1, y0, y1, w, h, lines, others)
        name.set_position((lx, ly))
        name.set_gid(f"stagename:{stage}")
        region = FancyBboxPatch((x0, y0), x1 - x0, y1 - y0,
                                boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=STAGE_COLOURS[stage], ec=STAGE_EDGES[stage], lw=1.0, zorder=0)
        region.set_gid(f"stage:{stage}")
        ax.add_patch(region)
        left, right = ax.get_xlim()
        ax.set_xlim(min(left, x0 - 0.1), right)  # a region grown for its name stays in view


def _stage_label_place(x0, x1, y0, y1, w, h, lines, others):
    """(x0, y0, y1, label x, label y): the region's bounds grown by a band for the label, and
    where the label's lower-left corner goes: top-left, top-right, bottom-left or bottom-right,
    the first that no arrow crosses; else top-left with the region grown to the left."""
    room = h + 0.1
    for top in (True, False):
        for left in (True, False):
            lx = x0 + 0.06 if left else x1 - 0.06 - w
            ly = y1 + 0.04 if top else y0 - room + 0.04
            rect = (lx - 0.03, ly - 0.02, lx + w + 0.03, ly + h + 0.02)
            clear = not any(_crosses(seg, rect) for seg in lines) and not any(
                b[0] < rect[2] and rect[0] < b[2] and b[1] < rect[3] and rect[1] < b[3]
                for b in others)
            if clear:
                return x0, (y0 if top else y0 - room), (y1 + room if top else y1), lx, ly
    ly = y1 + 0.04
    band = [s for s in lines if _crosses(s, (x0, ly, x1, ly + h))]
    crossing = min((min(s[0][0], s[1][0]) for s in band), default=x0 + w + 0.2)
    x0 = min(x0, crossing - w - 0.2)
    return x0, y0, y1 + room, x0 + 0.06, ly


def blocks(*names: str, height: float = 6.0):
    """A figure with one panel per block (default: all four), in the order given, two a row."""
    import matplotlib.pyplot as plt

    names = names or ("nl", "snl", "gc", "se")
    ncols = min(2, len(names))  # two a row: a notebook shows ~800 px, shapes stay legible
    nrows = -(-len(names) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, height * nrows), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.07 / nrows, bottom=0.01, wspace=0.05,
                        hspace=0.08)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        draw_block(name, ax)
    return fig


def flattening_trap(channels: int = 3, height: int = 2, width: int = 3):
    """Lesson 1: (C, H, W) -> (N, C) with reshape + transpose (right) and with a bare reshape
    (wrong, same shape, scrambled): every cell shows which channel and position it holds."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    colours = ["#8fb9e3", "#f4b183", "#a9d18e", "#d5a6e6"]
    n = height * width
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4),
                             gridspec_kw={"width_ratios": [1.5, 1, 1]})

    def cell(ax, x, y, c, p):
        ax.add_patch(Rectangle((x, y), 1, 1, fc=colours[c % len(colours)], ec="white", lw=1.5))
        ax.text(x + 0.5, y + 0.5, f"c{c}\np{p}", ha="center", va="center", fontsize=7.5)

    ax = axes[0]
    for c in range(channels):  # the channel maps, shifted like a stack of sheets
        for h in range(height):
            for w in range(width):
                cell(ax, w + c * (width + 0.6), height - 1 - h, c, h * width + w)
    ax.set_title(f"x: (C, H, W) = ({channels}, {height}, {width})\n"
                 "position p = h·W + w", fontsize=10)
    ax.set_xlim(-0.2, channels * (width + 0.6)), ax.set_ylim(-0.3, height + 0.2)

    flat = [(c, p) for c in range(channels) for p in range(n)]  # memory order of (C, H, W)
    right = [[(c, p) for c in range(channels)] for p in range(n)]
    wrong = [flat[i * channels:(i + 1) * channels] for i in range(n)]
    for ax, table, title in ((axes[1], right, "reshape to (C, N), then transpose\n"
                              "row i = position i  ✓"),
                             (axes[2], wrong, "reshape straight to (N, C)\n"
                              "same shape, scrambled  ✗")):
        for i, row in enumerate(table):
            for j, (c, p) in enumerate(row):
                cell(ax, j, n - 1 - i, c, p)
        ax.set_title(title, fontsize=10, color="#2e7d32" if table is right else "#c62828")
        ax.set_xlim(-0.2, channels + 0.2), ax.set_ylim(-0.3, n + 0.2)
        ax.set_xlabel("C (channels)", fontsize=8)
        ax.set_ylabel("N (positions)", fontsize=8)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        for s in ax.spines.values():
            s.set_visible(False)
    fig.tight_layout()
    return fig


def norm_axes(batch: int = 4, planes: int = 8):
    """Lesson 5: on GC's (B, P, 1, 1) bottleneck tensor, BatchNorm takes one mean and variance
    per channel (over the batch), LayerNorm one per sample (over the channels)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9))
    for ax, kind in zip(axes, ("BatchNorm", "LayerNorm")):
        for b in range(batch):
            for p in range(planes):
                picked = (p == 2) if kind == "BatchNorm" else (b == 1)
                ax.add_patch(Rectangle((p, batch - 1 - b), 1, 1, ec="white", lw=1.5,
                                       fc="#d9822b" if picked else "#dbe9f6"))
        what = ("one mean and variance per channel,\nover the batch: depends on the other images"
                if kind == "BatchNorm" else
                "one mean and variance per sample,\nover its channels: each image on its own")
        ax.set_title(f"{kind}\n{what}", fontsize=9.5)
        ax.set_xlim(0, planes), ax.set_ylim(0, batch)
        ax.set_aspect("equal")
        ax.set_xticks([p + 0.5 for p in range(planes)], [str(p) for p in range(planes)],
                      fontsize=7)
        ax.set_yticks([b + 0.5 for b in range(batch)], [str(batch - 1 - b) for b in range(batch)],
                      fontsize=7)
        ax.set_xlabel("P (channels of the bottleneck)", fontsize=8)
        ax.set_ylabel("B (images)", fontsize=8)
        for s in ax.spines.values():
            s.set_visible(False)
    fig.suptitle("GC's bottleneck tensor (B, P, 1, 1): the entries in orange share one mean and "
                 "variance", fontsize=10)
    fig.text(0.5, 0.02, "On a (B, C, H, W) map: BatchNorm pools over (B, H, W) for each channel, "
             "LayerNorm over (C, H, W) for each image.", ha="center", fontsize=8.5,
             color="#444444")
    fig.tight_layout(rect=(0, 0.06, 1, 0.93))
    return fig
