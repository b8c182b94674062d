"""The report of ``gclab bench``: the issues' targets, the machine's description, the tables.

:func:`evaluate_targets` turns the measured rows of one thread count into MET / NOT MET lines
against the issues' bars (ratios to mmcv/timm, shares of the floors, the dot-product growth fit);
``format_*`` print the tables of ``report.md``; ``write_csv`` and ``plot_scaling`` write
``results.csv`` and ``scaling.png``; ``cpu_description`` names the CPU (model, vector
extensions, microarchitecture where the CPUID says it).
"""

from __future__ import annotations

import csv
import math
import platform
import statistics
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

from gclab.experiments.bench_core import CLONE, MEASURED, Config, Limits, Row


# -------------------------------------------------------------------------------- targets
@dataclass
class Target:
    name: str
    limit: float
    value: float  # nan when not measured
    detail: str
    at_least: bool = False  # MET when value >= limit (a share of a floor)

    @property
    def status(self) -> str:
        if math.isnan(self.value):
            return "NOT MEASURED"
        ok = self.value >= self.limit if self.at_least else self.value <= self.limit
        return "MET" if ok else "NOT MET"


def _find(rows: Sequence[Row], group: str, impl: str, size: Tuple[int, int]) -> Row | None:
    for r in rows:
        if (r.group, r.impl, r.height, r.width) == (group, impl, size[0], size[1]):
            return r
    return None


def _ratio(rows, group, a, b, size, attr="time_ms") -> float:
    ra, rb = _find(rows, group, a, size), _find(rows, group, b, size)
    if ra is None or rb is None:
        return float("nan")
    va, vb = getattr(ra, attr), getattr(rb, attr)
    if math.isnan(va) or math.isnan(vb) or vb == 0:
        return float("nan")
    return va / vb


def dot_product_growth(rows: Sequence[Row]) -> Tuple[float, str]:
    """Time growth per doubling of N for gclab's dot-product NL: 2**slope of the least-squares
    line through (log2 N, log2 time) over the sizes with N >= 1024 (a single pair of sizes is
    at the mercy of one noisy median); the detail also lists each consecutive pair's ratio."""
    pts = sorted((r.n, r.time_ms) for r in rows if r.group == "nl_dot" and r.impl == "gclab"
                 and r.n >= 1024 and not math.isnan(r.time_ms))
    if len(pts) < 2:
        return float("nan"), "needs 2+ sizes with N >= 1024"
    lx = [math.log2(n) for n, _ in pts]
    ly = [math.log2(t) for _, t in pts]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    slope = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    pairs = ", ".join(f"{(t1 / t0) ** (1 / math.log2(n1 / n0)):.2f} ({n0}->{n1})"
                      for (n0, t0), (n1, t1) in zip(pts, pts[1:]) if n1 > n0)
    return 2.0**slope, f"2^slope of the log-log fit over N >= 1024; per doubling: {pairs}"


def _worst_ratio(rows, group, a, b, sizes) -> Tuple[float, str]:
    got = [(s, _ratio(rows, group, a, b, s)) for s in sizes]
    got = [(s, v) for s, v in got if not math.isnan(v)]
    if not got:
        return float("nan"), f"{a} / {b} time"
    detail = ", ".join(f"{s[0]}x{s[1]}: {v:.2f}" for s, v in got)
    return max(v for _, v in got), f"worst of {a} / {b} time ({detail})"


def _worst_measured_ratio(rows, group, sizes) -> Tuple[float, str]:
    # impl='auto' with measured routes (its row where measured, else gclab's: the same route)
    got = []
    for s in sizes:
        v = _ratio(rows, group, MEASURED, "mmcv", s)
        if math.isnan(v):
            v = _ratio(rows, group, "gclab", "mmcv", s)
        if not math.isnan(v):
            got.append((s, v))
    if not got:
        return float("nan"), f"{MEASURED} / mmcv time"
    detail = ", ".join(f"{s[0]}x{s[1]}: {v:.2f}" for s, v in got)
    return max(v for _, v in got), (f"worst of {MEASURED} (else gclab: the same route) / mmcv "
                                    f"time ({detail})")


