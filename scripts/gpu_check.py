"""Check gclab's blocks on a CUDA device: fast == explicit, which SDPA kernel runs, timings.

A prepared script for a GPU machine (CI never runs it):

    .venv/bin/python scripts/gpu_check.py                 # on a machine with CUDA
    .venv/bin/python scripts/gpu_check.py --cpu-dry-run   # the same checks, tiny, on CPU

For float32, bfloat16 and float16 it

1. runs every Non-local mode (with and without sub-sampling) through the fast path and the
   explicit path and compares outputs and input gradients (TF32 is switched off for this); in
   bfloat16 and float16 also the fast path's output against the float32 explicit one (the
   error the lower precision costs); GC, SE and SNL are compared against their float64 CPU
   results;
2. records which ``scaled_dot_product_attention`` kernel the fast path used (flash,
   memory-efficient, cuDNN or math), read from the profiler's op names;
3. times forward + backward of NL embedded-Gaussian (B=2, C=256) at 64x64 and 128x128 on both
   paths and mmcv's ``NonLocal2d`` (when mmcv is installed), and GC against mmcv's
   ``ContextBlock`` (B=8, C=256, 64x64), with the peak memory from
   ``torch.cuda.max_memory_allocated``.

Prints a table and writes JSON to ``--out`` (default data/bench/gpu.json). Without a CUDA
device (and without ``--cpu-dry-run``) it says so and exits 0 having checked nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from typing import Dict, List

import torch

from gclab.experiments.bench_groups import mmcv_blocks
from gclab.nn import GCBlock, NonLocal2d, SEBlock, SimplifiedNonLocal2d
from gclab.vocab import NON_LOCAL_MODES as MODES

# bf16 keeps 8 mantissa bits; gaussian mode's unscaled x.x logits amplify rounding most
TOL = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}
DTYPES = (torch.float32, torch.bfloat16, torch.float16)
SDPA_KERNELS = ("flash", "efficient", "cudnn", "math")


def _randomise(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return m


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def sdpa_kernel_used(block: torch.nn.Module, x: torch.Tensor) -> str:
    """Name of the attention kernel the block's forward + backward ran (profiler op names)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.is_cuda else [])
    with profile(activities=acts) as prof:
        block(x.requires_grad_()).sum().backward()
    names = {e.name for e in prof.events() if "attention" in e.name or "fmha" in e.name}
    used = [k for k in SDPA_KERNELS if any(k in n for n in names)]
    return ",".join(used) or "none (no SDPA call)"


