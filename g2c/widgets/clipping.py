"""``clipping_demo``: global-norm clipping keeps the direction; per-parameter clipping bends it."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from g2c.data import Dataset
from g2c.training import History, clip_grad_norm_
from g2c.widgets.diagnosis import diagnose
from g2c.widgets.frames import Frame, Panel, guarded, static_panel
from g2c.widgets.live import GridSlider, grid_with, live, nearest
from g2c.widgets.render import curve_words, fmt, legend_below, message_html, new_figure, to_png
from g2c.widgets.runs import ModelArg, OptimizerFactory, Runs, check_lr

MAX_NORMS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
LRS = (0.03, 0.1, 0.3, 0.5)
# A gradient made of three tensors of very different scales (norms 2.5, 0.24, 0.4; global 2.54).
DEFAULT_GRADS = ([2.0, -1.5], [0.1, 0.2, -0.1], [0.4])


def clip_example(grads: Sequence[torch.Tensor], max_norm: float, clip: Callable[..., Any] = clip_grad_norm_) -> dict[str, object]:
    """Clip a copy of ``grads`` globally (with ``clip``, g2c's by default) and per tensor (the pitfall)."""
    params = []
    for g in grads:
        p = torch.zeros_like(g, requires_grad=True)
        p.grad = g.clone()
        params.append(p)
    before = float(clip(params, max_norm))
    global_clipped = [p.grad.clone() for p in params]
    per_tensor = [g * min(1.0, max_norm / (float(g.norm()) + 1e-6)) for g in grads]
    flat = torch.cat([g.flatten() for g in grads])
    flat_global = torch.cat([g.flatten() for g in global_clipped])
    flat_per = torch.cat([g.flatten() for g in per_tensor])
    cos = torch.nn.functional.cosine_similarity
    return {
        "before": before,
        "after": float(flat_global.norm()),
        "scale": min(1.0, max_norm / (before + 1e-6)),
        "per_tensor_after": float(flat_per.norm()),
        "cos_global": float(cos(flat, flat_global, dim=0)),
        "cos_per_tensor": float(cos(flat, flat_per, dim=0)),
        "flat": flat, "flat_global": flat_global, "flat_per": flat_per,
        "sizes": [g.numel() for g in grads],
    }


class ClippingFigure:
    """Left: the example gradient's components, clipped globally and per tensor. Right: a run's gradient norms.

    One figure for every frame of a widget: the axes, tick positions, tensor boundaries and legends are laid out
    once (the example's components and tensors never change); ``png(...)`` sets the bars' heights, the run's
    curve and the words of one frame, and renders.
    """

    WIDTH = 0.27

    def __init__(self, flat: torch.Tensor, sizes: Sequence[int]):
        self.fig, (bars, run) = new_figure(9.5, 4.8, ncols=2, legend_below=0.2)
        self.bars, self.run = bars, run
        x = np.arange(len(flat))
        bars.bar(x - self.WIDTH, flat.numpy(), self.WIDTH, color="#aaaaaa", label="gradient")
        self.global_bars = bars.bar(x, flat.numpy(), self.WIDTH, color="#1f77b4", label="global clip")
        self.per_tensor_bars = bars.bar(
            x + self.WIDTH, flat.numpy(), self.WIDTH, color="#d62728", hatch="///", edgecolor="white",
            label="per-tensor clip (wrong)",
        )
        edge = -0.5
        for size in sizes[:-1]:
            edge += size
            bars.axvline(edge, color="black", lw=0.5, ls=":")
        bars.axhline(0, color="black", lw=0.5)
        bars.set_xticks(list(range(len(flat))))
        bars.set_xlabel("component (dotted: tensor boundary)")
        legend_below(bars, ncol=1)
        self.scale_label = bars.get_legend().get_texts()[1]

        run.set_yscale("log")
        (self.norms,) = run.plot([], [], color="#555555", lw=1, label="global grad norm (before clip)")
        self.fired = run.scatter([], [], color="#d62728", s=8, zorder=3, label="clipped")
        self.threshold = run.axhline(1, color="#1f77b4", ls="--", label="max_norm")
        run.set_xlabel("step")
        run.set_ylabel("global gradient norm (log)")
        legend_below(run, ncol=1)
        self.threshold_label = run.get_legend().get_texts()[2]

    def png(self, example: dict, history: History, max_norm: float, lr: float) -> bytes:
        for bar, height in zip(self.global_bars, example["flat_global"].tolist()):
            bar.set_height(height)
        for bar, height in zip(self.per_tensor_bars, example["flat_per"].tolist()):
            bar.set_height(height)
        self.scale_label.set_text(f"global clip (x{example['scale']:.2f})")
        self.bars.set_title(
            f"norm {example['before']:.2f} -> {example['after']:.2f}; "
            f"cos {example['cos_global']:.3f} vs {example['cos_per_tensor']:.3f}",
            fontsize=10,
        )

        fired = [i for i, c in enumerate(history.clipped) if c]
        self.norms.set_data(range(len(history.grad_norm)), history.grad_norm)
        self.fired.set_offsets(np.array([(i, history.grad_norm[i]) for i in fired], dtype=float).reshape(-1, 2))
        self.threshold.set_ydata([max_norm, max_norm])
        self.threshold_label.set_text(f"max_norm {fmt(max_norm)}")
        note = f", inf or NaN at step {history.diverged_at}" if history.diverged else ""
        self.run.set_title(f"lr {fmt(lr)}: clipped on {100 * history.clip_rate:.0f}% of steps{note}", fontsize=10)
        for ax in (self.bars, self.run):  # limits from this frame's data only, never from frames drawn before
            ax.relim()
            ax.autoscale_view()
        return to_png(self.fig)


def alt_text(example: dict, history: History, max_norm: float, lr: float) -> str:
    """What a clipping frame shows: the example gradient clipped two ways, then the run's norms."""
    note = f"; NaN from step {history.diverged_at}" if history.diverged else ""
    steps = list(range(len(history.grad_norm)))
    return (
        f"Left: bars for the {len(example['flat'])} components of a gradient made of {len(example['sizes'])} tensors, "
        f"before clipping, after global clipping to max_norm {fmt(max_norm)} (scaled by {example['scale']:.2f}) and after "
        f"per-tensor clipping (hatched): the global norm goes from {example['before']:.2f} to {example['after']:.2f} "
        f"and the direction is kept (cosine {example['cos_global']:.3f}); per-tensor clipping gives norm "
        f"{example['per_tensor_after']:.2f} and cosine {example['cos_per_tensor']:.3f}. "
        f"Right: global gradient norm (log scale) of a training run at lr {fmt(lr)}, "
        f"{curve_words('norm', steps, history.grad_norm)}{note}; dashed line at max_norm {fmt(max_norm)}; "
        f"clipping fired on {100 * history.clip_rate:.0f}% of steps (dots)."
    )


def readout_html(example: dict, history: History, max_norm: float) -> str:
    rate = history.clip_rate
    advice = (
        " Clipping fires on most steps: under this plain SGD the lr is probably too high (clipping is a guardrail, "
        "not a tuning knob); under AdamW, which a constant rescaling of the gradient does not change, it only limits spikes."
        if rate > 0.5
        else ""
    )
    bent = " (direction bent)" if round(example["cos_per_tensor"], 4) < 1 else ""  # below max_norm nothing is clipped
    return message_html(
        f"global norm before <b>{example['before']:.3f}</b>, after <b>{example['after']:.3f}</b> (max_norm {fmt(max_norm)}), "
        f"shared scale <b>{example['scale']:.3f}</b>, cosine to the original direction <b>{example['cos_global']:.4f}</b>; "
        f"per-tensor clipping: norm {example['per_tensor_after']:.3f}, cosine <b>{example['cos_per_tensor']:.4f}</b>{bent}. "
        f"Training run: clipping fired on {100 * rate:.0f}% of steps; diagnosis: <b>{diagnose(history).tag}</b>.{advice}",
        kind="warn" if advice else "info",
    )


@guarded("clipping_demo")
def clipping_demo(
    model: ModelArg = None,
    data: Dataset | None = None,
    *,
    steps: int = 200,
    optimizer: OptimizerFactory | None = None,
    grads: Sequence[Sequence[float] | torch.Tensor] = DEFAULT_GRADS,
    max_norm: float = 1.0,
    lr: float = 0.3,
    max_norms: Sequence[float] = MAX_NORMS,
    lrs: Sequence[float] = LRS,
    seed: int = 0,
    clip: Callable[..., Any] = clip_grad_norm_,
    static: bool = False,
) -> Panel:
    """Global-norm clipping on a gradient of several tensors, and on a real training run.

    ``clip``: the function that clips the example gradient (e.g. your own ``clip_grad_norm_``).

    ``grads``: the example gradient, one entry per tensor. The training run (default: plain
    SGD on ``regression()``, whose norm spikes at lr 0.3) uses ``train(..., clip=max_norm)``.
    ``static=True``: the ``max_norm`` slider only, at the given ``lr``.
    """
    tensors = [torch.as_tensor(g, dtype=torch.float32).flatten() for g in grads]
    if not tensors or any(t.numel() == 0 for t in tensors):
        raise ValueError("grads must hold at least one non-empty tensor")
    for name, value in (("max_norm", max_norm), *(("every max_norm in max_norms", m) for m in max_norms)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    check_lr(lr)
    norm_grid = grid_with(max_norms, max_norm)
    lr_grid = grid_with([check_lr(x, "every lr in lrs") for x in lrs], lr)
    runner = Runs(model, data, optimizer, steps=steps, seed=seed)

    figure = ClippingFigure(torch.cat(tensors), [t.numel() for t in tensors])

    def frame(m: float, x: float) -> Frame:
        example = clip_example(tensors, m, clip)
        history = runner.run(x, clip=m)
        return Frame(figure.png(example, history, m, x), alt_text(example, history, m, x), readout_html(example, history, m))

    if static:
        frames = [frame(m, lr) for m in norm_grid]
        return static_panel(
            "clipping threshold max_norm", [fmt(m) for m in norm_grid], frames, index=nearest(norm_grid, max_norm)
        )
    controls = {"max_norm": GridSlider("max_norm", norm_grid, max_norm), "lr": GridSlider("lr of the run", lr_grid, lr)}
    return live(controls, lambda values: frame(values["max_norm"], values["lr"]), what="clipping_demo")