def evaluate_targets(rows: Sequence[Row], cfg: Config) -> List[Target]:
    """The issues' targets for the rows of one thread count (nan when not measured)."""
    t: List[Target] = []
    s64, s128 = (64, 64), (128, 128)
    nl = f"B={cfg.nl_batch}, C={cfg.channels}"
    sizes = " to ".join(f"{s[0]}x{s[1]}" for s in (cfg.nl_sizes[0], cfg.nl_sizes[-1]))
    v, d = _worst_ratio(rows, "nl_embedded", "gclab", "mmcv", cfg.nl_sizes)
    t.append(Target(f"NL embedded fwd+bwd <= 1.0x mmcv at every size {sizes} ({nl})", 1.0, v,
                    d))
    v, d = _worst_measured_ratio(rows, "nl_embedded", cfg.nl_sizes)
    t.append(Target(f"NL embedded, measured routes, <= 1.0x mmcv at every size {sizes} ({nl})",
                    1.0, v, d))
    r64 = _find(rows, "nl_embedded", "gclab", s64)
    threads = rows[0].threads if rows else 1
    bar = 0.85 if threads == 1 else 0.75
    t.append(Target(f"NL embedded 64x64 >= {bar} of peak GEMM at {threads} thread(s) ({nl})",
                    bar, r64.share if r64 else float("nan"),
                    "share = floor / time; floor = its counted fwd+bwd FLOPs at the peak "
                    "square-GEMM rate", at_least=True))
    dsizes = [s for s in cfg.dot_sizes if s[0] * s[1] <= cfg.dot_peers_max_n]
    v, d = _worst_ratio(rows, "nl_dot", "gclab", "mmcv", dsizes)
    t.append(Target(f"NL dot product fwd+bwd <= 1.0x mmcv at every size up to "
                    f"{dsizes[-1][0]}x{dsizes[-1][1]} ({nl})" if dsizes else "NL dot product",
                    1.0, v, d))
    growth, detail = dot_product_growth(rows)
    t.append(Target(f"dot-product NL time grows <= 2.2x when N doubles ({nl})", 2.2, growth,
                    detail))
    t.append(Target(f"NL embedded 64x64 peak memory <= 0.2x mmcv ({nl})", 0.2,
                    _ratio(rows, "nl_embedded", "gclab", "mmcv", s64, "peak_mib"),
                    "gclab / mmcv peak memory"))
    r128 = _find(rows, "nl_embedded", "gclab", s128)
    mem128 = r128.peak_mib / 1024 if r128 is not None else float("nan")
    t.append(Target(f"NL embedded 128x128 fits in < 2 GiB extra memory ({nl})", 2.0, mem128,
                    "GiB above input and weights, fwd+bwd"))
    se_ref = "timm" if any(r.group == "se" and r.impl == "timm" for r in rows) else "timm-style"
    for size in cfg.gc_sizes:
        tag = f"B={cfg.gc_batch}, C={cfg.channels}, {size[0]}x{size[1]}"
        t.append(Target(f"GC fwd+bwd <= 1.0x mmcv ContextBlock ({tag})", 1.0,
                        _ratio(rows, "gc", "gclab", "mmcv", size), "gclab / mmcv time"))
        t.append(Target(f"SE fwd+bwd <= 1.0x {se_ref} SE ({tag})", 1.0,
                        _ratio(rows, "se", "gclab", se_ref, size), f"gclab / {se_ref} time"))
        t.append(Target(f"GC forward <= 3x one x.clone() ({tag})", 3.0,
                        _ratio(rows, "gc_forward", "gclab", CLONE, size),
                        "GC forward / clone time"))
    big = max(cfg.gc_sizes, key=lambda s: s[0] * s[1])
    tag = f"B={cfg.gc_batch}, C={cfg.channels}, {big[0]}x{big[1]}"
    for group, name in (("gc", "GC"), ("se", "SE")):
        r = _find(rows, group, "gclab", big)
        v = r.time_ms / r.floor_ms if r is not None and r.floor_ms else float("nan")
        t.append(Target(f"{name} fwd+bwd within 1.5x of its bandwidth floor ({tag})", 1.5, v,
                        f"time / floor; floor = 5 tensors of {big[0]}x{big[1]} moved at the "
                        f"copy bandwidth into a preallocated buffer"))
    for group, name in (("gc", "GC"), ("se", "SE")):
        t.append(Target(f"{name} fwd+bwd <= 10x one x.clone() ({tag})", 10.0,
                        _ratio(rows, group, "gclab", CLONE, big),
                        f"{name} fwd+bwd / clone time (a ratio to the older yardstick, "
                        "not a share)"))
        if group == "gc" and _find(rows, "gc", "mmcv", big):
            t[-1].detail += f"; mmcv: {_ratio(rows, 'gc', 'mmcv', CLONE, big):.1f}"
    if cfg.numpy_size is not None:
        h, w = cfg.numpy_size
        t.append(Target(f"NumPy NL forward <= 3x torch CPU (float64, {h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch", cfg.numpy_size),
                        "numpy / torch forward time, torch's default path"))
        t.append(Target(f"NumPy NL forward <= 3x torch CPU, explicit path ({h}x{w})", 3.0,
                        _ratio(rows, "numpy_nl", "numpy", "torch-explicit", cfg.numpy_size),
                        "numpy / torch forward time, both building the (N, N) matrix"))
    return t


