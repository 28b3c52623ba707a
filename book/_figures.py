"""Figures for the Module 03B book, drawn from real runs of ``g2c.training.train``.

Every chapter's hidden code cells call one function here, so the book has no training loop
of its own: the runs are the same ``train`` the students' notebook and widgets use.
Runs take well under a second each, so the whole book executes in seconds.
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # static PNGs; the book build has no display

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from g2c.data import regression, tokens
from g2c.nn import MLP, TinyLM, seeded
from g2c.training import SGD, AdamW, History, clip_grad_norm_, cosine_with_warmup, train

SWEEP_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")  # one shape per curve, so colour is never the only cue
SWEEP_STEPS = 200

# Every run here is a tiny model: a second intra-op thread buys nothing and, on a busy 2-core
# machine, made two static widgets take 37-84 s instead of 4-6 s (oversubscribed spin-waits).
# Each chapter imports this module first, so its kernel trains on one thread.
torch.set_num_threads(1)

plt.rcParams.update({"figure.dpi": 100, "axes.spines.top": False, "axes.spines.right": False, "font.size": 10})


def mlp() -> MLP:
    """The regression model every optimizer comparison starts from (same seed, same weights)."""
    return seeded(0, lambda: MLP([2, 32, 32, 1]))


def sgd_run(lr: float, steps: int = SWEEP_STEPS) -> History:
    """Plain SGD on the regression MLP, one run per learning rate of the sweep figure."""
    model = mlp()
    return train(model, regression(), SGD(model.parameters(), lr), steps=steps)


def verdict(history: History) -> str:
    """Crawls, learns or diverges: the three outcomes of a learning-rate sweep."""
    if history.diverged:
        return "diverges"
    return "learns" if history.train_loss[-1] < 0.5 * history.train_loss[0] else "crawls"


def _plot_losses(ax: plt.Axes, history: History, cap: float = 1e3, **style) -> None:
    """Per-step train loss; a diverged run ends in a cross at the step whose loss was not finite."""
    steps = range(len(history.train_loss))
    (line,) = ax.plot(steps, history.train_loss, **style)
    if history.diverged:
        last = history.train_loss[-1] if history.train_loss else 1.0
        ax.plot([history.diverged_at], [min(last, cap)], "x", color=line.get_color(), ms=9, mew=2)


def lr_sweep_figure(lrs: tuple[float, ...] = SWEEP_LRS) -> Figure:
    """Train loss for plain SGD at each learning rate, coloured along the sweep."""
    runs = {lr: sgd_run(lr) for lr in lrs}
    fig, ax = plt.subplots(figsize=(7, 3.8))
    cmap = plt.get_cmap("viridis")
    for i, (lr, history) in enumerate(runs.items()):  # a marker per lr: colour is not the only cue
        _plot_losses(ax, history, color=cmap(i / max(1, len(lrs) - 1)), lw=1.8, label=f"lr={lr:g}: {verdict(history)}",
                     marker=MARKERS[i % len(MARKERS)], ms=5, markevery=max(1, len(history.train_loss) // 8))
    ax.set_yscale("log")
    ax.set_ylim(5e-3, 1e3)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (MSE, log scale)")
    ax.set_title("Plain SGD on the same MLP, one run per learning rate")
    ax.legend(loc="upper right", fontsize=8, ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def show(fig: Figure):
    """The figure as a PNG output of a book cell (the Agg backend has no inline display)."""
    from IPython.display import Image

    return Image(png_bytes(fig), format="png")


def png_bytes(fig: Figure) -> bytes:
    """Render a figure to PNG bytes with the Agg backend and free it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def sgd_vs_adamw_figure(steps: int = 300) -> Figure:
    """SGD and AdamW from the same initial weights, same data, same steps, each at a few learning rates."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for lr, color, marker in ((0.01, "tab:blue", "o"), (0.1, "tab:purple", "s")):
        model = mlp()
        history = train(model, regression(), SGD(model.parameters(), lr), steps=steps)
        ax.plot(history.eval_steps, history.val_loss, color=color, ls="--", marker=marker, ms=5, markevery=3, label=f"SGD lr={lr:g}")
    for lr, color, marker in ((1e-3, "tab:orange", "^"), (1e-2, "tab:green", "D")):
        model = mlp()
        history = train(model, regression(), AdamW(model.parameters(), lr), steps=steps)
        ax.plot(history.eval_steps, history.val_loss, color=color, marker=marker, ms=5, markevery=3, label=f"AdamW lr={lr:g}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (MSE, log scale)")
    ax.set_title("Matched: same MLP, same initial weights, same data and steps")
    ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def _grads(*shapes_and_values: torch.Tensor) -> list[torch.Tensor]:
    """Parameters whose ``.grad`` is the given tensor: what ``clip_grad_norm_`` sees after backward."""
    params = []
    for value in shapes_and_values:
        p = torch.zeros_like(value, requires_grad=True)
        p.grad = value.clone()
        params.append(p)
    return params


def clipping_figure(max_norm: float = 1.0) -> Figure:
    """Three panels: a vector's L2 norm; the global norm over several tensors; clipping as one shared scale."""
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(12, 4.3))

    # 1. A vector's norm: the length of the arrow.
    g = torch.tensor([3.0, 4.0])
    ax1.annotate("", xy=g.tolist(), xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "lw": 2, "color": "tab:blue"})
    ax1.plot([0, 3, 3], [0, 0, 4], ":", color="0.5")
    ax1.text(1.5, -0.45, "$g_1 = 3$", ha="center")
    ax1.text(3.15, 2.0, "$g_2 = 4$", va="center")
    ax1.text(0.9, 2.3, f"$\\|g\\|_2 = {float(torch.linalg.vector_norm(g)):g}$", color="tab:blue", fontsize=12)
    ax1.set_xlim(-0.5, 4.5)
    ax1.set_ylim(-0.9, 4.5)
    ax1.set_aspect("equal")
    ax1.set_title("1. A norm measures one vector")

    # 2. Global norm: every tensor's norm, combined as if all were one long vector.
    params = _grads(torch.tensor([[0.6, -0.8], [1.2, 0.4]]), torch.tensor([2.0, -1.0, 0.5]), torch.tensor([0.3]))
    norms = [float(torch.linalg.vector_norm(p.grad)) for p in params]
    total = float(clip_grad_norm_(params, math.inf))
    names = ["W (2×2)", "b (3)", "c (1)", "global"]
    ax2.bar(names, norms + [total], color=["tab:blue"] * len(norms) + ["tab:red"])
    for i, value in enumerate(norms + [total]):
        ax2.text(i, value + 0.05, f"{value:.2f}", ha="center")
    ax2.set_ylabel("L2 norm")
    ax2.set_title("2. Global norm = √(Σ per-tensor norm²)")

    # 3. Clipping multiplies every gradient by the same scale: the direction survives.
    params = _grads(torch.tensor([2.4]), torch.tensor([1.8]))
    before = [float(p.grad) for p in params]
    total = float(clip_grad_norm_(params, max_norm))
    after = [float(p.grad) for p in params]
    for vec, color, ls, label in ((before, "0.6", "--", f"before: norm {total:.2f}"), (after, "tab:red", "-", f"after: norm {math.hypot(*after):.2f}")):
        ax3.annotate("", xy=vec, xytext=(0, 0), arrowprops={"arrowstyle": "-|>", "lw": 2, "ls": ls, "color": color})
        ax3.plot([], [], color=color, lw=2, ls=ls, label=label)
    circle = plt.Circle((0, 0), max_norm, fill=False, ls="--", color="tab:red", alpha=0.6)
    ax3.add_patch(circle)
    ax3.set_xlim(-0.3, 3.0)
    ax3.set_ylim(-0.3, 2.4)
    ax3.set_aspect("equal")
    ax3.set_xlabel(f"gradient of tensor 1   (max_norm = {max_norm:g})")
    ax3.set_ylabel("gradient of tensor 2")
    ax3.legend(loc="upper left", fontsize=8, frameon=False)
    ax3.set_title(f"3. Clipping: one shared scale")
    fig.tight_layout()
    return fig


