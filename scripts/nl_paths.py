"""Which Non-local path is fastest on small maps? The measurement behind ``impl='auto'``.

fwd+bwd of NonLocal2d(256) at B=2 on maps from 8x8 to 32x32, median of 40 interleaved rounds
(``gclab.experiments.bench_core.interleaved_medians``), for the explicit (N, N') matrix, the
fast path and, when mmcv is installed, mmcv's NonLocal2d; in dot-product mode also the factorised
``theta (phi^T g)`` path beside the Gram form that ``fast`` takes from N >= 2C. About 2 minutes
per thread count::

    python scripts/nl_paths.py 1     # torch threads
    python scripts/nl_paths.py 2
"""

import statistics
import sys

import torch

from gclab.experiments.bench_core import fwd_bwd_step, interleaved_medians
from gclab.nn import NonLocal2d


def main(threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        from mmcv.cnn import NonLocal2d as MmcvNonLocal2d
    except ImportError:
        MmcvNonLocal2d = None
    for mode in ("embedded_gaussian", "dot_product"):
        for hw in (8, 12, 16, 20, 24, 32):
            torch.manual_seed(0)
            x = torch.randn(2, 256, hw, hw, requires_grad=True)
            grad = torch.randn_like(x)
            mods = {"explicit": NonLocal2d(256, mode=mode, impl="explicit"),
                    "fast": NonLocal2d(256, mode=mode, impl="fast")}
            if MmcvNonLocal2d is not None:
                mods["mmcv"] = MmcvNonLocal2d(256, mode=mode)
            if mode == "dot_product":
                factorised = NonLocal2d(256, mode=mode, impl="fast")
                factorised._gram_path = lambda x: False  # the token path
                mods["factorised"] = factorised
            for m in mods.values():
                for p in m.parameters():
                    torch.nn.init.normal_(p, std=0.01)
            times = interleaved_medians({k: fwd_bwd_step(m, x, grad) for k, m in mods.items()},
                                        repeats=40, warmup=3)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            cells = "  ".join(f"{k} {v:.2f} ms" for k, v in med.items())
            print(f"{threads}t {mode:<17} {hw:>2}x{hw:<2} {cells}  "
                  f"fast/explicit {med['fast'] / med['explicit']:.2f}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
