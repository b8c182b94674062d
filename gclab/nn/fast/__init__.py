"""gclab's fast routes: the same values as the readable three-step paths, computed faster.

fused      one ``torch.autograd.Function`` for GC/SE/SNL training (pooling + transform + fusion,
           the backward written by hand), chosen by the blocks' ``impl=``
non_local  the Non-local block's routes without the (N, N') attention matrix (SDPA, the Gram
           matrix of x, sort + prefix sums), chosen by NonLocal's ``impl=``
flops      FlopCounterMode formulas for the CPU SDPA kernels (registered on import)
routes     measured routes: opt-in timing of NonLocal's ``impl='auto'`` routes on this machine,
           the faster kept per input configuration (``set_measured_routes``, ``measured_routes``)
"""
