"""Where the time of NL, GC and SE goes, as shares of the machine's peaks (docs/benchmarks.md).

1. The peaks as ``gclab bench`` measures them (best square float32 GEMM, copy into a preallocated
   buffer at 32 MiB), then the GEMM rate of each attention-shaped product of Non-local at 64x64
   (B=2, N=4096, C_i=128) and of ``scaled_dot_product_attention`` (the fast path) forward and
   forward + backward, each as a share of the peak GEMM;
2. ``torch.profiler`` over NL embedded-Gaussian fwd+bwd at 64x64 (and GC, SE): each op's
   share of the step's self time and its FLOPs where it is a product; and at 32x32 for gclab,
   its explicit path and mmcv's NonLocal2d (where their times tie);
3. GC and SE fwd+bwd at 64x64 (B=8, C=256): their time over the bandwidth floor (5 tensors at
   the copy bandwidth), the page faults per step (fresh full-size tensors), and the same with
   glibc told to keep freed memory (``MALLOC_MMAP_THRESHOLD_``, in a child process).

Times are by this process's CPU time at 1 thread (``--clock cpu`` of the bench: on a shared
machine the time other jobs hold the core is left out), by the wall clock at more::

    python scripts/peak_profile.py          # 1 thread, ~2 minutes
    python scripts/peak_profile.py 2        # 2 threads (wall clock)
    python scripts/peak_profile.py 1 --nl32 # only NL at 32x32: gclab, explicit, mmcv (~5 s)
"""

from __future__ import annotations

import os

os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # no profiler start/stop lines
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from gclab.experiments.bench_core import copy_rates, gemm_rates, interleaved_medians, use_clock
from gclab.nn import GCBlock, NonLocal2d, SEBlock

B, N, CI = 2, 4096, 128


def best(step, repeats: int = 3) -> float:
    return min(interleaved_medians({"s": step}, repeats, 1)["s"])


def attention_products(peak: float) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, N, CI, generator=gen) for _ in range(3))
    s, y = torch.empty(B, N, N), torch.empty(B, N, CI)
    flops = 2 * B * N * N * CI
    shapes = {
        "S = Q K^T (B, N, C_i) x (B, C_i, N)": lambda: torch.bmm(q, k.transpose(1, 2), out=s),
        "Y = A V   (B, N, N) x (B, N, C_i)": lambda: torch.bmm(s, v, out=y),
        "dV = A^T dY": lambda: torch.bmm(s.transpose(1, 2), v, out=y),
    }
    for name, step in shapes.items():
        rate = flops / best(step) / 1e9
        print(f"  {name:<40} {rate:6.1f} GFLOP/s = {rate / peak:.2f} of peak")
    qq, kk, vv = (t.unsqueeze(1).requires_grad_() for t in (q, k, v))
    rate = 2 * flops / best(lambda: F.scaled_dot_product_attention(qq, kk, vv).detach()) / 1e9
    print(f"  {'SDPA forward (2 products)':<40} {rate:6.1f} GFLOP/s = {rate / peak:.2f} of peak")
    grad = torch.randn(B, 1, N, CI, generator=gen)
    t = best(lambda: F.scaled_dot_product_attention(qq, kk, vv).backward(grad), 2)
    for products in (7, 6):
        rate = products * flops / t / 1e9
        what = ("SDPA fwd+bwd, its 7 products" if products == 7
                else "SDPA fwd+bwd, counted as 6 (the floor)")
        print(f"  {what:<40} {rate:6.1f} GFLOP/s = {rate / peak:.2f} of peak")


SDPA_PRODUCTS = {"aten::_scaled_dot_product_flash_attention_for_cpu": 2,
                 "aten::_scaled_dot_product_flash_attention_for_cpu_backward": 5}
PRODUCT_OPS = {"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::mkldnn_convolution",
               "aten::_slow_conv2d_forward", "aten::_slow_conv2d_backward", *SDPA_PRODUCTS}


def op_profile(module: torch.nn.Module, x: torch.Tensor, rows: int = 7, n: int = N) -> None:
    """torch.profiler over one fwd+bwd: each op's share of the step's self time (a share, so
    it holds under load, where the profiler's wall-clock times do not), and its FLOPs (B=2,
    C_i=128 for the flash kernel's, at n positions); then the share of the matrix products."""
    from torch.profiler import ProfilerActivity, profile

    grad = torch.randn_like(x)
    module(x).backward(grad)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        module(x).backward(grad)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    for e in events[:rows]:
        flops = SDPA_PRODUCTS[e.key] * 2 * B * n * n * CI if e.key in SDPA_PRODUCTS else e.flops
        extra = f"  {flops / 1e9:5.2f} GFLOP" if flops else ""
        print(f"  {e.key:<58} {e.self_cpu_time_total / total:6.1%} of the step{extra}")
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCT_OPS)
    print(f"  {'matrix products (mm, bmm, convolutions, flash attention)':<58} "
          f"{products / total:6.1%} of the step; the rest {1 - products / total:6.1%}")


