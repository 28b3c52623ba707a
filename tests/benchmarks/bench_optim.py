"""Time g2c's AdamW.step and clip_grad_norm_ against torch's in the same process, one thread.

The model is ~3M parameters in ~70 tensors. Each candidate runs in interleaved rounds and we
keep the median, so a noisy neighbour slows every candidate alike. Ratios, not seconds, are the
result: ours / torch's for-loop AdamW should be <= 1.1, ours / torch's clip <= 1.1.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from g2c.training import AdamW, clip_grad_norm_

ROUNDS, REPEATS = 15, 10


def make_params(seed: int = 0) -> list[torch.Tensor]:
    """35 Linear-like layers of 290x290 plus bias: 70 tensors, 2.95M parameters."""
    g = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(35):
        params.append(torch.randn(290, 290, generator=g).requires_grad_())
        params.append(torch.randn(290, generator=g).requires_grad_())
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    return params


def median_seconds(candidates: dict[str, Callable[[], object]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm up: allocate optimizer state
    for _ in range(ROUNDS):
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(REPEATS):
                fn()
            samples[name].append((time.perf_counter() - start) / REPEATS)
    return {name: statistics.median(times) for name, times in samples.items()}


def main() -> None:
    torch.set_num_threads(1)
    n_params = sum(p.numel() for p in make_params())
    print(f"model: {len(make_params())} tensors, {n_params / 1e6:.2f}M parameters, 1 thread")

    adamw = {
        "g2c AdamW": AdamW(make_params(), 1e-3, weight_decay=0.1).step,
        "torch AdamW for-loop": torch.optim.AdamW(make_params(), 1e-3, weight_decay=0.1, foreach=False).step,
        "torch AdamW foreach": torch.optim.AdamW(make_params(), 1e-3, weight_decay=0.1, foreach=True).step,
        "torch AdamW fused": torch.optim.AdamW(make_params(), 1e-3, weight_decay=0.1, fused=True).step,
    }
    # max_norm far below the norm, so every call really scales every gradient
    ours_p, theirs_p = make_params(), make_params()
    clip = {
        "g2c clip_grad_norm_": lambda: clip_grad_norm_(ours_p, 1e-3),
        "torch clip_grad_norm_": lambda: torch.nn.utils.clip_grad_norm_(theirs_p, 1e-3),
    }
    times = median_seconds(adamw) | median_seconds(clip)
    for name, seconds in times.items():
        print(f"{name:24s} {seconds * 1e3:8.2f} ms")
    base = times["g2c AdamW"]
    for ref in ("torch AdamW for-loop", "torch AdamW foreach", "torch AdamW fused"):
        print(f"ratio g2c AdamW / {ref:22s} {base / times[ref]:.2f}")
    print(f"ratio g2c clip / torch clip {times['g2c clip_grad_norm_'] / times['torch clip_grad_norm_']:.2f}")
    print("targets: g2c AdamW / torch for-loop <= 1.10, g2c clip / torch clip <= 1.10")


if __name__ == "__main__":
    main()
