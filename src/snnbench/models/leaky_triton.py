"""snntorch ``Leaky`` over all time steps of a layer as one Triton kernel forward and one backward
(:func:`snnbench.models.spiking.neuron_scan`, ``kernel="triton"``; needs CUDA and Triton). Each
program walks one stacked member's block of neurons through time in registers, so currents are
read once and spikes and membranes written once:

    U[t] = beta * (1 - hard * S[t-1]) * U[t-1] + I[t] - soft * S[t-1] * threshold,
    S[t] = (U[t] - threshold > 0),
    dI[t] = dU[t] + dS[t] * surrogate'(U[t] - threshold) + beta * (1 - hard * S[t]) * dI[t+1]

(spikes recomputed from the saved membranes; the reset signal detached, as in Leaky). A direct
input current ``(G, ...)`` is read at every step and its gradient summed over the steps. FMA
contraction is off, so the arithmetic is the eager scan's operation by operation.
"""

import torch
import triton
import triton.language as tl

SURROGATE_IDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2, "triangular": 3, "straight_through": 4}
BLOCK = 1024


@triton.jit
def _slope(x, SURROGATE: tl.constexpr):
    """snntorch's surrogate derivatives at their defaults (snnbench.models.spiking.surrogate_slope)."""
    if SURROGATE == 0:  # atan, alpha 2
        y = 3.141592653589793 * x
        return 1.0 / (1.0 + y * y)
    elif SURROGATE == 1:  # fast sigmoid, slope 25
        d = 25.0 * tl.abs(x) + 1.0
        return 1.0 / (d * d)
    elif SURROGATE == 2:  # sigmoid, slope 25, at -|x| (no overflow)
        e = tl.exp(-25.0 * tl.abs(x))
        return 25.0 * e / ((e + 1.0) * (e + 1.0))
    elif SURROGATE == 3:  # triangular, threshold 1
        return tl.where(x >= 0, -1.0, 1.0)
    else:  # straight-through
        return tl.full(x.shape, 1.0, tl.float32)


@triton.jit
def _forward(current, spikes, membranes, beta, hard, soft, steps, n, member_stride, step_stride, threshold,
             BLOCK: tl.constexpr):
    g = tl.program_id(0)
    offsets = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    b, h, s = tl.load(beta + g), tl.load(hard + g), tl.load(soft + g)
    source = current + g.to(tl.int64) * member_stride + offsets
    target = g.to(tl.int64) * steps * n + offsets
    mem = tl.zeros([BLOCK], tl.float32)
    spk = tl.zeros([BLOCK], tl.float32)
    for t in range(steps):  # from a zero membrane and no spike: U[0] = I[0] exactly
        cur = tl.load(source + t * step_stride, mask=mask, other=0.0).to(tl.float32)
        mem = b * ((1.0 - h * spk) * mem) + cur - s * spk * threshold
        spk = ((mem - threshold) > 0).to(tl.float32)
        tl.store(spikes + target + t * n, spk.to(spikes.dtype.element_ty), mask=mask)
        tl.store(membranes + target + t * n, mem, mask=mask)


@triton.jit
def _backward(grad_spikes, grad_membranes, membranes, beta, hard, grad_current, steps, n, threshold,
              SURROGATE: tl.constexpr, HAS_SPIKE_GRAD: tl.constexpr, HAS_MEMBRANE_GRAD: tl.constexpr,
              DIRECT: tl.constexpr, BLOCK: tl.constexpr):
    g = tl.program_id(0)
    offsets = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    b, h = tl.load(beta + g), tl.load(hard + g)
    base = g.to(tl.int64) * steps * n + offsets
    later = tl.zeros([BLOCK], tl.float32)  # dI[t+1]
    total = tl.zeros([BLOCK], tl.float32)  # sum over steps (direct input)
    for i in range(steps):
        at = base + (steps - 1 - i) * n
        mem = tl.load(membranes + at, mask=mask, other=0.0)
        spk = ((mem - threshold) > 0).to(tl.float32)
        carry = b * (1.0 - h * spk) * later
        grad = tl.zeros([BLOCK], tl.float32)
        if HAS_MEMBRANE_GRAD:
            grad = tl.load(grad_membranes + at, mask=mask, other=0.0).to(tl.float32)
        if HAS_SPIKE_GRAD:
            slope = _slope(mem - threshold, SURROGATE)
            grad = grad + tl.load(grad_spikes + at, mask=mask, other=0.0).to(tl.float32) * slope
        grad = grad + carry
        if DIRECT:
            total = total + grad
        else:
            tl.store(grad_current + at, grad, mask=mask)
        later = grad
    if DIRECT:
        tl.store(grad_current + g.to(tl.int64) * n + offsets, total, mask=mask)


def _per_member(value: torch.Tensor, members: int) -> torch.Tensor:
    return value.reshape(-1).expand(members).contiguous().float()


class LeakyScan(torch.autograd.Function):
    """``(current, beta, hard, soft, surrogate, steps, threshold)`` -> (spikes,
    membranes) ``(G, T, ...)``. ``steps`` None: ``current`` is ``(G, T, ...)``; else it is the
    direct current ``(G, ...)`` of every one of ``steps`` steps."""

    @staticmethod
    def forward(ctx, current, beta, hard, soft, surrogate, steps, threshold):
        direct = steps is not None
        current = current.contiguous()
        members = current.shape[0]
        neuron_shape = current.shape[1:] if direct else current.shape[2:]
        steps = steps if direct else current.shape[1]
        n = neuron_shape.numel()
        beta, hard, soft = (_per_member(v, members) for v in (beta, hard, soft))
        spikes = torch.empty((members, steps, *neuron_shape), device=current.device, dtype=current.dtype)
        membranes = torch.empty((members, steps, *neuron_shape), device=current.device, dtype=torch.float32)
        grid = (members, triton.cdiv(n, BLOCK))
        _forward[grid](current, spikes, membranes, beta, hard, soft, steps, n, current.stride(0),
                       0 if direct else n, float(threshold), BLOCK=BLOCK, enable_fp_fusion=False)
        ctx.save_for_backward(membranes, beta, hard)
        ctx.surrogate, ctx.direct, ctx.threshold, ctx.current_dtype = surrogate, direct, float(threshold), current.dtype
        ctx.set_materialize_grads(False)
        return spikes, membranes

    @staticmethod
    def backward(ctx, grad_spikes, grad_membranes):
        membranes, beta, hard = ctx.saved_tensors
        if grad_spikes is None and grad_membranes is None:
            return (None,) * 7
        members, steps = membranes.shape[:2]
        n = membranes[0, 0].numel()
        shape = (members, *membranes.shape[2:]) if ctx.direct else membranes.shape
        grad_current = torch.empty(shape, device=membranes.device, dtype=torch.float32)
        grid = (members, triton.cdiv(n, BLOCK))  # an absent gradient's pointer: any tensor, never read
        _backward[grid](membranes if grad_spikes is None else grad_spikes.contiguous(),
                        membranes if grad_membranes is None else grad_membranes.contiguous(),
                        membranes, beta, hard, grad_current, steps, n, ctx.threshold,
                        SURROGATE=SURROGATE_IDS[ctx.surrogate], HAS_SPIKE_GRAD=grad_spikes is not None,
                        HAS_MEMBRANE_GRAD=grad_membranes is not None, DIRECT=ctx.direct, BLOCK=BLOCK,
                        enable_fp_fusion=False)
        return grad_current.to(ctx.current_dtype), None, None, None, None, None, None