def nl_small(size: int = 32) -> None:
    """Non-local at a small map, where gclab, its explicit path and mmcv tie: the ops of each."""
    try:
        from mmcv.cnn import NonLocal2d as MmcvNonLocal2d
    except ImportError:
        MmcvNonLocal2d = None
    blocks = {"gclab (impl='auto')": NonLocal2d(256), "explicit": NonLocal2d(256, impl="explicit")}
    if MmcvNonLocal2d is not None:
        blocks["mmcv"] = MmcvNonLocal2d(256)
    x = torch.randn(B, 256, size, size, requires_grad=True)
    grad = torch.randn_like(x)
    for name, m in blocks.items():
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.01)
        print(f"Non-local embedded Gaussian {size}x{size} fwd+bwd, {name}, torch.profiler:")
        op_profile(m, x, 8, size * size)
        faults = []
        for _ in range(5):  # fresh pages: one (B, N, N) float32 tensor is B N^2 / 1024 pages
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            m(x).backward(grad)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        per = B * (size * size) ** 2 * 4 // 4096
        print(f"  minor page faults in 5 more steps: {faults} ({per} per fresh (B, N, N) tensor)")


def gc_se(copy_gbps: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 256, 64, 64, generator=gen).requires_grad_()
    grad = torch.randn(8, 256, 64, 64, generator=gen)
    floor = 5 * x.numel() * 4 / (copy_gbps * 1e9)
    for name, m in (("GC", GCBlock(256, ratio=1 / 16)), ("SE", SEBlock(256, ratio=1 / 16))):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.02)

        def step(m: torch.nn.Module = m) -> None:
            x.grad = None
            m(x).backward(grad)

        step()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = best(step, 5)
        faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / 6
        print(f"  {name} fwd+bwd {t * 1e3:6.1f} ms = {t / floor:4.1f}x its floor "
              f"({floor * 1e3:.1f} ms); {faults:.0f} page faults per step "
              f"({faults * 4096 / x.numel() / 4:.2f} fresh tensors of x's size)")


def main(threads: int, gc_se_only: bool = False, nl32_only: bool = False) -> None:
    torch.set_num_threads(threads)
    use_clock("cpu" if threads == 1 else "wall")
    copy = copy_rates([32 << 20])[32.0]
    if gc_se_only:  # the child process with glibc's thresholds set
        gc_se(copy)
        return
    if nl32_only:
        print(f"{threads} thread(s); load average {os.getloadavg()}")
        nl_small(32)
        return
    print(f"{threads} thread(s), {'CPU' if threads == 1 else 'wall'} clock; load average "
          f"{os.getloadavg()}")
    peak = max(gemm_rates((256, 512, 1024, 2048)).values())
    print(f"peaks: GEMM {peak:.1f} GFLOP/s, copy {copy:.1f} GB/s at 32 MiB")
    print("Non-local 64x64, its products alone (B=2, N=4096, C_i=128):")
    attention_products(peak)
    print("Non-local embedded Gaussian 64x64 fwd+bwd, torch.profiler (one step):")
    nl = NonLocal2d(256)
    for p in nl.parameters():
        torch.nn.init.normal_(p, std=0.01)
    op_profile(nl, torch.randn(B, 256, 64, 64, requires_grad=True))
    nl_small(32)
    print("GC / SE 64x64 fwd+bwd (B=8, C=256):")
    gc_se(copy)
    for name, block in (("GC", GCBlock(256, ratio=1 / 16)), ("SE", SEBlock(256, ratio=1 / 16))):
        print(f"{name} 64x64 fwd+bwd, torch.profiler (one step):")
        op_profile(block, torch.randn(8, 256, 64, 64, requires_grad=True), 6)
    print("the same with glibc keeping freed memory (MALLOC_MMAP_THRESHOLD_=1 GiB):")
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(1 << 30),
               MALLOC_TRIM_THRESHOLD_=str(1 << 32))
    child = subprocess.run([sys.executable, __file__, str(threads), "--gc-se-only"], env=env,
                           capture_output=True, text=True, timeout=600)
    print(child.stdout.rstrip() or child.stderr[-2000:])
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 1, "--gc-se-only" in sys.argv, "--nl32" in sys.argv)