def schedule_figure(warmup_steps: int = 100, max_steps: int = 1000, max_lr: float = 3e-3, min_lr: float = 3e-4) -> Figure:
    """``cosine_with_warmup`` at every step, past ``max_steps`` to show the floor."""
    steps = list(range(int(max_steps * 1.15)))
    lrs = [cosine_with_warmup(t, warmup_steps=warmup_steps, max_steps=max_steps, max_lr=max_lr, min_lr=min_lr) for t in steps]
    fig, ax = plt.subplots(figsize=(7, 3.4))
    ax.plot(steps, lrs, color="tab:blue", lw=2)
    ax.axvspan(0, warmup_steps, color="tab:orange", alpha=0.12, label="linear warmup")
    ax.axvspan(warmup_steps, max_steps, color="tab:blue", alpha=0.06, label="cosine decay")
    ax.axvspan(max_steps, steps[-1], color="0.5", alpha=0.10, label="floor: min_lr")
    for start, stop, name in ((0, warmup_steps, "warmup"), (warmup_steps, max_steps, "cosine decay"), (max_steps, steps[-1], "floor")):
        ax.text((start + stop) / 2, 0.5 * max_lr, name, ha="center", rotation=90 if stop - start < 150 else 0, fontsize=9, color="0.25")
    ax.axhline(max_lr, color="0.6", ls=":", lw=1)
    ax.axhline(min_lr, color="0.6", ls=":", lw=1)
    ax.set_xticks([warmup_steps, max_steps], [f"warmup_steps\n= {warmup_steps}", f"max_steps\n= {max_steps}"])
    ax.set_yticks([0, min_lr, max_lr], ["0", f"min_lr = {min_lr:g}", f"max_lr = {max_lr:g}"])
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.legend(loc="upper right", frameon=False, fontsize=9)
    fig.tight_layout()
    return fig


