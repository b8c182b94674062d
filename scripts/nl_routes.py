"""Which route do measured routes keep on this machine, and how does it compare with mmcv?

Times NonLocal2d(256), embedded Gaussian, B=2, fwd+bwd at 8x8, 16x16 and 32x32 as ``gclab bench``
does (:func:`gclab.experiments.bench_groups.run_nonlocal`: interleaved, fastest step): ``gclab``
(``impl='auto'``, the size rule), ``measured`` (``impl='auto'`` with measured routes,
:mod:`gclab.nn.fast.routes`; its note names the route kept and both routes' calibration times,
by wall clock), ``explicit`` and mmcv's NonLocal2d when installed. About 10 s per run::

    python scripts/nl_routes.py 1            # torch threads; wall clock
    python scripts/nl_routes.py 1 --clock cpu   # on a shared machine: CPU time (1 thread only)
"""

import argparse
import os

import torch

from gclab.experiments import bench_core, bench_groups


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("threads", type=int, nargs="?", default=1)
    p.add_argument("--clock", choices=sorted(bench_core.CLOCKS), default="wall")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    bench_core.use_clock(args.clock)
    cfg = bench_core.Config(nl_sizes=((8, 8), (16, 16), (32, 32)))
    print(f"{args.threads} thread(s), {args.clock} clock, load average {os.getloadavg()}")
    rows = bench_groups.run_nonlocal("embedded_gaussian", cfg.nl_sizes, cfg,
                                     bench_groups.mmcv_blocks(), args.threads, False, {}, {})
    mmcv = {(r.height, r.width): r.time_ms for r in rows if r.impl == "mmcv"}
    for r in rows:
        if r.impl == bench_core.SIX_BMM:
            continue
        vs = mmcv.get((r.height, r.width))
        ratio = f"{r.time_ms / vs:5.2f} of mmcv" if vs else ""
        print(f"{r.height}x{r.width} {r.impl:9s} {r.time_ms:8.2f} ms {ratio}  {r.note}")
    print(f"load average at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