def check_equality(device: str, dtype: torch.dtype, size: int) -> List[Dict]:
    """Fast vs explicit for every NL mode; GC/SE/SNL vs float64 CPU."""
    rows = []
    g = torch.Generator().manual_seed(1)
    x64 = torch.randn(2, 32, size, size, generator=g, dtype=torch.float64)
    for mode in MODES:
        for sub in (False, True):
            ref = _randomise(NonLocal2d(32, mode=mode, sub_sample=sub, impl="explicit"))
            ref = ref.to(device, dtype)
            fast = copy.deepcopy(ref)
            fast.impl = "fast"
            outs = []
            for m in (ref, fast):
                x = x64.to(device, dtype).requires_grad_()
                out = m(x)
                out.float().square().sum().backward()
                outs.append((out.detach(), x.grad))
            err = max(_rel_err(outs[1][0], outs[0][0]), _rel_err(outs[1][1], outs[0][1]))
            kernel = sdpa_kernel_used(fast, x64.to(device, dtype)) if "gauss" in mode else "-"
            row = {"block": f"NL {mode}{' sub' if sub else ''}", "dtype": str(dtype),
                   "rel_err_fast_vs_explicit": err, "ok": err <= TOL[dtype],
                   "sdpa_kernel": kernel}
            if dtype != torch.float32:  # what the lower precision costs against float32
                with torch.no_grad():
                    out32 = copy.deepcopy(ref).float()(x64.to(device, torch.float32))
                row["rel_err_vs_fp32"] = _rel_err(outs[1][0], out32)
                row["ok"] = row["ok"] and row["rel_err_vs_fp32"] <= TOL[dtype]
            rows.append(row)
    for name, build in (("GC", lambda: GCBlock(32, 1 / 4, fusions=("add", "mul"))),
                        ("SE", lambda: SEBlock(32, 1 / 4)),
                        ("SNL", lambda: SimplifiedNonLocal2d(32))):
        cpu = _randomise(build()).double()
        cpu.impl = "explicit"
        for impl in ("explicit", "fused"):  # the three steps, and the one autograd Function
            dev = copy.deepcopy(cpu).to(device, dtype)
            dev.impl = impl
            err = _rel_err(dev(x64.to(device, dtype)).detach().cpu(), cpu(x64).detach())
            rows.append({"block": name, "impl": impl, "dtype": str(dtype),
                         "rel_err_vs_cpu_f64": err, "ok": err <= TOL[dtype]})
    return rows


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _time_block(build, device: str, dtype: torch.dtype, shape, repeats: int) -> Dict:
    """Median fwd+bwd time (ms) and peak memory (MiB, CUDA) of ``build()`` on ``shape``."""
    row: Dict = {}
    m = _randomise(build()).to(device, dtype)
    x = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn_like(x)
    try:
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if device == "cuda" else 0
        times = []
        for r in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            m(x).backward(grad)
            _sync(device)
            if r:
                times.append(time.perf_counter() - t0)
        row["ms"] = sorted(times)[len(times) // 2] * 1e3
        if device == "cuda":
            row["peak_mib"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    except torch.OutOfMemoryError as e:  # the explicit path at 128x128 may not fit
        row["error"] = f"out of memory: {str(e).splitlines()[0]}"
    return row


def time_nl(device: str, dtype: torch.dtype, size: int, channels: int, repeats: int) -> List[Dict]:
    """Median fwd+bwd time and peak memory of NL embedded-Gaussian: fast, explicit, mmcv."""
    rows = []
    builds = {"fast": lambda: NonLocal2d(channels, impl="fast"),
              "explicit": lambda: NonLocal2d(channels, impl="explicit")}
    mmcv = mmcv_blocks()
    if mmcv is not None:
        builds["mmcv"] = lambda: mmcv[0](channels)
    for impl, build in builds.items():
        row = {"block": "NL embedded", "impl": impl, "dtype": str(dtype),
               "size": f"{size}x{size}"}
        row.update(_time_block(build, device, dtype, (2, channels, size, size), repeats))
        if impl == "fast" and "error" not in row:
            x = torch.randn(2, channels, size, size, device=device, dtype=dtype)
            row["sdpa_kernel"] = sdpa_kernel_used(_randomise(build()).to(device, dtype), x)
        rows.append(row)
    return rows


def time_gc(device: str, dtype: torch.dtype, size: int, channels: int, repeats: int) -> List[Dict]:
    """Median fwd+bwd time of GC (B=8) against mmcv's ContextBlock."""
    builds = {"gclab": lambda: GCBlock(channels, 1 / 16)}
    mmcv = mmcv_blocks()
    if mmcv is not None:
        builds["mmcv"] = lambda: mmcv[1](channels, ratio=1 / 16)
    rows = []
    for impl, build in builds.items():
        row = {"block": "GC", "impl": impl, "dtype": str(dtype), "size": f"{size}x{size}"}
        row.update(_time_block(build, device, dtype, (8, channels, size, size), repeats))
        rows.append(row)
    return rows


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="run the same checks on CPU at tiny sizes (tests the script itself)")
    p.add_argument("--out", default=os.path.join("data", "bench", "gpu.json"))
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    if torch.cuda.is_available():
        device, sizes, channels, eq_size = "cuda", (64, 128), 256, 16
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    elif args.cpu_dry_run:
        device, sizes, channels, eq_size = "cpu", (8,), 16, 6
        print("no CUDA device: --cpu-dry-run runs the checks on CPU at tiny sizes "
              "(checks the script; the numbers say nothing about GPUs)")
    else:
        print("no CUDA device: scripts/gpu_check.py needs one (it is not run in CI); nothing "
              "was checked. Use --cpu-dry-run to exercise the script on CPU.")
        return 0

    results: Dict[str, list] = {"equality": [], "timing": []}
    for dtype in DTYPES:
        results["equality"] += check_equality(device, dtype, eq_size)
        for size in sizes:
            results["timing"] += time_nl(device, dtype, size, channels, args.repeats)
        results["timing"] += time_gc(device, dtype, sizes[0], channels, args.repeats)

    for r in results["equality"]:
        err = r.get("rel_err_fast_vs_explicit", r.get("rel_err_vs_cpu_f64"))
        vs32 = f"  vs fp32 {r['rel_err_vs_fp32']:.2e}" if "rel_err_vs_fp32" in r else ""
        block = f"{r['block']} impl={r['impl']}" if "impl" in r else r["block"]
        print(f"{block:<26} {r['dtype']:<15} rel err {err:.2e}{vs32} "
              f"{'ok' if r['ok'] else 'TOO LARGE'}  {r.get('sdpa_kernel', '')}")
    for r in results["timing"]:
        peak = f"peak {r['peak_mib']:.0f} MiB" if "peak_mib" in r else "peak (CUDA only)"
        what = r.get("error") or f"{r['ms']:8.2f} ms  {peak}  {r.get('sdpa_kernel', '')}"
        print(f"{r['block']:<11} {r['size']:<8} {r['impl']:<9} {r['dtype']:<15} {what}")
    results["device"] = device if device == "cpu" else torch.cuda.get_device_name()
    results["torch"] = torch.__version__
    if device == "cuda":
        os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {args.out}")
    ok = all(r["ok"] for r in results["equality"])
    print("all equal within tolerance" if ok else "SOME BLOCKS DIFFER: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