def curve_shape_runs() -> dict[str, History]:
    """One real run for each shape of 'Reading curves'."""
    healthy_data, small_data = tokens(), tokens(n_train=512, batch_size=None)
    lm = lambda **kw: seeded(0, lambda: TinyLM(12, 2, **kw))  # noqa: E731
    runs = {}
    model = lm()
    runs["healthy"] = train(model, healthy_data, AdamW(model.parameters(), 3e-3), steps=300)
    model = lm()
    runs["overfitting"] = train(model, small_data, AdamW(model.parameters(), 3e-3), steps=300)
    model = lm(hidden_dim=2)
    runs["underfit"] = train(model, healthy_data, AdamW(model.parameters(), 3e-3), steps=300)
    model = lm()
    runs["stalled"] = train(model, healthy_data, SGD(model.parameters(), 1e-3), steps=300)
    model = mlp()
    runs["diverging"] = train(model, regression(), SGD(model.parameters(), 1.0), steps=300)
    return runs


CURVE_CAPTIONS = {
    "healthy": "TinyLM, AdamW lr 3e-3:\nboth fall together",
    "overfitting": "512 training pairs:\ntrain falls, val turns up",
    "underfit": "hidden width 2:\nboth fall a little, stay high",
    "stalled": "SGD lr 1e-3:\nboth flat",
    "diverging": "MLP, SGD lr 1.0:\nloss explodes, then NaN",
}


def curve_shapes_figure() -> Figure:
    """Train and validation loss of the five runs, one panel each, and the diagnosis key."""
    runs = curve_shape_runs()
    fig, grid = plt.subplots(2, 3, figsize=(11, 6.6))
    axes = grid.flat
    for ax, (name, history) in zip(axes, runs.items()):
        if name == "diverging":
            _plot_losses(ax, history, cap=math.inf, color="tab:red", lw=1.8, label="train (batch)")
            ax.set_yscale("log")
            ax.annotate("NaN", (history.diverged_at, history.train_loss[-1]), xytext=(-28, 0),
                        textcoords="offset points", color="tab:red", va="center")
        else:
            ax.plot(history.eval_steps, history.eval_train_loss, color="tab:blue", lw=1.8, label="train")
            ax.plot(history.eval_steps, history.val_loss, color="tab:orange", lw=1.8, ls="--", label="validation")
            ax.set_ylim(0, 2.8)
        ax.set_title(name, fontweight="bold")
        ax.set_xlabel("step\n" + CURVE_CAPTIONS[name], fontsize=9)
        ax.set_ylabel("loss")
        ax.legend(frameon=False, fontsize=8)
    key = axes[len(runs)]
    key.axis("off")
    key.text(0.0, 0.95, "What to try next", fontweight="bold", va="top")
    key.text(0.0, 0.82, "healthy: keep going, or scale up\n"
             "overfitting: more data, regularize,\n   stop at the validation minimum\n"
             "underfit: train longer, sweep lr,\n   more capacity\n"
             "stalled: raise lr, or use AdamW\n"
             "diverging: lower lr, check grad\n   norms, clip before step()", va="top", fontsize=9, linespacing=1.5)
    fig.tight_layout()
    return fig