# --------------------------------------------------------------------------------- output
# CPUID (family, model) of the server parts this benchmark has met; a VM may mask the model
_MICROARCH = {
    ("GenuineIntel", 6, 143): "Sapphire Rapids",
    ("GenuineIntel", 6, 207): "Emerald Rapids",
    ("GenuineIntel", 6, 106): "Ice Lake-SP",
    ("GenuineIntel", 6, 85): "Skylake/Cascade Lake-SP",
    ("AuthenticAMD", 23, 49): "Zen 2 (EPYC Rome)",
    ("AuthenticAMD", 25, 1): "Zen 3 (EPYC Milan)",
    ("AuthenticAMD", 25, 17): "Zen 4 (EPYC Genoa)",
}


def cpu_description() -> Dict[str, object]:
    """CPU model name, vendor, family/model, vector extensions, from /proc/cpuinfo or lscpu."""
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor is enough
                k, _, v = line.partition(":")
                info[k.strip()] = v.strip()
    except OSError:
        pass
    if "model name" not in info:
        import subprocess

        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            for line in out.splitlines():
                k, _, v = line.partition(":")
                info.setdefault({"Model name": "model name", "Flags": "flags",
                                 "Vendor ID": "vendor_id"}.get(k.strip(), k.strip()), v.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    name = info.get("model name") or platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    ext = [e for e, f in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("AVX512-BF16", "avx512_bf16"),
                          ("AMX", "amx_tile")) if f in flags]
    vendor = info.get("vendor_id", "")
    try:
        fam_model = (vendor, int(info.get("cpu family", -1)), int(info.get("model", -1)))
    except ValueError:
        fam_model = (vendor, -1, -1)
    arch = _MICROARCH.get(fam_model)
    if arch is None and vendor == "GenuineIntel" and "amx_tile" in flags:
        arch = "Sapphire Rapids or later (AMX; CPUID model masked or newer)"
    label = name + (f" [{', '.join(ext)}]" if ext else "")
    return {"cpu": name, "cpu_label": label, "vendor": vendor, "family": fam_model[1],
            "model": fam_model[2], "microarchitecture": arch, "vector_extensions": ext}


