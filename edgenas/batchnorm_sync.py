"""BatchNorm with the whole batch's statistics when the batch is split over ranks.

Why: under ``--nproc N`` each rank sees a shard of every batch (docs/distributed.md). With plain
BatchNorm each rank normalises by its own shard's mean and variance, so N processes train a
different function from one process (on 32-image shards the softmax(alpha) of the tiny search
moved by up to 6e-3, enough to flip a layer's choice). ``torch.nn.SyncBatchNorm`` fixes this
only on GPUs. Here each BatchNorm module, while training inside ``synced``, all-reduces its
per-channel sums (then the sums of squared deviations from the global mean, two passes as the
single-process kernel does) over the ranks, so every rank normalises by the statistics of the
whole batch and one process and N compute the same thing up to the order of float sums.

The backward pass is exact for unequal shards too: the gradient of the global sums reaching a
rank is the shard-size-weighted sum of every rank's gradient, divided by this rank's shard size,
because ``Compute.reduce_gradients`` later weights each rank's parameter gradients by its shard
size (see ``_SumAcross``). Every rank must run the forward and backward pass on every step, an
empty shard included (``train.shard_loss``), so that the collectives pair up.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


class _SumAcross(torch.autograd.Function):
    """``all_reduce(t)`` (sum over ranks) with the backward described in the module docstring."""

    @staticmethod
    def forward(ctx, t: torch.Tensor, n_local: int):
        import torch.distributed as dist

        ctx.n_local = n_local
        out = t.detach().clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        g = (grad * float(ctx.n_local)).contiguous()
        dist.all_reduce(g)
        return (g / ctx.n_local if ctx.n_local else torch.zeros_like(g)), None


def _forward(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    if not bn.training:
        return type(bn).forward(bn, x)
    n = int(x.shape[0])
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    count_local = float(x.numel() // max(1, x.shape[1]))
    sums = _SumAcross.apply(torch.cat([x.sum(dims), x.new_tensor([count_local])]), n)
    count, mean = sums[-1], sums[:-1] / sums[-1]
    centred = x - mean.view(shape)
    var = _SumAcross.apply((centred * centred).sum(dims), n) / count
    y = centred * torch.rsqrt(var + bn.eps).view(shape)
    if bn.affine:
        y = y * bn.weight.view(shape) + bn.bias.view(shape)
    if bn.track_running_stats and bn.running_mean is not None:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            c = float(count)
            bn.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            bn.running_var.mul_(1 - m).add_(var.detach() * (c / max(1.0, c - 1)), alpha=m)
    return y


@contextlib.contextmanager
def synced(model: nn.Module, distributed: bool):
    """Within the block, every BatchNorm of ``model`` normalises by the whole batch across the
    ranks while it trains (a no-op in one process). The modules are restored on exit, so a model
    returned to rank 0 alone never calls a collective again."""
    if not distributed:
        yield model
        return
    patched = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in patched:
        m.forward = _forward.__get__(m)
    try:
        yield model
    finally:
        for m in patched:
            del m.forward
