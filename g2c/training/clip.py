"""Global-norm gradient clipping, equal to ``torch.nn.utils.clip_grad_norm_``."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def clip_grad_norm_(
    parameters: Iterable[torch.Tensor] | torch.Tensor, max_norm: float, *, eps: float = 1e-6
) -> torch.Tensor:
    """Scale every gradient by one shared factor so their global L2 norm is at most ``max_norm``.

    ``total = sqrt(sum_i ||g_i||^2)`` over all gradients; if ``max_norm / (total + eps) < 1``
    every gradient is multiplied by that same factor, which shortens the step but keeps the
    direction of the whole gradient vector. Returns ``total`` measured before clipping.
    Parameters whose ``.grad`` is None are skipped.
    """
    if not max_norm >= 0.0:
        raise ValueError(f"max_norm must be a non-negative number, got {max_norm!r}")
    if not eps >= 0.0:
        raise ValueError(f"eps must be a non-negative number, got {eps!r}")
    ### BEGIN SOLUTION
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = [torch.linalg.vector_norm(g) for g in grads]
    total_norm = torch.linalg.vector_norm(torch.stack(norms))
    clip_coef = max_norm / (total_norm + eps)
    if clip_coef < 1:
        for g in grads:
            g.mul_(clip_coef)
    return total_norm
    ### END SOLUTION