def _fmt(v: float, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def format_limits(lim: Limits) -> str:
    """The peaks and the older yardsticks of one thread count, as one paragraph."""
    sizes = ", ".join(f"{n}: {r:.1f}" for n, r in sorted(lim.gemm_rates.items()))
    copies = ", ".join(f"{r:.1f} GB/s at {m:g} MiB" for m, r in sorted(lim.copy_gbps.items()))
    end = f" -> {list(lim.load_average_end)}" if lim.load_average_end else ""
    clock = ("" if lim.clock == "wall" else
             f" [timed by {lim.clock} time: this process's CPU seconds, not the wall clock]")
    text = (f"peaks at {lim.threads} thread(s){clock}: GEMM {lim.gemm_gflops:.1f} GFLOP/s (float32 "
            f"torch.mm, best over square sizes {{{sizes}}}); copy into a preallocated buffer "
            f"{copies} (read + write); load average {list(lim.load_average)}{end}. "
            f"Older yardsticks: six attention bmm {lim.matmul_gflops:.1f} GFLOP/s "
            f"({lim.matmul_shape}); x.clone() {lim.clone_gbps:.1f} GB/s ({lim.clone_mib:.0f} "
            f"MiB in {lim.clone_ms:.2f} ms, a fresh tensor)")
    if not math.isnan(lim.matmul_gflops_in_run):
        text += (f"; in the run: attention bmm {lim.matmul_gflops_in_run:.1f} GFLOP/s at N = "
                 f"{lim.matmul_in_run_n}")
    if not math.isnan(lim.clone_gbps_in_run):
        text += f", x.clone() {lim.clone_gbps_in_run:.1f} GB/s ({lim.clone_ms_in_run:.2f} ms)"
    if lim.raised_by:
        text += "; peak raised to a rate a row reached: " + "; ".join(lim.raised_by)
    return text


def _work(r: Row) -> str:
    if math.isnan(r.work):
        return "-"
    return f"{r.work:.3g} GFLOP" if r.group.startswith("nl_") else f"{r.work / 1e6:.3g} MB"


def format_rows(rows: Sequence[Row]) -> str:
    """The ratio table of one thread count (markdown). ``share of peak`` = floor / time (the
    floor: ``floor work`` at the machine's peak); ``x 6 bmm`` and ``x clones`` are time over
    the older yardsticks (ratios, not shares)."""
    out = ["| group | size | B | impl | time ms (fastest) | peak MiB | gclab/this time "
           "| gclab/this memory | floor work | floor ms | share of peak | x 6 bmm | x clones "
           "| note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ref: Dict[Tuple[str, int, int], Row] = {}
    for r in rows:
        if r.impl in ("gclab", "numpy"):
            ref[(r.group, r.height, r.width)] = r
    for r in rows:
        base = ref.get((r.group, r.height, r.width))
        tr = mr = float("nan")
        if base is not None and base is not r and r.time_ms:
            tr = base.time_ms / r.time_ms
            if r.peak_mib and not math.isnan(r.peak_mib):
                mr = base.peak_mib / r.peak_mib
        xb = r.time_ms / r.bmm_ms if r.bmm_ms else float("nan")
        xc = r.time_ms / r.clone_ms if r.clone_ms and r.impl != CLONE else float("nan")
        out.append(
            f"| {r.group} | {r.height}x{r.width} | {r.batch} | {r.impl} | {_fmt(r.time_ms)} "
            f"| {_fmt(r.peak_mib)} | {_fmt(tr, '.2f')} | {_fmt(mr, '.3f')} | {_work(r)} "
            f"| {_fmt(r.floor_ms)} | {_fmt(r.share, '.2f')} | {_fmt(xb, '.2f')} "
            f"| {_fmt(xc, '.1f')} | {r.note} |"
        )
    return "\n".join(out)


def format_targets(by_threads: Dict[int, List[Target]]) -> str:
    """One line per target, one column per thread count."""
    threads = list(by_threads)
    out = ["| target | " + " | ".join(f"{t} thread{'s' if t > 1 else ''} | status"
                                      for t in threads) + " |",
           "|---|" + "---|---|" * len(threads)]
    first = by_threads[threads[0]]
    for i, tgt in enumerate(first):
        cells = []
        for t in threads:
            got = by_threads[t][i]
            cells.append(f"{_fmt(got.value, '.3g')} | {got.status}")
        out.append(f"| {tgt.name} | " + " | ".join(cells) + " |")
    out += ["", "Details:"]
    for t in threads:
        for tgt in by_threads[t]:
            if not math.isnan(tgt.value) and any(ch.isdigit() for ch in tgt.detail):
                out.append(f"- [{t} thread(s)] {tgt.name}: {tgt.detail}")
    return "\n".join(out)


def format_summary(runs: Sequence[Tuple[Dict[str, object], Dict[int, List[Target]]]]) -> str:
    """Each target over several runs: its median, every run's value, in how many it is met;
    and each run's load average at start and end, seconds and peaks."""
    first = runs[0][1]
    threads = list(first)
    out = ["| target | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}: median (runs), met"
                                      for t in threads) + " |",
           "|---|" + "---|" * len(threads)]
    for i, tgt in enumerate(first[threads[0]]):
        cells = []
        for t in threads:
            got = [r[1][t][i] for r in runs]
            vals = [g.value for g in got if not math.isnan(g.value)]
            if not vals:
                cells.append("-")
                continue
            met = sum(g.status == "MET" for g in got)
            cells.append(f"{statistics.median(vals):.3g} ({', '.join(f'{v:.3g}' for v in vals)})"
                         f", {met}/{len(got)}")
        out.append(f"| {tgt.name} | " + " | ".join(cells) + " |")
    out += ["", "| run | load average at start | at end | seconds | code | peaks (GFLOP/s GEMM, "
            "GB/s copy at the largest GC/SE tensor) per thread count |",
            "|---|---|---|---|---|---|"]
    for k, (machine, _) in enumerate(runs, 1):
        peaks = "; ".join(
            f"{lim['threads']}t: {lim['gemm_gflops']:.1f}, "
            f"{lim['copy_gbps'][max(lim['copy_gbps'])]:.1f}" if lim["copy_gbps"] else "-"
            for lim in machine.get("limits", []))
        out.append(f"| run{k} | {machine.get('load_average_1_5_15')} | "
                   f"{machine.get('load_average_end')} | {machine.get('seconds')} | "
                   f"{machine.get('code')} | {peaks} |")
    return "\n".join(out)


def write_csv(rows: Sequence[Row], path: str) -> None:
    """One line per measured (threads, group, impl, size)."""
    with open(path, "w", newline="") as f:
        names = [k for k in asdict(rows[0])] + ["n", "share"]
        wr = csv.DictWriter(f, fieldnames=names)
        wr.writeheader()
        for r in rows:
            d = asdict(r)
            d["n"], d["share"] = r.n, r.share
            wr.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()})


def plot_scaling(rows: Sequence[Row], path: str) -> str | None:
    """Time and peak memory against N (log-log) for the NL groups, first thread count.

    Returns None when the plot was written, else the reason it was not."""
    from gclab._extras import MissingExtra, require

    try:
        matplotlib = require("matplotlib", why="the benchmark's scaling.png")
    except MissingExtra as e:
        return f"no scaling.png: {e}"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    threads = rows[0].threads
    rows = [r for r in rows if r.threads == threads]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("nl_embedded", "NL embedded Gaussian (B=2)"), ("nl_dot", "NL dot product (B=2)")]
    for ax, (group, title) in zip(axes[:2], panels):
        for impl in sorted({r.impl for r in rows if r.group == group}):
            pts = [(r.n, r.time_ms) for r in rows
                   if r.group == group and r.impl == impl and not math.isnan(r.time_ms)]
            if pts:
                pts.sort()
                ax.loglog(*zip(*pts), "o-", label=f"{impl}")
        pts = sorted((r.n, r.floor_ms) for r in rows if r.group == group and r.impl == "gclab")
        if pts:
            ax.loglog(*zip(*pts), "k:", label="floor: counted FLOPs at peak GEMM")
        ax.set(title=f"{title}, {threads} thread(s)", xlabel="N = H*W",
               ylabel="fwd+bwd time (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    ax = axes[2]
    for group in ("nl_embedded", "nl_dot"):
        for impl in sorted({r.impl for r in rows if r.group == group}):
            pts = sorted((r.n, r.peak_mib) for r in rows if r.group == group and r.impl == impl
                         and not math.isnan(r.peak_mib) and r.peak_mib > 0)
            if pts:
                ax.loglog(*zip(*pts), "o-", label=f"{group} {impl}")
    ax.set(title="peak extra memory, fwd+bwd (B=2)", xlabel="N = H*W", ylabel="MiB")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
